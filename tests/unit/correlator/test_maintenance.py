"""Maintenance windows (file, schedule, scope) and silences (create, expire, persist)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from correlator.errors import MaintenanceError, UnknownSilence
from correlator.incidents import Incident, compute_impact
from correlator.inventory import load_inventory
from correlator.maintenance import (
    Every,
    MaintenanceWindow,
    MatchSpec,
    Scope,
    Target,
    load_maintenance,
    parse_duration,
    target_of,
)
from correlator.silences import Maintenance, MaintenanceEvent
from correlator.store import IncidentStore
from probes.source import SourceError
from tests.unit.correlator.support import T0, Clock, isp

ETC = Path(__file__).resolve().parents[3] / "etc"
LISBON = ZoneInfo("Europe/Lisbon")


def ts(zone: ZoneInfo, *args: int) -> float:
    return dt.datetime(*args, tzinfo=zone).timestamp()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maintenance.yaml"
    path.write_text(text)
    return path


# --- the file ----------------------------------------------------------------------------


def test_the_example_file_loads_against_the_example_inventory() -> None:
    inv = load_inventory([ETC / "inventory.yaml"])
    windows = {w.id: w for w in load_maintenance(ETC / "maintenance.yaml", inv)}
    assert set(windows) == {"core1-junos-upgrade", "north-olt-patching", "acme-cpe-swap"}
    core = windows["core1-junos-upgrade"]
    # 01:00 in Lisbon in April is summer time (UTC+1)
    assert core.start == ts(dt.UTC, 2026, 4, 14, 0, 0)
    assert core.end == ts(dt.UTC, 2026, 4, 14, 2, 30)
    acme = windows["acme-cpe-swap"]
    assert acme.end - acme.start == 7200  # type: ignore[operator]
    patching = windows["north-olt-patching"]
    assert patching.recurring and patching.days == {1, 3} and patching.duration == 5400


BAD = """\
windows:
  - id: bad-zone
    reason: typo in the zone
    timezone: Europe/Lisbn
    start: 2026-04-14T01:00:00
    duration: 1h
    match: {devices: [core1]}
  - id: backwards
    reason: end before start
    start: 2026-04-14T03:00:00
    end: 2026-04-14T01:00:00
    match:
      devices: [core9]
      sites: [mars]
  - id: weekly
    reason: bad day, time and duration
    every: {days: [tuesday], start: "25:00", duration: 2 hours}
    match: {sla_tiers: [residential]}
  - id: backwards
    reason: duplicate id
    start: 2026-04-14T03:00:00
    duration: 1h
    match: {devices: [core1]}
  - id: nothing
    reason: no schedule and no scope
    match: {}
  - id: half
    reason: start without an end
    start: 2026-04-14T03:00:00
    match: {sla_tiers: [gold]}
"""


def test_every_problem_in_the_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(SourceError) as info:
        load_maintenance(path, isp())
    got = [str(p) for p in info.value.problems]
    expected = [
        (4, "windows[0].timezone", "unknown time zone"),
        (11, "windows[1].end", "end is not after start (2026-04-14T03:00:00)"),
        (13, "windows[1].match.devices[0]", "unknown device"),
        (14, "windows[1].match.sites[0]", "unknown site (sites: cabinet-n1, cabinet-n2"),
        (17, "windows[2].every.days[0]", "Input should be 'mon'"),
        (17, "windows[2].every.start", 'expected a local time of day as "HH:MM"'),
        (17, "windows[2].every.duration", "expected a duration such as 90m"),
        (19, "windows[3].id", "duplicate window id (first on line 8)"),
        (26, "windows[4].match", "say what it covers"),
        (29, "windows[5].start", "a one-off window needs end or duration"),
        (30, "windows[5].match.sla_tiers[0]", "no subscriber has this SLA tier"),
    ]
    assert len(got) == len(expected), "\n".join(got)
    for line, where, message in expected:
        prefix = f"{path}:{line}: {where}: "
        assert any(g.startswith(prefix) and message in g for g in got), (prefix, got)
    assert "(got 'Europe/Lisbn')" in got[0] and "(got 'core9')" in "\n".join(got)


def test_a_window_cannot_be_both_one_off_and_recurring(tmp_path: Path) -> None:
    path = write(tmp_path, """\
windows:
  - id: both
    reason: confused
    start: 2026-04-14T03:00:00
    duration: 1h
    every: {days: [mon], start: "02:00", duration: 1h}
    match: {devices: [olt1]}
""")
    with pytest.raises(SourceError, match=r":6: windows\[0\]\.every: a window is one-off"):
        load_maintenance(path, isp())


def test_unquoted_times_and_durations() -> None:
    # YAML 1.1 reads an unquoted 02:30 as the base-60 number 150: that is still 02:30
    every = Every.model_validate({"days": ["mon"], "start": 150, "duration": "1h30m"})
    assert (every.start, every.duration) == (dt.time(2, 30), 5400)
    assert parse_duration("1d2h") == 93_600
    for bad in ("", "0m", "2 hours", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- when ------------------------------------------------------------------------------------


def _weekly(days: set[int], at: dt.time, duration: float, zone: str = "Europe/Lisbon",
            **kw: dt.date) -> MaintenanceWindow:
    match = MatchSpec(devices=["olt1"])
    return MaintenanceWindow("w", "r", None, zone, match, Scope.of(match), days=frozenset(days),
                             at=at, duration=duration, **kw)


def test_recurring_windows_follow_local_time_across_daylight_saving() -> None:
    w = _weekly({1}, dt.time(2, 0), 5400)  # Tuesdays 02:00-03:30 Lisbon time
    got = w.occurrences(ts(dt.UTC, 2026, 3, 20), ts(dt.UTC, 2026, 4, 4))
    assert got == [
        (ts(dt.UTC, 2026, 3, 24, 2, 0), ts(dt.UTC, 2026, 3, 24, 3, 30)),  # winter: UTC+0
        (ts(dt.UTC, 2026, 3, 31, 1, 0), ts(dt.UTC, 2026, 3, 31, 2, 30)),  # summer: UTC+1
    ]
    assert w.occurrence_at(ts(LISBON, 2026, 3, 31, 3, 29)) == got[1]
    assert w.occurrence_at(ts(LISBON, 2026, 3, 31, 3, 30)) is None
    assert w.occurrence_at(ts(LISBON, 2026, 4, 1, 2, 0)) is None  # a Wednesday


def test_a_start_time_that_does_not_exist_that_day_shifts_forward() -> None:
    # 2026-03-29: Lisbon jumps from 01:00 to 02:00; 01:30 does not exist
    w = _weekly({6}, dt.time(1, 30), 3600)
    [(start, _)] = w.occurrences(ts(dt.UTC, 2026, 3, 29), ts(dt.UTC, 2026, 3, 29, 23))
    assert dt.datetime.fromtimestamp(start, LISBON).strftime("%H:%M") == "02:30"


def test_an_occurrence_that_runs_past_midnight_is_found_the_next_day() -> None:
    w = _weekly({5}, dt.time(23, 0), 4 * 3600, zone="UTC")  # Saturdays 23:00 to 03:00
    assert w.occurrence_at(ts(dt.UTC, 2026, 3, 15, 2, 0)) == (
        ts(dt.UTC, 2026, 3, 14, 23, 0), ts(dt.UTC, 2026, 3, 15, 3, 0))


def test_first_and_last_day_bound_a_recurring_window() -> None:
    w = _weekly({1}, dt.time(2, 0), 3600, first_day=dt.date(2026, 3, 17),
                last_day=dt.date(2026, 3, 24))
    got = w.occurrences(ts(dt.UTC, 2026, 3, 1), ts(dt.UTC, 2026, 4, 30))
    assert [dt.datetime.fromtimestamp(s, LISBON).date().day for s, _ in got] == [17, 24]


def test_active_and_upcoming_windows() -> None:
    inv = load_inventory([ETC / "inventory.yaml"])
    store = IncidentStore(":memory:")
    clock = Clock(ts(LISBON, 2026, 4, 14, 2, 15))  # a Tuesday, inside two windows
    m = Maintenance(inv, store, windows=load_maintenance(ETC / "maintenance.yaml", inv),
                    clock=clock)
    assert [o.window.id for o in m.active_windows()] == ["core1-junos-upgrade",
                                                        "north-olt-patching"]
    [patching] = [o for o in m.active_windows() if o.window.recurring]
    assert patching.to_dict()["start_local"] == "2026-04-14T02:00:00+01:00"
    upcoming = m.upcoming_windows(within=3 * 86_400)
    assert [(o.window.id, dt.datetime.fromtimestamp(o.start, LISBON).day) for o in upcoming] \
        == [("north-olt-patching", 16)]


# --- what ------------------------------------------------------------------------------------


def _incident(root: str, subs: list[str], devices: tuple[str, ...] = ()) -> Incident:
    _, _, rest = root.partition(":")
    device, _, port = rest.partition(":")
    return Incident(id="INC-1", root=root, kind="link_down" if port else "device_unreachable",
                    device=device, port=port or None, role="access", site=None,
                    severity="major", state="open", opened_at=T0, updated_at=T0,
                    impact=compute_impact(isp(), subs, devices))


@pytest.mark.parametrize(
    ("match", "root", "subs", "covered"),
    [
        ({"devices": ["olt1"]}, "link:olt1:p1", ["s1", "s2"], True),
        ({"devices": ["olt1"]}, "link:olt2:p1", ["s4"], False),
        # the far end of a failed link between devices counts: agg1's work takes core1's port
        ({"devices": ["agg1"]}, "link:core1:xe-0/0/1", ["s1", "s2", "s3", "s4"], True),
        ({"sites": ["pop-north"]}, "device:agg1", ["s1", "s2", "s3", "s4"], True),
        ({"sites": ["cabinet-n1"]}, "device:agg1", ["s1", "s2", "s3", "s4"], False),
        ({"subscribers": ["s1", "s2"]}, "link:olt1:p1", ["s1", "s2"], True),
        ({"subscribers": ["s1"]}, "link:olt1:p1", ["s1", "s2"], False),  # s2 was not told
        ({"subscribers": ["s1"]}, "link:olt1:p3", [], False),  # hurts nobody listed
        ({"sla_tiers": ["residential"]}, "link:olt1:p1", ["s1", "s2"], True),
        ({"sla_tiers": ["residential"]}, "device:olt1", ["s1", "s2", "s3"], False),
        # every selector must hold
        ({"devices": ["olt1"], "sla_tiers": ["business"]}, "link:olt1:p2", ["s3"], True),
        ({"devices": ["olt1"], "sla_tiers": ["business"]}, "link:olt1:p1", ["s1"], False),
    ],
)
def test_scope(match: dict[str, list[str]], root: str, subs: list[str], covered: bool) -> None:
    scope = Scope.of(MatchSpec.model_validate(match))
    assert scope.covers(target_of(isp(), _incident(root, subs))) is covered


def test_target_of_a_device_link_includes_both_ends_and_their_sites() -> None:
    t = target_of(isp(), _incident("link:core1:xe-0/0/1", []))
    assert t == Target(("core1", "agg1"), ("pop-central", "pop-north"), (), ())


# --- silences --------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.db")


def test_a_silence_is_created_kept_and_expires_saying_so(
    store: IncidentStore, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    heard: list[MaintenanceEvent] = []
    m = Maintenance(isp(), store, clock=clock, on_event=heard.append)
    s = m.create_silence({"devices": ["olt1"]}, reason="swapping a line card",
                         created_by="alice", duration=3600)
    assert (s.id, s.created_at, s.expires_at) == ("SIL-000001", T0, T0 + 3600)
    assert [(e.type, e.silence.id) for e in heard] == [("silence_created", s.id)]
    assert m.covering(target_of(isp(), _incident("link:olt1:p1", ["s1"])), T0 + 10).ids \
        == (s.id,)

    # a restart keeps it
    again = Maintenance(isp(), store, clock=clock, on_event=heard.append)
    assert [x.id for x in again.silences()] == [s.id]

    clock.now += 3599
    assert again.expire_due() == []
    clock.now += 1
    with caplog.at_level(logging.INFO, logger="correlator.silences"):
        [ev] = again.expire_due()
    assert (ev.type, ev.silence.expired_at, ev.silence.expired_by) == \
        ("silence_expired", T0 + 3600, None)
    assert "silence expired silence=SIL-000001 created_by=alice" in caplog.text
    assert heard[-1] == ev and again.events[-1] == ev
    assert again.silences() == []
    [old] = again.silences(include_expired=True)
    assert old.expired_at == T0 + 3600
    assert again.covering(target_of(isp(), _incident("link:olt1:p1", ["s1"])), clock.now).ids \
        == ()


def test_a_silence_that_ran_out_while_stopped_expires_at_the_first_check(
    store: IncidentStore,
) -> None:
    clock = Clock()
    Maintenance(isp(), store, clock=clock).create_silence(
        {"sites": ["cabinet-n1"]}, reason="r", created_by="bob", duration=60)
    clock.now += 7200
    [ev] = Maintenance(isp(), store, clock=clock).expire_due()
    assert ev.type == "silence_expired" and ev.silence.expired_at == T0 + 60


def test_a_silence_can_be_ended_early(store: IncidentStore) -> None:
    clock = Clock()
    m = Maintenance(isp(), store, clock=clock)
    s = m.create_silence({"devices": ["olt2"]}, reason="r", created_by="alice",
                         expires_at=T0 + 600)
    clock.now += 60
    done = m.expire_silence(s.id, by="bob")
    assert (done.expired_at, done.expired_by) == (T0 + 60, "bob")
    assert m.events[-1].type == "silence_expired"
    with pytest.raises(UnknownSilence, match="SIL-000001"):
        m.expire_silence(s.id, by="bob")


@pytest.mark.parametrize(
    ("match", "kw", "problem"),
    [
        ({"devices": ["olt9"]}, {}, "match.devices[0]: unknown device"),
        ({}, {}, "match: say what it covers"),
        ({"devices": ["olt1"], "colour": "red"}, {}, "match.colour: Extra inputs"),
        ({"devices": ["olt1"]}, {"reason": " "}, "reason: say why"),
        ({"devices": ["olt1"]}, {"duration": 30 * 86_400}, "a silence lasts at most 168 h"),
        ({"devices": ["olt1"]}, {"duration": None, "expires_at": T0 - 1}, "end before it starts"),
        ({"devices": ["olt1"]}, {"expires_at": T0 + 60}, "give duration or expires_at"),
    ],
)
def test_a_bad_silence_is_refused_with_reasons(
    store: IncidentStore, match: dict[str, object], kw: dict[str, object], problem: str,
) -> None:
    m = Maintenance(isp(), store, clock=Clock())
    args: dict[str, object] = {"reason": "r", "created_by": "alice", "duration": 600.0, **kw}
    with pytest.raises(MaintenanceError) as info:
        m.create_silence(match, **args)  # type: ignore[arg-type]
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert m.silences(include_expired=True) == [] and m.version == 0
