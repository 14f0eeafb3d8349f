"""Conditions as incidents: detector conditions, BGP sessions, ONTs and repeated failures,
through the real Correlator with a fake clock and a real SQLite store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from correlator.config import ChurnConfig
from correlator.detect_config import CongestionConfig, LatencyConfig, PlanSaturationConfig
from correlator.detection import DetectionConfig
from correlator.engine import Correlator
from correlator.incidents import Incident, IncidentEvent
from correlator.inventory import Inventory, Subscriber
from correlator.store import IncidentStore
from probes.types import (
    BGP_PEER_STATE,
    ONT_STATE,
    RTT_MS,
    InterfaceCounters,
    Observation,
)
from tests.unit.correlator.support import Clock, isp, oper, reach, sub

FAST = DetectionConfig(congestion=CongestionConfig(raise_after_s=0, clear_after_s=0))
MBIT = 1_000_000 / 8  # octets per second of one Mb/s


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.db")


class Traffic:
    """A device's interface table whose in-octets grow at a rate we choose, per port."""

    def __init__(self, c: Correlator, clock: Clock, device: str, ports: dict[str, int]) -> None:
        self.c, self.clock, self.device = c, clock, device
        self.speed = ports  # port -> Mb/s
        self.octets = dict.fromkeys(ports, 0)

    def step(self, mbps: dict[str, float], seconds: float = 60.0) -> list[IncidentEvent]:
        self.clock.now += seconds
        for port, rate in mbps.items():
            self.octets[port] += int(rate * MBIT * seconds)
        names = list(self.speed)
        n = len(names)
        counters = InterfaceCounters(
            if_index=list(range(1, n + 1)), name=names, oper_status=[1] * n,
            in_octets=[self.octets[p] for p in names], out_octets=[0] * n,
            in_errors=[0] * n, out_errors=[0] * n, speed_mbps=[self.speed[p] for p in names])
        return self.c.observe_counters(self.device, counters, self.clock.now)


def quiet(c: Correlator, clock: Clock) -> Traffic:
    """olt1's p1 (1 Gb/s) after two polls at 1 %: its rate is known."""
    t = Traffic(c, clock, "olt1", {"p1": 1000})
    t.step({"p1": 10})
    t.step({"p1": 10})
    return t


def congest(t: Traffic, port: str) -> IncidentEvent:
    t.step({port: 10})
    t.step({port: 10})
    [ev] = t.step({port: 0.95 * t.speed[port]})
    return ev


def test_congestion_opens_once_with_its_numbers_and_resolves_once(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    t = Traffic(c, clock, "olt1", {"p1": 1000, "p2": 1000})
    ev = congest(t, "p1")
    inc = ev.incident
    assert (ev.type, inc.kind, inc.root) == ("opened", "congestion", "cond:congestion:olt1:p1")
    assert inc.device == "olt1" and inc.port == "p1" and inc.severity == "major"
    assert inc.evidence["utilization_pct"] == pytest.approx(95.0)
    assert inc.evidence["speed_bps"] == 1_000_000_000 and inc.evidence["direction"] == "in"
    assert "95%" in inc.summary and inc.title == "congestion on olt1 p1"
    assert inc.timeline[0].text == inc.summary
    # the subscribers behind the port, degraded (not cut off), and judged like an outage
    assert inc.impact.subscribers == ("s1", "s2") and inc.impact.service == "degraded"
    assert inc.priority > 0 and inc.priority_breakdown
    for _ in range(3):  # still congested: nothing new
        assert t.step({"p1": 950}) == []
    assert c.stats.detections == {("congestion", "raised"): 1}
    [done] = t.step({"p1": 10})
    assert (done.type, done.incident.id) == ("resolved", inc.id)
    assert "cleared" in done.incident.timeline[-1].text
    assert "utilization_pct=1" in done.incident.timeline[-1].text
    assert t.step({"p1": 10}) == [] and c.open == {}
    assert c.stats.detections[("congestion", "cleared")] == 1
    stored = store.get(inc.id)
    assert stored is not None and stored.state == "resolved"
    assert stored.evidence["utilization_pct"] == pytest.approx(95.0)  # persisted


def test_a_congested_uplink_degrades_everyone_behind_it(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    t = Traffic(c, clock, "core1", {"xe-0/0/1": 10_000})
    inc = congest(t, "xe-0/0/1").incident
    assert inc.impact.subscribers == ("s1", "s2", "s3", "s4")
    assert inc.impact.devices == ("agg1", "olt1", "olt2")
    assert inc.impact.service == "degraded"


def test_latency_from_ping_observations_is_a_device_condition(store: IncidentStore) -> None:
    clock = Clock()
    det = DetectionConfig(latency=LatencyConfig(warmup_samples=5, raise_samples=2,
                                                clear_samples=2))
    c = Correlator(isp(), store, clock=clock, detection=det)

    def rtt(ms: float) -> list[IncidentEvent]:
        clock.now += 30
        return c.observe([Observation("olt1", "ping", RTT_MS, "", ms, clock.now)])

    for i in range(10):
        assert rtt(2.0 + 0.1 * (i % 3)) == []
    assert rtt(150.0) == []
    [ev] = rtt(160.0)
    inc = ev.incident
    assert (inc.kind, inc.root, inc.port) == ("latency", "cond:latency:olt1:", None)
    assert inc.impact.subscribers == ("s1", "s2", "s3") and inc.impact.service == "degraded"
    assert inc.evidence  # the numbers that raised it
    rtt(2.0)
    [done] = rtt(2.1)
    assert done.type == "resolved" and done.incident.id == inc.id


def test_a_condition_on_a_device_that_goes_down_merges_into_the_outage(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    t = Traffic(c, clock, "olt1", {"p1": 1000})
    cong = congest(t, "p1").incident
    events = c.observe([reach("olt1", False)])
    by_type = {e.type: e.incident for e in events}
    assert sorted(by_type) == ["merged", "opened"]
    outage = by_type["opened"]
    assert outage.kind == "device_unreachable"
    merged = by_type["merged"]
    assert merged.id == cong.id and merged.merged_into == outage.id
    assert "now a symptom of" in merged.timeline[-1].text
    assert list(c.open) == ["device:olt1"]
    # the subscribers count once, with the outage
    assert store.hit_counts(["s1"], since=0) == {"s1": 1}
    # back up: the detector starts afresh, congestion again is a new incident
    c.observe([reach("olt1", True)])
    again = congest(t, "p1").incident
    assert again.kind == "congestion" and again.id not in (cong.id, outage.id)


def test_a_condition_on_a_port_that_goes_down_merges_and_comes_back_as_news(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    c.observe([oper("olt1", "p1", 1)])
    t = Traffic(c, clock, "olt1", {"p1": 1000})
    cong = congest(t, "p1").incident
    events = c.observe([oper("olt1", "p1", 2)])
    by_type = {e.type: e.incident for e in events}
    assert sorted(by_type) == ["merged", "opened"]
    assert by_type["opened"].kind == "link_down"
    assert by_type["merged"].id == cong.id
    assert c.detectors.active() == []  # the port's detectors forgot it
    # back up and congested again: a new incident (the detector had kept it raised)
    c.observe([oper("olt1", "p1", 1)])
    again = congest(t, "p1").incident
    assert again.kind == "congestion" and again.id != cong.id
    assert c.stats.detections["congestion", "cleared"] == 1  # forgotten, counted


def test_the_detectors_forget_a_port_once_its_outage_opens(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    c.observe([oper("olt1", "p1", 1)])
    t = quiet(c, clock)
    [outage] = c.observe([oper("olt1", "p1", 2)])
    assert outage.incident.kind == "link_down"
    c.observe([oper("olt1", "p1", 1)])
    assert t.step({"p1": 950}) == []  # the first table after the outage is a new baseline
    [ev] = t.step({"p1": 950})
    assert ev.incident.kind == "congestion"


def test_the_detectors_forget_a_device_once_its_outage_opens(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    t = quiet(c, clock)
    [outage] = c.observe([reach("olt1", False)])
    assert outage.incident.kind == "device_unreachable"
    c.observe([reach("olt1", True)])
    assert t.step({"p1": 950}) == []  # the first table after the outage is a new baseline
    [ev] = t.step({"p1": 950})
    assert ev.incident.kind == "congestion"


def test_a_condition_raised_while_its_device_is_held_down_is_not_news(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST, hold_down=5)
    t = quiet(c, clock)
    assert c.observe([reach("olt1", False)]) == []  # held down
    assert t.step({"p1": 950}, seconds=1) == []  # held with it
    clock.now += 5
    events = c.tick()
    assert [(e.type, e.incident.kind) for e in events] == [("opened", "device_unreachable")]
    assert c.stats.folded == 1
    clock.now += 1
    assert c.tick() == []


def test_a_condition_held_for_an_outage_that_never_opened_opens_after_all(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST, hold_down=5)
    t = quiet(c, clock)
    c.observe([reach("olt1", False)])
    assert t.step({"p1": 950}, seconds=1) == []
    assert c.observe([reach("olt1", True)]) == []  # back within the hold-down
    [ev] = c.tick()
    assert (ev.type, ev.incident.kind) == ("opened", "congestion")


# --- BGP sessions ------------------------------------------------------------------------


def bgp(device: str, peer: str, value: int, ts: float, source: str = "cli",
        **labels: str) -> Observation:
    return Observation(device, source, BGP_PEER_STATE, peer, value, ts, labels)


def test_a_bgp_session_down_past_the_hold_down_opens_once_and_resolves(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, state_hold_down=30)
    assert c.observe([bgp("core1", "10.0.0.2", 6, clock.now),
                      bgp("core1", "10.0.0.9", 1, clock.now)]) == []  # baseline
    clock.now += 60
    assert c.observe([bgp("core1", "10.0.0.2", 1, clock.now, state="idle",
                          remote_as="65001")]) == []
    clock.now += 10
    assert c.tick() == []  # within the hold-down
    clock.now += 25
    [ev] = c.tick()
    inc = ev.incident
    assert (ev.type, inc.kind, inc.root) == (
        "opened", "bgp_session_down", "cond:bgp_session_down:core1:10.0.0.2")
    assert inc.severity == "major" and inc.port == "10.0.0.2"
    assert inc.evidence["state"] == "idle" and inc.evidence["remote_as"] == "65001"
    assert inc.title == "BGP session 10.0.0.2 on core1 down"
    clock.now += 5
    assert c.tick() == []  # once
    assert c.observe([bgp("core1", "10.0.0.2", 3, clock.now)]) == []  # still not up
    [done] = c.observe([bgp("core1", "10.0.0.2", 6, clock.now)])
    assert (done.type, done.incident.id) == ("resolved", inc.id)
    assert "established again" in done.incident.timeline[-1].text
    # the session that was down at the start was never news
    assert all(i.port != "10.0.0.9" for i in store.query())


def test_a_flap_shorter_than_the_hold_down_and_an_admin_shutdown_are_not_news(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, state_hold_down=30)
    c.observe([bgp("core1", "p", 6, clock.now)])
    clock.now += 60
    c.observe([bgp("core1", "p", 1, clock.now)])
    clock.now += 10
    c.observe([bgp("core1", "p", 6, clock.now)])
    clock.now += 10
    c.observe([bgp("core1", "p", 1, clock.now, admin="down")])
    clock.now += 100
    assert c.tick() == [] and c.open == {}


def test_a_bgp_session_on_an_unreachable_router_folds_into_its_outage(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, state_hold_down=0)
    c.observe([bgp("agg1", "10.1.1.1", 6, clock.now)])
    clock.now += 60
    [ev] = c.observe([bgp("agg1", "10.1.1.1", 1, clock.now, source="syslog")]) + c.tick()
    assert ev.incident.kind == "bgp_session_down"
    events = c.observe([reach("agg1", False)])
    assert sorted((e.type, e.incident.kind) for e in events) == [
        ("merged", "bgp_session_down"), ("opened", "device_unreachable")]
    clock.now += 60
    assert c.tick() == []  # explained by the outage: not re-opened
    c.observe([reach("agg1", True)])
    [again] = c.tick()  # the router is back, the session still down: news again
    assert again.incident.kind == "bgp_session_down" and again.incident.id != ev.incident.id


# --- ONTs ---------------------------------------------------------------------------------


def ont_isp() -> Inventory:
    def ont_sub(sid: str, port: str, onu: str) -> Subscriber:
        return dataclasses.replace(sub(sid, "olt1", port), onu_id=onu)

    inv = isp()
    return Inventory(
        inv.devices,
        [ont_sub("g1", "GPON 0/1/0", "5"), ont_sub("g2", "GPON 0/1/0", "6"),
         ont_sub("g3", "GPON 0/1/1", "5"), sub("s4", "olt2", "p1", 3000, "enterprise")],
    )


def ont(instance: str, state: int, ts: float, cause: str = "") -> Observation:
    labels = {"last_down_cause": cause} if cause else {}
    return Observation("olt1", "cli", ONT_STATE, instance, state, ts, labels)


def test_an_offline_ont_is_an_outage_of_its_subscriber_by_cause(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(ont_isp(), store, clock=clock, state_hold_down=0)
    c.observe([ont("0/1/0/5", 1, clock.now), ont("0/1/0/6", 1, clock.now)])
    clock.now += 60
    events = c.observe([ont("0/1/0/5", 2, clock.now, "LOS"),
                        ont("0/1/0/6", 2, clock.now, "dying-gasp")]) + c.tick()
    incs = {e.incident.port: e.incident for e in events}
    los, gasp = incs["0/1/0/5"], incs["0/1/0/6"]
    assert los.kind == "ont_down" and los.impact.subscribers == ("g1",)  # not g3 (0/1/1)
    assert los.severity == "major" and los.evidence["cause"] == "LOS"
    assert los.impact.service == "down"
    assert gasp.severity == "minor" and gasp.impact.subscribers == ("g2",)
    assert gasp.title == "ONT 0/1/0/6 on olt1 offline (dying-gasp)"
    # powered off at home: not a failure that counts towards churn history
    assert store.hit_counts(["g1", "g2"], since=0) == {"g1": 1}
    clock.now += 60
    [done] = c.observe([ont("0/1/0/5", 1, clock.now)])
    assert (done.type, done.incident.id) == ("resolved", los.id)


def test_onts_behind_a_down_pon_port_are_symptoms_of_the_link(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(ont_isp(), store, clock=clock, state_hold_down=5)
    c.observe([oper("olt1", "GPON 0/1/0", 1), ont("0/1/0/5", 1, clock.now)])
    clock.now += 60
    events = c.observe([oper("olt1", "GPON 0/1/0", 2), ont("0/1/0/5", 2, clock.now, "LOS")])
    clock.now += 10
    events += c.tick()
    assert [(e.type, e.incident.kind) for e in events] == [("opened", "link_down")]


# --- repeated failures --------------------------------------------------------------------


def test_repeated_failures_open_once_per_subscriber_and_end_with_the_window(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock,
                   churn=ChurnConfig(repeat_threshold=2, window_days=1))
    c.observe([oper("olt1", "p2", 1)])

    def outage() -> list[IncidentEvent]:
        events = c.observe([oper("olt1", "p2", 2)])
        clock.now += 600
        events += c.observe([oper("olt1", "p2", 1)])
        clock.now += 6 * 3600
        return events

    first = outage()
    assert [e.incident.kind for e in first] == ["link_down", "link_down"]
    second = outage()
    rep = [e for e in second if e.incident.kind == "repeated_failures"]
    assert [e.type for e in rep] == ["opened"]
    inc = rep[0].incident
    assert inc.subscriber == "s3" and inc.root == "cond:repeated_failures:s3"
    assert inc.evidence["incidents"] == 2 and inc.evidence["window_days"] == 1
    assert inc.evidence["incident_ids"] == ",".join(
        e.incident.id for e in (first[0], second[0]))
    assert inc.impact.subscribers == ("s3",)
    assert "hit by 2 incidents" in inc.title
    third = outage()
    assert [e.incident.kind for e in third] == ["link_down", "link_down"]  # still open: once
    assert store.hit_counts(["s3"], since=0) == {"s3": 3}  # its own incident is not a hit
    clock.now += 86_400  # the window slides past them all
    [done] = [e for e in c.tick() if e.incident.kind == "repeated_failures"]
    assert (done.type, done.incident.id) == ("resolved", inc.id)


def test_a_large_outage_does_not_open_one_incident_per_repeat_subscriber(
    store: IncidentStore,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock,
                   churn=ChurnConfig(repeat_threshold=1, repeat_incidents=2))
    events = c.observe([reach("agg1", False)])
    assert [e.incident.kind for e in events] == ["device_unreachable"]
    assert len(events[0].incident.impact.repeat_subscribers) == 4


# --- restarts and old data ----------------------------------------------------------------


def test_an_open_condition_survives_a_restart_and_resolves_when_measured_back(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = Correlator(isp(), IncidentStore(path), clock=clock, detection=FAST)
    t = Traffic(c, clock, "olt1", {"p1": 1000, "p2": 1000})
    t.step({"p1": 10, "p2": 10})
    t.step({"p1": 10, "p2": 10})
    assert len(t.step({"p1": 950, "p2": 950})) == 2
    [p1, p2] = c.open_incidents()

    again = Correlator(isp(), IncidentStore(path), clock=clock, detection=FAST,
                       condition_recheck=600)
    assert {i.id for i in again.open_incidents()} == {p1.id, p2.id}
    t2 = Traffic(again, clock, "olt1", {"p1": 1000, "p2": 1000})
    t2.octets = dict(t.octets)
    assert t2.step({"p1": 950, "p2": 950}) == []  # the first poll: no rates yet
    [gone] = t2.step({"p1": 950, "p2": 10})  # p1 still congested: the same incident
    assert (gone.type, gone.incident.id) == ("resolved", p2.id)
    assert gone.incident.timeline[-1].text.startswith("cleared: p2 back below")
    clock.now += 600
    assert again.tick() == []  # measured: no recheck resolution for p1
    [done] = t2.step({"p1": 10, "p2": 10})
    assert (done.type, done.incident.id) == ("resolved", p1.id)


def test_an_open_bgp_incident_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = Correlator(isp(), IncidentStore(path), clock=clock, state_hold_down=0)
    c.observe([bgp("core1", "p", 6, clock.now)])
    clock.now += 60
    [ev] = c.observe([bgp("core1", "p", 1, clock.now)]) + c.tick()
    again = Correlator(isp(), IncidentStore(path), clock=clock, state_hold_down=0)
    clock.now += 60
    assert again.tick() == []  # restored as open, not opened twice
    [done] = again.observe([bgp("core1", "p", 6, clock.now)])  # first report after restart
    assert (done.type, done.incident.id) == ("resolved", ev.incident.id)


def test_incidents_stored_before_conditions_existed_still_load() -> None:
    old = {"id": "INC-000001", "root": "link:olt1:p1", "kind": "link_down", "device": "olt1",
           "port": "p1", "severity": "minor", "state": "open", "opened_at": 1.0,
           "updated_at": 1.0, "impact": {"subscribers": ["s1"]}}
    inc = Incident.from_dict(json.loads(json.dumps(old)))
    assert inc.evidence == {} and inc.summary == "" and inc.subscriber is None
    assert inc.impact.service == "down"
    d = inc.to_dict()
    assert d["evidence"] == {} and d["impact"]["service"] == "down"
    assert Incident.from_dict(d) == inc


# --- reload -------------------------------------------------------------------------------


def test_a_new_inventory_reaches_every_part_of_the_correlator(store: IncidentStore) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock)
    c.observe([oper("olt1", "p1", 1)])
    old = isp()
    new = Inventory(old.devices, [*(old.subscribers[s].subscriber() for s in old.subscribers),
                                  sub("s9", "olt1", "p1", 99.0, "business",
                                      contract_end=dt.date(2026, 4, 15))])
    c.inventory = new
    assert c.judge.inventory is new and c.maintenance.inventory is new
    assert c.detectors.inventory is new and c.watch.inventory is new
    [ev] = c.observe([oper("olt1", "p1", 2)])
    assert ev.incident.impact.subscribers == ("s1", "s2", "s9")
    assert ev.incident.impact.subscribers_by_tier == {"residential": 2, "business": 1}
    # the judgement knows s9 too (its contract ends within the renewal window)
    assert ev.incident.impact.contracts_near_renewal == ("s1", "s9")


def test_message_templates_can_quote_a_conditions_numbers(store: IncidentStore) -> None:
    from actions.dispatcher import build_payload
    from actions.templates import INCIDENT_VARIABLES, check, incident_variables, render

    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST)
    ev = congest(Traffic(c, clock, "olt1", {"p1": 1000}), "p1")
    template = check("{incident.title} ({impact.service}): {incident.summary} "
                     "[{incident.evidence}]", INCIDENT_VARIABLES)
    text = render(template, incident_variables(build_payload(ev, "r", "k")))
    assert text.startswith(f"congestion on olt1 p1 (degraded): {ev.incident.summary} [")
    assert "utilization_pct=95" in text and "speed_bps=1000000000" in text


def test_plan_saturation_is_one_subscribers_incident_and_not_a_failure(
    store: IncidentStore,
) -> None:
    clock = Clock()
    old = isp()
    inv = Inventory(old.devices, [*(old.subscribers[s].subscriber() for s in old.subscribers),
                                  dataclasses.replace(sub("s7", "olt2", "p7", 60.0),
                                                      plan_mbps=100.0)])
    det = DetectionConfig(plan_saturation=PlanSaturationConfig(raise_after_s=0,
                                                               clear_after_s=0))
    c = Correlator(inv, store, clock=clock, detection=det)
    out = 0

    def poll(mbps: float) -> list[IncidentEvent]:
        nonlocal out
        clock.now += 60
        out += int(mbps * MBIT * 60)
        counters = InterfaceCounters([1], ["p7"], [1], [0], [out], [0], [0], [1000])
        return c.observe_counters("olt2", counters, clock.now)

    poll(10)
    poll(10)
    events = [e for e in poll(95) if e.incident.kind == "plan_saturation"]
    [ev] = events
    inc = ev.incident
    assert (inc.root, inc.subscriber) == ("cond:plan_saturation:s7", "s7")
    assert inc.impact.subscribers == ("s7",) and inc.impact.service == "degraded"
    assert "s7" in inc.title and inc.evidence
    assert store.hit_counts(["s7"], since=0) == {}  # using the plan is not a failure
    [done] = [e for e in poll(5) if e.incident.kind == "plan_saturation"]
    assert (done.type, done.incident.id) == ("resolved", inc.id)
