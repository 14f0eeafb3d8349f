"""Detection, incident lifecycle and persistence, with a fake clock and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from correlator.engine import Correlator
from correlator.inventory import Device, Inventory, ParentLink, Subscriber
from correlator.store import IncidentStore
from probes.types import IF_OPER_STATUS, REACHABLE, Observation


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _sub(sid: str, device: str, port: str, revenue: float, tier: str) -> Subscriber:
    return Subscriber(sid, None, None, device, port, None, None, None, revenue, tier, None, 0.1,
                      None, None, True, False)


def inventory() -> Inventory:
    return Inventory(
        {
            "core1": Device("core1", "core", None, (), None),
            "agg1": Device("agg1", "aggregation", "north", (ParentLink(device="core1"),), None),
            "olt1": Device("olt1", "access", None, (ParentLink(device="agg1"),), None),
            "olt2": Device("olt2", "access", None, (ParentLink(device="agg1"),), None),
        },
        [_sub("s1", "olt1", "p1", 30, "residential"), _sub("s2", "olt1", "p1", 45, "residential"),
         _sub("s3", "olt1", "p2", 120, "business"), _sub("s4", "olt2", "p1", 3000, "enterprise")],
    )


def oper(device: str, port: str, status: int, admin: str = "up") -> Observation:
    return Observation(device, "snmp", IF_OPER_STATUS, port, status, 0.0, {"admin": admin})


def reach(device: str, up: bool) -> Observation:
    return Observation(device, "snmp", REACHABLE, "", int(up), 0.0, {"reason": "timeout"})


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.db")


def test_port_down_opens_incident_naming_exactly_its_subscribers(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    assert c.observe([oper("olt1", "p1", 1), oper("olt1", "p2", 1)]) == []  # baseline
    events = c.observe([oper("olt1", "p1", 2)])
    assert [e.type for e in events] == ["opened"]
    inc = events[0].incident
    assert inc.kind == "link_down" and inc.device == "olt1" and inc.port == "p1"
    assert inc.impact.subscribers == ("s1", "s2")
    assert inc.impact.revenue_by_tier == {"residential": 75.0}
    # the same fault confirmed again does not open a second incident
    assert c.observe([oper("olt1", "p1", 2)]) == []


def test_admin_down_port_is_not_a_fault(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    c.observe([oper("olt1", "p1", 1)])
    assert c.observe([oper("olt1", "p1", 2, admin="down")]) == []


def test_port_already_down_at_start_is_baseline(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    assert c.observe([oper("olt1", "p1", 2)]) == []
    assert c.open_incidents() == []


def test_restore_resolves(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(inventory(), store, clock=clock)
    c.observe([oper("olt1", "p1", 1)])
    opened = c.observe([oper("olt1", "p1", 7)])[0].incident
    clock.now += 120
    events = c.observe([oper("olt1", "p1", 1)])
    assert [e.type for e in events] == ["resolved"]
    assert events[0].incident.id == opened.id
    assert events[0].incident.resolved_at == clock.now
    assert store.get(opened.id).state == "resolved"  # type: ignore[union-attr]


def test_aggregation_down_is_one_incident_with_children_as_symptoms(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    c.observe([reach(d, True) for d in ("core1", "agg1", "olt1", "olt2")])
    events = c.observe([reach("olt1", False)])
    assert [(e.type, e.incident.root) for e in events] == [("opened", "device:olt1")]
    events = c.observe([reach("agg1", False), reach("olt2", False)])
    kinds = sorted((e.type, e.incident.root) for e in events)
    # olt1's own incident is re-attributed to the parent's: merged, not an all-clear
    assert kinds == [("merged", "device:olt1"), ("opened", "device:agg1")]
    agg = next(e.incident for e in events if e.type == "opened")
    merged = next(e.incident for e in events if e.type == "merged")
    assert merged.merged_into == agg.id and merged.state == "merged"
    assert agg.symptoms == ("device:olt1", "device:olt2")
    assert agg.impact.subscriber_count == 4
    assert agg.impact.revenue_at_risk == 3195.0
    assert agg.severity == "critical"


def test_incidents_survive_a_restart_and_resolve_after_it(tmp_path: Path) -> None:
    clock = Clock()
    c = Correlator(inventory(), IncidentStore(tmp_path / "i.db"), clock=clock)
    c.observe([oper("olt1", "p1", 1)])
    opened = c.observe([oper("olt1", "p1", 2)])[0].incident

    again = Correlator(inventory(), IncidentStore(tmp_path / "i.db"), clock=clock)
    assert [i.id for i in again.open_incidents()] == [opened.id]
    # still down after the restart: nothing new
    assert again.observe([oper("olt1", "p1", 2)]) == []
    events = again.observe([oper("olt1", "p1", 1)])
    assert [(e.type, e.incident.id) for e in events] == [("resolved", opened.id)]


def test_unknown_device_is_counted_not_fatal(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    assert c.observe([reach("ghost", False)]) == []
    assert c.stats.unknown_device == 1


def test_incident_ids_are_sequential_and_persistent(tmp_path: Path) -> None:
    s = IncidentStore(tmp_path / "i.db")
    assert [s.next_id(), s.next_id()] == ["INC-000001", "INC-000002"]
    assert IncidentStore(tmp_path / "i.db").next_id() == "INC-000003"


def test_hold_down_lets_the_parent_fault_arrive_first(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(inventory(), store, clock=clock, hold_down=5)
    c.observe([reach(d, True) for d in ("core1", "agg1", "olt1", "olt2")])
    assert c.observe([reach("olt1", False)]) == []  # held down
    clock.now += 2
    assert c.observe([reach("agg1", False)]) == []
    assert c.tick() == []
    clock.now += 3.5
    assert c.tick() == []  # agg1 itself is not 5 s old yet
    clock.now += 2
    events = c.tick()
    assert [(e.type, e.incident.root) for e in events] == [("opened", "device:agg1")]
    assert events[0].incident.symptoms == ("device:olt1",)
    assert any("olt1 stopped answering" in t.text for t in events[0].incident.timeline)


def test_unreachable_shorter_than_hold_down_is_never_told(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(inventory(), store, clock=clock, hold_down=5)
    c.observe([reach("olt1", True)])
    assert c.observe([reach("olt1", False)]) == []
    clock.now += 1
    assert c.observe([reach("olt1", True)]) == []
    clock.now += 10
    assert c.tick() == [] and c.open_incidents() == []


def test_link_faults_are_not_held_down(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock(), hold_down=5)
    c.observe([oper("olt1", "p1", 1)])
    assert [e.type for e in c.observe([oper("olt1", "p1", 2)])] == ["opened"]


def test_children_come_back_with_their_parent_without_an_incident_each(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(inventory(), store, clock=clock)
    c.observe([reach(d, True) for d in ("core1", "agg1", "olt1", "olt2")])
    c.observe([reach("agg1", False), reach("olt1", False), reach("olt2", False)])
    assert [i.root for i in c.open_incidents()] == ["device:agg1"]
    events = c.observe([reach("agg1", True)])
    assert [(e.type, e.incident.root) for e in events] == [("resolved", "device:agg1")]
    # the children answer on their next poll: nothing more to say
    assert c.observe([reach("olt1", True)]) == []
    # one child really is down: it gets its own incident when its poll says so
    events = c.observe([reach("olt2", False)])
    assert [(e.type, e.incident.root) for e in events] == [("opened", "device:olt2")]


def test_link_to_a_device_that_then_stops_answering_merges_into_the_device(
    store: IncidentStore,
) -> None:
    inv = Inventory(
        {
            "core1": Device("core1", "core", None, (), None),
            "agg1": Device("agg1", "aggregation", None,
                           (ParentLink(device="core1", port="xe-0/0/1"),), None),
            "olt1": Device("olt1", "access", None, (ParentLink(device="agg1"),), None),
        },
        [_sub("s1", "olt1", "p1", 30, "residential")],
    )
    clock = Clock()
    c = Correlator(inv, store, clock=clock, hold_down=2)
    c.observe([oper("core1", "xe-0/0/1", 1)])
    assert c.observe([oper("core1", "xe-0/0/1", 2)]) == []  # a link between devices: held
    clock.now += 2.5
    link = c.tick()
    assert [(e.type, e.incident.root) for e in link] == [("opened", "link:core1:xe-0/0/1")]
    assert link[0].incident.impact.subscribers == ("s1",)
    # agg1's poll times out later: the device is the better root; the link merges into it
    assert c.observe([reach("agg1", False)]) == []  # device root held; link stays open
    assert [i.root for i in c.open_incidents()] == ["link:core1:xe-0/0/1"]
    clock.now += 2.5
    events = c.tick()
    assert [(e.type, e.incident.root) for e in events] == [
        ("opened", "device:agg1"), ("merged", "link:core1:xe-0/0/1")]
    assert events[1].incident.merged_into == events[0].incident.id
    assert events[0].incident.symptoms == ("link:core1:xe-0/0/1",)


def test_a_trap_for_a_port_never_polled_is_news(store: IncidentStore) -> None:
    c = Correlator(inventory(), store, clock=Clock())
    trap = Observation("olt1", "trap", IF_OPER_STATUS, "p1", 2, 0.0, {"admin": "up"})
    assert [e.type for e in c.observe([trap])] == ["opened"]
    # while a poll's first sight of a down port stays baseline
    assert c.observe([oper("olt1", "p2", 2)]) == []
