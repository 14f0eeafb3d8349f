"""Maintenance windows: what they cover, when they happen, and the file people write.

A window is one-off (``start`` and ``end`` or ``duration``) or recurring (``every``: week
days, a local start time and a duration), in an IANA time zone. Its ``match`` says what
it covers; every selector given must hold (as in policy rules):

- ``devices`` / ``sites``: the incident's root device (or, for a link between two
  devices, the device at either end) is one of these, or at one of these sites --
  what hangs below it (cut off by the planned work) is covered with it;
- ``subscribers`` / ``sla_tiers``: the incident hurts at least one subscriber and *every*
  subscriber it hurts is in the list (or in one of the tiers): an outage that reaches
  people who were not told is not planned.

Pure apart from reading the file; ``correlator.silences`` holds the run-time state.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from correlator.incidents import Incident
from correlator.inventory import Inventory
from probes.source import (
    Located,
    Problem,
    SourceError,
    Strict,
    load_yaml,
    validate,
    validation_problems,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_RECURRING = 7 * 86_400.0
MAX_ONE_OFF = 92 * 86_400.0

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> float:
    """``90m``, ``2h``, ``1h30m``, ``1d`` or ``45s`` → seconds."""
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not m or not any(m.groups()):
        raise ValueError("expected a duration such as 90m, 2h, 1h30m or 1d")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    seconds = float(((d * 24 + h) * 60 + mi) * 60 + s)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


def _time_of_day(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 02:00 as the base-60 number 120
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return dt.time(hours, minutes)
    elif isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m[1]) < 24 and int(m[2]) < 60:
            return dt.time(int(m[1]), int(m[2]))
    raise ValueError('expected a local time of day as "HH:MM", e.g. "02:30"')


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming the problem when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            "unknown time zone: use an IANA name such as Europe/Lisbon, America/New_York "
            "or UTC (is the tzdata package installed?)"
        ) from None


def _zone_name(value: Any) -> Any:
    if isinstance(value, str):
        zone(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
TimeOfDay = Annotated[dt.time, BeforeValidator(_time_of_day)]
TimeZoneName = Annotated[str, BeforeValidator(_zone_name)]


class MatchSpec(Strict):
    """What a window or silence covers; see the module docstring."""

    devices: list[str] | None = Field(default=None, min_length=1)
    sites: list[str] | None = Field(default=None, min_length=1)
    subscribers: list[str] | None = Field(default=None, min_length=1)
    sla_tiers: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _something(self) -> MatchSpec:
        if not (self.devices or self.sites or self.subscribers or self.sla_tiers):
            raise ValueError("say what it covers: devices, sites, subscribers or sla_tiers")
        return self


class Every(Strict):
    days: list[Day] = Field(min_length=1)
    start: TimeOfDay = Field(description='local start time, "HH:MM"')
    duration: Duration


class WindowModel(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    reason: str = Field(min_length=1)
    owner: str | None = None
    timezone: TimeZoneName = "UTC"
    start: dt.datetime | None = Field(default=None, description="one-off: local start")
    end: dt.datetime | None = None
    duration: Duration | None = None
    every: Every | None = None
    first_day: dt.date | None = Field(default=None, description="recurring: from this date")
    last_day: dt.date | None = Field(default=None, description="recurring: up to this date")
    match: MatchSpec


class MaintenanceFile(Strict):
    windows: list[dict[str, Any]] = Field(
        default_factory=list, description="each checked on its own, so all problems show"
    )


@dataclass(frozen=True, slots=True)
class Target:
    """What a scope is checked against: an incident's element(s) and who it hurts."""

    devices: tuple[str, ...]
    sites: tuple[str, ...]
    subscribers: Sequence[str]
    tiers: Collection[str]


def target_of(inv: Inventory, inc: Incident) -> Target:
    devices = [inc.device]
    if inc.port is not None:
        devices.extend(inv.edge_ports.get((inc.device, inc.port), ()))
    sites = tuple(s for d in devices if d in inv.devices
                  for s in (inv.devices[d].site,) if s is not None)
    return Target(tuple(devices), sites, inc.impact.subscribers,
                  tuple(inc.impact.subscribers_by_tier))


@dataclass(frozen=True, slots=True)
class Scope:
    devices: frozenset[str] | None
    sites: frozenset[str] | None
    subscribers: frozenset[str] | None
    sla_tiers: frozenset[str] | None

    @classmethod
    def of(cls, m: MatchSpec) -> Scope:
        def fs(v: list[str] | None) -> frozenset[str] | None:
            return None if v is None else frozenset(v)

        return cls(fs(m.devices), fs(m.sites), fs(m.subscribers), fs(m.sla_tiers))

    def covers(self, t: Target) -> bool:
        if self.devices is not None and not any(d in self.devices for d in t.devices):
            return False
        if self.sites is not None and not any(s in self.sites for s in t.sites):
            return False
        if self.subscribers is not None and not (
            t.subscribers and all(s in self.subscribers for s in t.subscribers)
        ):
            return False
        return self.sla_tiers is None or bool(
            t.tiers and all(tier in self.sla_tiers for tier in t.tiers)
        )


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: str
    reason: str
    owner: str | None
    timezone: str
    match: MatchSpec
    scope: Scope
    start: float | None = None  # one-off
    end: float | None = None
    days: frozenset[int] = frozenset()  # recurring: 0 = Monday
    at: dt.time | None = None
    duration: float = 0.0
    first_day: dt.date | None = None
    last_day: dt.date | None = None

    @property
    def recurring(self) -> bool:
        return self.at is not None

    def occurrences(self, since: float, until: float) -> list[tuple[float, float]]:
        """The occurrences (start, end) that overlap [since, until], by start time."""
        if not self.recurring:
            assert self.start is not None and self.end is not None
            return [(self.start, self.end)] if self.start <= until and self.end > since else []
        assert self.at is not None
        tz = ZoneInfo(self.timezone)
        day = dt.datetime.fromtimestamp(since - self.duration, tz).date()
        last = dt.datetime.fromtimestamp(until, tz).date()
        out = []
        while day <= last:
            if day.weekday() in self.days and (self.first_day is None or day >= self.first_day) \
                    and (self.last_day is None or day <= self.last_day):
                start = dt.datetime.combine(day, self.at, tzinfo=tz).timestamp()
                end = start + self.duration
                if start <= until and end > since:
                    out.append((start, end))
            day += dt.timedelta(days=1)
        return out

    def occurrence_at(self, t: float) -> tuple[float, float] | None:
        """The occurrence under way at ``t`` (the one ending last, if they overlap)."""
        now = [o for o in self.occurrences(t, t) if o[0] <= t < o[1]]
        return max(now, key=lambda o: o[1]) if now else None

    def to_dict(self) -> dict[str, Any]:
        schedule: dict[str, Any]
        if self.recurring:
            assert self.at is not None
            schedule = {"days": [DAYS[d] for d in sorted(self.days)],
                        "start": self.at.strftime("%H:%M"), "duration": self.duration,
                        "first_day": self.first_day and self.first_day.isoformat(),
                        "last_day": self.last_day and self.last_day.isoformat()}
        else:
            schedule = {"start": self.start, "end": self.end}
        return {"id": self.id, "reason": self.reason, "owner": self.owner,
                "timezone": self.timezone, "recurring": self.recurring, "schedule": schedule,
                "match": self.match.model_dump(exclude_none=True)}


@dataclass(frozen=True, slots=True)
class Occurrence:
    window: MaintenanceWindow
    start: float
    end: float

    def to_dict(self) -> dict[str, Any]:
        tz = ZoneInfo(self.window.timezone)
        return {
            **self.window.to_dict(), "start": self.start, "end": self.end,
            "start_local": dt.datetime.fromtimestamp(self.start, tz).isoformat(),
            "end_local": dt.datetime.fromtimestamp(self.end, tz).isoformat(),
        }


# --- checking references and loading the file ---------------------------------------------


def match_problems(inv: Inventory, m: MatchSpec) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Names in ``m`` that the inventory does not know: (location, message, value) each."""
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    sites = {d.site for d in inv.devices.values() if d.site}
    tiers = {s.sla_tier for s in inv.subscribers.values()}
    for i, dev in enumerate(m.devices or ()):
        if dev not in inv.devices:
            out.append((("devices", i), "unknown device (not in the inventory)", dev))
    for i, site in enumerate(m.sites or ()):
        if site not in sites:
            out.append((("sites", i), f"unknown site (sites: {_some(sites)})", site))
    for i, sid in enumerate(m.subscribers or ()):
        if sid not in inv.subscribers:
            out.append((("subscribers", i), "unknown subscriber (not in the inventory)", sid))
    for i, tier in enumerate(m.sla_tiers or ()):
        if tier not in tiers:
            out.append((("sla_tiers", i), f"no subscriber has this SLA tier (tiers: "
                                          f"{_some(tiers)})", tier))
    return out


def _some(names: Iterable[str], limit: int = 8) -> str:
    ordered = sorted(names)
    more = ", ..." if len(ordered) > limit else ""
    return (", ".join(ordered[:limit]) + more) or "none"


def _local(value: dt.datetime, tz: ZoneInfo) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=tz)).timestamp()


def _window(src: Located, i: int, w: WindowModel, inv: Inventory,
            problems: list[Problem]) -> MaintenanceWindow | None:
    at: tuple[str | int, ...] = ("windows", i)
    before = len(problems)

    def bad(loc: Iterable[str | int], message: str, got: Any = None) -> None:
        problems.append(src.problem((*at, *loc), message, got))

    tz = ZoneInfo(w.timezone)
    start = end = None
    if w.every is None and w.start is None:
        bad((), "give start (and end or duration) for a one-off window, or every for a "
                 "recurring one")
    elif w.every is not None:
        if w.start is not None or w.end is not None or w.duration is not None:
            bad(("every",), "a window is one-off (start, end/duration) or recurring (every), "
                            "not both")
        if w.every.duration > MAX_RECURRING:
            bad(("every", "duration"), "a recurring window lasts at most 7 days")
        if w.first_day and w.last_day and w.last_day < w.first_day:
            bad(("last_day",), f"last_day is before first_day ({w.first_day})",
                w.last_day.isoformat())
    else:
        assert w.start is not None
        if w.first_day or w.last_day:
            bad(("first_day" if w.first_day else "last_day",),
                "first_day and last_day are for recurring windows")
        start = _local(w.start, tz)
        if w.end is not None and w.duration is not None:
            bad(("duration",), "give end or duration, not both")
        elif w.end is not None:
            end = _local(w.end, tz)
            if end <= start:
                bad(("end",), f"end is not after start ({w.start.isoformat()})",
                    w.end.isoformat())
        elif w.duration is not None:
            end = start + w.duration
        else:
            bad(("start",), "a one-off window needs end or duration")
        if end is not None and end - start > MAX_ONE_OFF:
            bad(("end" if w.end else "duration",), "a one-off window lasts at most 92 days")
    for loc, message, got in match_problems(inv, w.match):
        bad(("match", *loc), message, got)
    if len(problems) > before:
        return None
    match = w.match
    if w.every is not None:
        return MaintenanceWindow(
            w.id, w.reason, w.owner, w.timezone, match, Scope.of(match),
            days=frozenset(DAYS.index(d) for d in w.every.days), at=w.every.start,
            duration=w.every.duration, first_day=w.first_day, last_day=w.last_day,
        )
    assert start is not None and end is not None
    return MaintenanceWindow(w.id, w.reason, w.owner, w.timezone, match, Scope.of(match),
                             start=start, end=end, duration=end - start)


def load_maintenance(path: str | os.PathLike[str], inv: Inventory) -> list[MaintenanceWindow]:
    """Read and check a maintenance file; any problem → SourceError listing all of them,
    ``file:line: windows[i].field: what is wrong (got X)`` each."""
    src = load_yaml(path)
    model: MaintenanceFile = validate(MaintenanceFile, src)
    problems: list[Problem] = []
    out: list[MaintenanceWindow] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(model.windows):
        try:
            w = WindowModel.model_validate(raw)
        except ValidationError as exc:
            # lines are the file's; the data is this window's
            part = Located(src.file, raw, src.lines)
            problems.extend(validation_problems(part, exc, prefix=("windows", i)))
            continue
        if w.id in seen:
            first = src.line_of(("windows", seen[w.id], "id"))
            problems.append(src.problem(("windows", i, "id"),
                                        f"duplicate window id (first on line {first})", w.id))
            continue
        seen[w.id] = i
        window = _window(src, i, w, inv, problems)
        if window is not None:
            out.append(window)
    if problems:
        raise SourceError(problems)
    return out
