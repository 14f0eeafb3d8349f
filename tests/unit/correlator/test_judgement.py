"""Judgement in the engine: priority with its breakdown, repeat hits, planned incidents."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from correlator.config import ChurnConfig
from correlator.engine import Correlator
from correlator.incidents import Incident, IncidentEvent
from correlator.inventory import Device, Inventory, ParentLink
from correlator.maintenance import MaintenanceWindow, MatchSpec, Scope
from correlator.silences import MaintenanceEvent
from correlator.store import IncidentStore
from tests.unit.correlator.support import T0, Clock, isp, oper, reach, sub

HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.db")


def baseline(c: Correlator) -> None:
    c.observe([oper("olt1", "p1", 1), oper("olt1", "p2", 1), oper("olt2", "p1", 1)])
    c.observe([reach(d, True) for d in ("core1", "agg1", "olt1", "olt2")])


def lines(inc: Incident) -> dict[str, tuple[float | str, float, float]]:
    return {c.name: (c.input, c.weight, c.contribution) for c in inc.priority_breakdown}


def dual_homed() -> Inventory:
    """core1 → agg1, agg2; olt1 on agg1 only; olt3 on both."""
    return Inventory(
        {
            "core1": Device("core1", "core", "pop-central", (), None),
            "agg1": Device("agg1", "aggregation", "pop-north", (ParentLink(device="core1"),),
                           None),
            "agg2": Device("agg2", "aggregation", "pop-south", (ParentLink(device="core1"),),
                           None),
            "olt1": Device("olt1", "access", "cabinet-n1", (ParentLink(device="agg1"),), None),
            "olt3": Device("olt3", "access", "cabinet-n3",
                           (ParentLink(device="agg1"), ParentLink(device="agg2")), None),
        },
        [sub("s1", "olt1", "p1", 30), sub("s2", "olt1", "p1", 45),
         sub("s5", "olt3", "p1", 500, "business", churn=0.5)],
    )


# --- priority --------------------------------------------------------------------------------


def test_priority_and_its_breakdown_are_stored_and_rank_incidents(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock)
    baseline(c)
    [a] = c.observe([oper("olt1", "p1", 2)])
    clock.now += 60
    [b] = c.observe([oper("olt2", "p1", 2)])
    res, ent = a.incident, b.incident
    assert lines(res) == {
        "severity": ("minor", 5.0, 5.0),
        "revenue_at_risk": (75.0, 0.1, 7.5),
        "sla_tier:residential": (2, 1.0, 2.0),
        "churn_risk": (0.3, 20.0, 6.0),
        "duration": (0.0, 0.5, 0.0),
        "contracts_near_renewal": (1, 5.0, 5.0),  # s1's contract ends 2026-04-30
    }
    assert res.priority == 25.5
    assert res.impact.contracts_near_renewal == ("s1",)
    assert ent.impact.contracts_near_renewal == ("s4",)
    assert ent.priority > res.priority
    assert [i.id for i in c.ranked()] == [ent.id, res.id]
    # persisted as computed
    stored = store.get(res.id)
    assert stored is not None
    assert (stored.priority, stored.priority_breakdown) == (res.priority, res.priority_breakdown)
    assert stored.to_dict()["priority_breakdown"][0] == {
        "name": "severity", "input": "minor", "weight": 5.0, "contribution": 5.0, "detail": ""}


def test_priority_is_recomputed_on_every_update(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(dual_homed(), store, clock=clock)
    c.observe([reach(d, True) for d in ("core1", "agg1", "agg2", "olt1", "olt3")])
    [opened] = c.observe([reach("agg1", False)])
    assert opened.incident.impact.subscribers == ("s1", "s2")  # olt3 still has agg2
    clock.now += 600
    events = c.observe([reach("agg2", False)])
    [upd] = [e for e in events if e.type == "updated"]
    assert upd.incident.id == opened.incident.id and upd.incident.revision == 2
    assert upd.incident.impact.subscribers == ("s1", "s2", "s5")  # olt3 is now cut off
    before, after = lines(opened.incident), lines(upd.incident)
    assert after["duration"][0] == 10.0 and before["duration"][0] == 0.0
    assert after["sla_tier:business"] == (1, 3.0, 3.0) and "sla_tier:business" not in before
    assert upd.incident.priority > opened.incident.priority
    # and when it resolves, the final score counts the whole outage
    clock.now += 1200
    c.observe([reach("agg2", True)])
    done = [e for e in c.observe([reach("agg1", True)]) if e.type == "resolved"]
    assert lines(done[0].incident)["duration"][0] == 30.0


# --- churn rises with repeated incidents ---------------------------------------------------


def _outage(c: Correlator, clock: Clock, port: str = "p1") -> IncidentEvent:
    [ev] = [e for e in c.observe([oper("olt1", port, 2)]) if e.incident.kind == "link_down"]
    clock.now += 600
    c.observe([oper("olt1", port, 1)])
    clock.now += 6 * HOUR  # far apart: not flapping
    return ev


def test_the_third_outage_in_the_window_raises_churn_risk_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    clock = Clock()
    c = Correlator(isp(), IncidentStore(tmp_path / "i.db"), clock=clock)
    baseline(c)
    first = _outage(c, clock).incident
    second = _outage(c, clock).incident
    assert first.impact.repeat_subscribers == second.impact.repeat_subscribers == ()
    assert lines(second)["churn_risk"][0] == 0.3

    again = Correlator(isp(), IncidentStore(tmp_path / "i.db"), clock=clock)
    baseline(again)
    third = _outage(again, clock).incident
    assert third.impact.repeat_subscribers == ("s1", "s2")
    # 0.1 + 0.1 and 0.2 + 0.1: one step each for reaching three incidents
    assert lines(third)["churn_risk"][0] == pytest.approx(0.5)
    assert third.priority == pytest.approx(second.priority + 0.2 * 20)
    # s3 (port p2) was never hit: a fault on its port is its first
    assert _outage(again, clock, "p2").incident.impact.repeat_subscribers == ()


def test_only_incidents_within_the_window_count(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, churn=ChurnConfig(window_days=1,
                                                                 repeat_threshold=2))
    baseline(c)
    _outage(c, clock)
    clock.now += 2 * 86_400
    assert _outage(c, clock).incident.impact.repeat_subscribers == ()
    assert _outage(c, clock).incident.impact.repeat_subscribers == ("s1", "s2")


def test_an_outage_that_merges_upstream_counts_once(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, churn=ChurnConfig(repeat_threshold=2))
    baseline(c)
    c.observe([reach("olt1", False)])
    events = c.observe([reach("agg1", False)])
    assert sorted(e.type for e in events) == ["merged", "opened"]
    agg = next(e.incident for e in events if e.type == "opened")
    assert agg.impact.repeat_subscribers == ()  # olt1's incident was the same outage
    assert store.hit_counts(["s1", "s4"], since=0) == {"s1": 1, "s4": 1}


# --- planned ---------------------------------------------------------------------------------


def window(wid: str, start: float, end: float, **match: list[str]) -> MaintenanceWindow:
    spec = MatchSpec.model_validate(match)
    return MaintenanceWindow(wid, "planned work", "alice", "UTC", spec, Scope.of(spec),
                             start=start, end=end, duration=end - start)


def test_an_incident_inside_a_window_is_planned_until_the_window_ends(
    store: IncidentStore,
) -> None:
    clock = Clock()
    w = window("olt1-work", T0 - 60, T0 + HOUR, devices=["olt1"])
    c = Correlator(isp(), store, clock=clock, windows=[w])
    baseline(c)
    [ev] = c.observe([oper("olt1", "p1", 2)])
    inc = ev.incident
    assert (inc.planned, inc.planned_by, inc.planned_until) == (True, ("olt1-work",), T0 + HOUR)
    assert store.get(inc.id).planned is True  # type: ignore[union-attr]
    assert store.hit_counts(["s1"], since=0) == {}  # planned: not held against the network
    [other] = c.observe([oper("olt2", "p1", 2)])
    assert other.incident.planned is False

    clock.now = T0 + HOUR - 1
    assert c.tick() == []
    clock.now = T0 + HOUR
    [upd] = c.tick()
    assert (upd.type, upd.incident.id, upd.incident.planned) == ("updated", inc.id, False)
    assert upd.incident.revision == 2
    assert "no longer planned: its maintenance ended" in upd.incident.timeline[-1].text
    assert store.get(inc.id).planned is False  # type: ignore[union-attr]
    assert c.tick() == []


def test_planned_ends_when_the_outage_reaches_people_who_were_not_told(
    store: IncidentStore,
) -> None:
    clock = Clock()
    w = window("agg1-subs", T0 - 60, T0 + HOUR, subscribers=["s1", "s2"])
    c = Correlator(dual_homed(), store, clock=clock, windows=[w])
    c.observe([reach(d, True) for d in ("core1", "agg1", "agg2", "olt1", "olt3")])
    [ev] = c.observe([reach("agg1", False)])
    assert ev.incident.planned
    clock.now += 60
    [upd] = [e for e in c.observe([reach("agg2", False)]) if e.type == "updated"]
    assert upd.incident.planned is False and upd.incident.planned_by == ()
    assert "reaches beyond its maintenance" in upd.incident.timeline[-1].text


def test_a_silence_covers_what_opens_during_it_and_says_when_it_ends(
    store: IncidentStore,
) -> None:
    clock = Clock()
    heard: list[MaintenanceEvent] = []
    c = Correlator(isp(), store, clock=clock, on_notice=heard.append)
    baseline(c)
    [before] = c.observe([oper("olt1", "p2", 2)])  # already open: stays unplanned
    s = c.maintenance.create_silence({"devices": ["olt1"]}, reason="card swap",
                                     created_by="alice", duration=600)
    assert c.tick() == []
    assert c.open[before.incident.root].planned is False
    clock.now += 10
    [during] = c.observe([oper("olt1", "p1", 2)])
    assert during.incident.planned_by == (s.id,)
    clock.now = T0 + 600
    events = c.tick()
    assert [(e.type, e.incident.id, e.incident.planned) for e in events] == [
        ("updated", during.incident.id, False)]
    assert [(e.type, e.silence.id) for e in heard] == [("silence_created", s.id),
                                                      ("silence_expired", s.id)]


def test_ending_a_silence_early_ends_planned_at_the_next_tick(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock)
    baseline(c)
    s = c.maintenance.create_silence({"sites": ["cabinet-n1"]}, reason="r", created_by="a",
                                     duration=HOUR)
    [ev] = c.observe([oper("olt1", "p1", 2)])
    assert ev.incident.planned
    clock.now += 60
    c.maintenance.expire_silence(s.id, by="bob")
    [upd] = c.tick()
    assert upd.incident.planned is False


def test_planned_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    w = window("olt1-work", T0 - 60, T0 + HOUR, devices=["olt1"])
    c = Correlator(isp(), IncidentStore(tmp_path / "i.db"), clock=clock, windows=[w])
    baseline(c)
    inc = c.observe([oper("olt1", "p1", 2)])[0].incident
    again = Correlator(isp(), IncidentStore(tmp_path / "i.db"), clock=clock, windows=[w])
    assert again.open[inc.root].planned
    clock.now = T0 + HOUR
    assert [e.incident.planned for e in again.tick()] == [False]


def test_renewal_window_follows_the_clock(store: IncidentStore) -> None:
    clock = Clock(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp())
    c = Correlator(isp(), store, clock=clock)
    baseline(c)
    [ev] = c.observe([oper("olt1", "p2", 2)])
    assert ev.incident.impact.contracts_near_renewal == ("s3",)  # ends 2027-01-31


# --- the judgement of a large incident, column by column --------------------------------------


def test_assess_of_many_subscribers_matches_one_by_one(store: IncidentStore) -> None:
    """Repeat subscribers, contracts near renewal and the churn sum, as a loop over the
    subscribers one at a time computes them; ids gone from the inventory are left out."""
    from correlator.config import PriorityConfig
    from correlator.incidents import Impact
    from correlator.judgement import Judge
    from correlator.priority import effective_churn
    from correlator.silences import Maintenance

    now = T0 + 400 * 86_400.0
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    subs = [sub(f"s{i:04d}", "olt1", "p1", churn=(i * 37 % 101) / 100,
                contract_end=None if i % 3 else today + dt.timedelta(days=i % 200 - 20))
            for i in range(1_500)]
    inv = Inventory(isp().devices, subs)
    for k in range(4):  # earlier incidents, each hitting a different share of them
        store.record_hits(f"INC-00000{k}", [s.id for s in subs[:: k + 1]], now - 3_600.0 * k)
    churn = ChurnConfig(repeat_threshold=3, step=0.15)
    judge = Judge(inv, store, Maintenance(inv, store), priority=PriorityConfig(), churn=churn)
    ids = tuple(sorted([s.id for s in subs[::2]] + ["s-gone", "t-gone"]))
    inc = Incident("INC-000009", "device:olt1", "device_down", "olt1", None, "access", None,
                   "major", "open", now - 600.0, now,
                   impact=Impact(subscribers=ids, subscribers_by_tier={"residential": len(ids)}))
    got = judge.assess(inc, now, previous=None)

    hits = store.hit_counts(ids, since=now - churn.window_days * 86_400.0)
    by_id = {s.id: s for s in subs}
    last = today + dt.timedelta(days=PriorityConfig().renewal_window_days)
    want_near, want_repeat, want_churn = [], [], 0.0
    for sid in ids:
        s = by_id.get(sid)
        if s is None:
            continue
        n = hits.get(sid, 0)
        if n >= churn.repeat_threshold:
            want_repeat.append(sid)
        want_churn += effective_churn(s.churn_risk, n, threshold=3, step=0.15)
        if s.contract_end is not None and today <= s.contract_end <= last:
            want_near.append(sid)
    assert hits["s0000"] == 5 and want_repeat and want_near  # the case is not empty
    assert got.impact.repeat_subscribers == tuple(want_repeat)
    assert got.impact.contracts_near_renewal == tuple(want_near)
    churn_line = next(c for c in got.priority_breakdown if c.name == "churn_risk")
    assert churn_line.input == round(want_churn, 4)
