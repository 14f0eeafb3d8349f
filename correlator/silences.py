"""Run-time maintenance state: the windows from the file, ad-hoc silences, and queries.

A *silence* is ad-hoc maintenance -- "I am working on olt1 for the next hour" -- created
at run time (by the supervisor API) with a reason, who created it and an expiry; it is
kept in the state directory, so it survives a restart. It covers incidents that open
while it is active, exactly like a window: they are marked ``planned``. It does not
rewrite the past: an incident that was already open stays unplanned (its customers were
not told in advance). When a silence runs out (or is ended early) it says so: a log line
and a ``MaintenanceEvent``.

``Maintenance`` is what the supervisor API calls: ``active_windows``,
``upcoming_windows``, ``silences``, ``create_silence``, ``expire_silence``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from correlator.errors import MaintenanceError, UnknownSilence
from correlator.inventory import Inventory
from correlator.maintenance import (
    MaintenanceWindow,
    MatchSpec,
    Occurrence,
    Scope,
    Target,
    match_problems,
)
from correlator.store import IncidentStore
from probes.source import dotted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    match: MatchSpec
    reason: str
    created_by: str
    created_at: float
    expires_at: float
    expired_at: float | None = None  # set when it ran out or was ended
    expired_by: str | None = None  # who ended it early; None when it ran out

    def active(self, now: float) -> bool:
        return self.expired_at is None and self.created_at <= now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "match": self.match.model_dump(exclude_none=True),
                "reason": self.reason, "created_by": self.created_by,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "expired_at": self.expired_at, "expired_by": self.expired_by}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        return cls(d["id"], MatchSpec.model_validate(d["match"]), d["reason"], d["created_by"],
                   d["created_at"], d["expires_at"], d.get("expired_at"), d.get("expired_by"))


@dataclass(frozen=True, slots=True)
class MaintenanceEvent:
    type: Literal["silence_created", "silence_expired"]
    silence: Silence
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "ts": self.ts, "silence": self.silence.to_dict()}


@dataclass(frozen=True, slots=True)
class Coverage:
    """The windows and silences covering something now, and when the last one ends."""

    ids: tuple[str, ...] = ()
    until: float | None = None


class Maintenance:
    """Maintenance windows and silences. Synchronous and cheap: the correlator asks it
    about an incident only when the incident opens or changes scope."""

    def __init__(
        self,
        inventory: Inventory,
        store: IncidentStore,
        *,
        windows: Iterable[MaintenanceWindow] = (),
        clock: Callable[[], float] = time.time,
        max_silence: float = 7 * 86_400.0,
        on_event: Callable[[MaintenanceEvent], None] | None = None,
        keep_events: int = 200,
    ) -> None:
        self.inventory = inventory
        self.store = store
        self.clock = clock
        self.max_silence = max_silence
        self.on_event = on_event
        self.events: deque[MaintenanceEvent] = deque(maxlen=keep_events)
        self.version = 0  # +1 on every change to what is covered
        self._windows = list(windows)
        self._silences = {s.id: s for s in map(_silence, store.load_silences())}
        self._scopes = {s.id: Scope.of(s.match) for s in self._silences.values()}

    # --- windows -------------------------------------------------------------------------

    @property
    def windows(self) -> list[MaintenanceWindow]:
        return list(self._windows)

    def replace_windows(self, windows: Iterable[MaintenanceWindow]) -> None:
        """Swap in the windows of a reloaded file (SIGHUP), already checked."""
        self._windows = list(windows)
        self.version += 1
        log.info("maintenance windows loaded windows=%d", len(self._windows))

    def active_windows(self, now: float | None = None) -> list[Occurrence]:
        """The windows under way now, by start time."""
        t = self.clock() if now is None else now
        out = []
        for w in self._windows:
            occ = w.occurrence_at(t)
            if occ is not None:
                out.append(Occurrence(w, *occ))
        return sorted(out, key=lambda o: (o.start, o.window.id))

    def upcoming_windows(
        self, now: float | None = None, *, within: float = 7 * 86_400.0
    ) -> list[Occurrence]:
        """Occurrences that start after now and within ``within`` seconds, by start time."""
        t = self.clock() if now is None else now
        out = [Occurrence(w, s, e) for w in self._windows
               for s, e in w.occurrences(t, t + within) if s > t]
        return sorted(out, key=lambda o: (o.start, o.window.id))

    # --- silences ------------------------------------------------------------------------

    def silences(self, *, include_expired: bool = False) -> list[Silence]:
        """Silences not yet expired, by expiry (with ``include_expired``, the most recent
        1000 of all, from the store)."""
        if include_expired:
            return [_silence(d) for d in self.store.load_silences(include_expired=True)]
        return sorted(self._silences.values(), key=lambda s: (s.expires_at, s.id))

    def create_silence(
        self,
        match: MatchSpec | Mapping[str, Any],
        *,
        reason: str,
        created_by: str,
        duration: float | None = None,
        expires_at: float | None = None,
    ) -> Silence:
        """A new silence from now until ``expires_at`` (or for ``duration`` seconds).
        MaintenanceError, with one line per problem, when anything is wrong."""
        now = self.clock()
        problems: list[str] = []
        spec: MatchSpec | None = None
        try:
            spec = match if isinstance(match, MatchSpec) else MatchSpec.model_validate(match)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                where = dotted(("match", *err["loc"]))
                problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        if spec is not None:
            for loc, message, got in match_problems(self.inventory, spec):
                problems.append(f"{dotted(('match', *loc))}: {message} (got {got!r})")
        if not reason.strip():
            problems.append("reason: say why (it is shown with every incident it covers)")
        if not created_by.strip():
            problems.append("created_by: say who creates it")
        end = now + duration if duration is not None else expires_at
        if (duration is None) == (expires_at is None) or end is None:
            problems.append("give duration or expires_at (one of them)")
        elif end <= now:
            problems.append("the silence would end before it starts: expires_at is not "
                            "in the future (or duration is not positive)")
        elif end - now > self.max_silence:
            problems.append(f"a silence lasts at most {self.max_silence / 3600:g} h "
                            "(correlation.max_silence); use a maintenance window")
        if problems:
            raise MaintenanceError(problems)
        assert spec is not None and end is not None
        silence = Silence(self.store.next_silence_id(), spec, reason.strip(),
                          created_by.strip(), now, end)
        self._save(silence)
        self._silences[silence.id] = silence
        self._scopes[silence.id] = Scope.of(spec)
        self.version += 1
        log.info("silence created silence=%s by=%s until=%.0f reason=%r match=%s",
                 silence.id, silence.created_by, silence.expires_at, silence.reason,
                 json.dumps(silence.to_dict()["match"], sort_keys=True))
        self._emit(MaintenanceEvent("silence_created", silence, now))
        return silence

    def expire_silence(self, silence_id: str, *, by: str) -> Silence:
        """End a silence now. UnknownSilence when no active silence has that id."""
        silence = self._silences.get(silence_id)
        if silence is None:
            raise UnknownSilence(silence_id)
        return self._expire(silence, self.clock(), by=by.strip() or "unknown").silence

    def expire_due(self, now: float | None = None) -> list[MaintenanceEvent]:
        """Expire the silences whose time is up (the correlator calls this every second)."""
        t = self.clock() if now is None else now
        due = sorted((s for s in self._silences.values() if s.expires_at <= t),
                     key=lambda s: (s.expires_at, s.id))
        return [self._expire(s, t, by=None) for s in due]

    def _expire(self, silence: Silence, now: float, *, by: str | None) -> MaintenanceEvent:
        done = Silence(silence.id, silence.match, silence.reason, silence.created_by,
                       silence.created_at, silence.expires_at,
                       min(now, silence.expires_at) if by is None else now, by)
        self._save(done)
        del self._silences[silence.id]
        del self._scopes[silence.id]
        self.version += 1
        if by is None:
            log.info("silence expired silence=%s created_by=%s reason=%r", done.id,
                     done.created_by, done.reason)
        else:
            log.info("silence ended early silence=%s by=%s created_by=%s reason=%r", done.id,
                     by, done.created_by, done.reason)
        event = MaintenanceEvent("silence_expired", done, now)
        self._emit(event)
        return event

    def _save(self, s: Silence) -> None:
        self.store.save_silence(s.id, expires_at=s.expires_at, expired_at=s.expired_at,
                                data=json.dumps(s.to_dict(), sort_keys=True))

    def _emit(self, event: MaintenanceEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # --- coverage ------------------------------------------------------------------------

    def covering(self, target: Target, now: float) -> Coverage:
        """The windows and silences active at ``now`` that cover ``target``."""
        ids: list[str] = []
        until: float | None = None
        for w in self._windows:
            if not w.scope.covers(target):
                continue
            occ = w.occurrence_at(now)
            if occ is not None:
                ids.append(w.id)
                until = occ[1] if until is None else max(until, occ[1])
        for s in self._silences.values():
            if s.active(now) and self._scopes[s.id].covers(target):
                ids.append(s.id)
                until = s.expires_at if until is None else max(until, s.expires_at)
        return Coverage(tuple(ids), until)

    def planned_seconds(self, target: Target, start: float, end: float) -> float:
        """How much of ``[start, end]`` (an outage) planned maintenance covered
        ``target``: the union of the occurrences of the windows that cover it and of the
        silences that cover it and already existed at ``start`` -- a silence set up
        during an outage is repair work, not maintenance announced in advance (it does
        not mark an open incident planned either). SLA credits leave this time out."""
        spans: list[tuple[float, float]] = []
        for w in self._windows:
            if w.scope.covers(target):
                spans.extend(w.occurrences(start, end))
        for s in self.silences(include_expired=True):  # the outage is over: expired too
            stop = s.expires_at if s.expired_at is None else s.expired_at
            if s.created_at <= start and stop > start and Scope.of(s.match).covers(target):
                spans.append((s.created_at, stop))
        return covered_seconds(spans, start, end)


def covered_seconds(spans: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """The length of the part of ``[start, end]`` that the union of ``spans`` covers."""
    total, reach = 0.0, start
    for a, b in sorted(spans):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


def _silence(data: str) -> Silence:
    return Silence.from_dict(json.loads(data))
