"""Condition incidents across an inventory reload that drops a device and across a
restart: the real Correlator with a fake clock and a real SQLite store."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from correlator.detect_config import CongestionConfig, LatencyConfig, UsageChangeConfig
from correlator.detection import DetectionConfig
from correlator.engine import Correlator
from correlator.incidents import Incident, IncidentEvent
from correlator.inventory import Inventory
from correlator.store import IncidentStore
from probes.types import RTT_MS, Observation
from tests.unit.correlator.support import Clock, isp, reach
from tests.unit.correlator.test_conditions import FAST, Traffic, bgp, congest

LATENCY = DetectionConfig(latency=LatencyConfig(warmup_samples=5, raise_samples=2,
                                                clear_samples=2))


def without(inv: Inventory, *gone: str) -> Inventory:
    """The inventory less some devices (and the parent links to them, and their
    subscribers), as a reload after a NetBox import would give."""
    devices = {
        k: dataclasses.replace(d, parents=tuple(p for p in d.parents if p.device not in gone))
        for k, d in inv.devices.items() if k not in gone}
    subs = [inv.subscribers[s].subscriber() for s in inv.subscribers
            if inv.subscribers[s].device not in gone]
    return Inventory(devices, subs)


# --- a reload drops a device ---------------------------------------------------------------


def test_a_reload_dropping_devices_with_pending_state_prunes_it_and_resolves_theirs(
    store: IncidentStore, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, detection=FAST, hold_down=30, state_hold_down=30)
    cong = congest(Traffic(c, clock, "olt2", {"p1": 1000}), "p1").incident  # open on olt2
    c.observe([bgp("core1", "10.0.0.2", 6, clock.now)])
    clock.now += 60
    c.observe([bgp("core1", "10.0.0.2", 1, clock.now)])  # pending its hold-down
    assert c.observe([reach("olt2", False)]) == []  # pending the outage hold-down
    assert c.watch.pending and "device:olt2" in c.pending and "olt2" in c.down_devices

    c.inventory = without(isp(), "core1", "olt2")  # SIGHUP after an import
    assert c.watch.pending == {} and c.pending == {}
    assert "olt2" not in c.down_devices and c.ports.keys() == set()
    assert set(c.detectors.devices()) == set()
    assert "devices removed from the inventory: core1, olt2" in caplog.text

    clock.now += 60
    [ev] = c.tick()  # no KeyError: the resolution goes out with the next tick
    assert (ev.type, ev.incident.id) == ("resolved", cong.id)
    assert ev.incident.timeline[-1].text == "olt2 removed from the inventory: no longer watched"
    assert ev.incident.closed_by == "inventory"  # not seen recovering: no all-clear
    stored = store.get(cong.id)
    assert stored is not None and stored.state == "resolved" and stored.closed_by == "inventory"
    clock.now += 60
    assert c.tick() == [] and c.open == {}  # nothing opens for the devices gone


def test_a_finding_for_a_device_the_inventory_lacks_is_dropped(
    store: IncidentStore, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    c = Correlator(isp(), store, clock=clock, state_hold_down=0)
    c.watch.observe(bgp("ghost", "p", 6, clock.now), clock.now)
    clock.now += 60
    c.watch.observe(bgp("ghost", "p", 1, clock.now, source="syslog"), clock.now)
    assert c.tick() == [] and c.open == {}
    assert "condition dropped kind=bgp_session_down device=ghost" in caplog.text


def test_a_restart_with_an_inventory_without_a_device_resolves_its_incidents(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = Correlator(isp(), IncidentStore(path), clock=clock, detection=FAST)
    cong = congest(Traffic(c, clock, "olt2", {"p1": 1000}), "p1").incident
    [outage] = c.observe([reach("olt1", False)])
    assert outage.incident.root == "device:olt1"

    again = Correlator(without(isp(), "olt1", "olt2"), IncidentStore(path), clock=clock,
                       detection=FAST)
    assert again.open == {} and again.down_devices == set()
    clock.now += 1
    events = again.tick()
    assert sorted((e.type, e.incident.id) for e in events) == sorted(
        [("resolved", cong.id), ("resolved", outage.incident.id)])
    assert {e.incident.timeline[-1].text for e in events} == {
        "olt1 removed from the inventory: no longer watched",
        "olt2 removed from the inventory: no longer watched"}


# --- a restart does not hide a degradation going on ---------------------------------------


def rtt(c: Correlator, clock: Clock, ms: float) -> list[IncidentEvent]:
    clock.now += 30
    return c.observe([Observation("olt1", "ping", RTT_MS, "", ms, clock.now)])


def slow_then_restart(path: Path, clock: Clock) -> tuple[Incident, Correlator]:
    """olt1's RTT goes from 2 ms to 150 ms (an incident), then netreflex restarts."""
    c = Correlator(isp(), IncidentStore(path), clock=clock, detection=LATENCY)
    for i in range(10):
        rtt(c, clock, 2.0 + 0.1 * (i % 3))
    rtt(c, clock, 150.0)
    [ev] = rtt(c, clock, 160.0)
    return ev.incident, Correlator(isp(), IncidentStore(path), clock=clock,
                                   detection=LATENCY, condition_recheck=600)


def test_latency_still_bad_after_a_restart_keeps_its_incident_until_back_to_normal(
    tmp_path: Path,
) -> None:
    clock = Clock()
    inc, again = slow_then_restart(tmp_path / "i.db", clock)
    for _ in range(40):  # 20 min still bad: more than warm-up, more than the recheck
        assert rtt(again, clock, 155.0) == []
        assert again.tick() == []
    assert list(again.open) == [inc.root]
    assert rtt(again, clock, 2.0) == []
    [done] = rtt(again, clock, 2.1)  # the old normal again: over
    assert (done.type, done.incident.id) == ("resolved", inc.id)
    assert done.incident.timeline[-1].text.startswith("cleared: olt1 RTT back to 2.1 ms")


def test_a_usage_change_still_going_on_after_a_restart_is_not_resolved(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    det = DetectionConfig(congestion=CongestionConfig(enabled=False),
                          usage_change=UsageChangeConfig(warmup_samples=12))
    c = Correlator(isp(), IncidentStore(path), clock=clock, detection=det)
    t = Traffic(c, clock, "olt1", {"p1": 10_000})
    base = [100 + 5 * (i % 3) for i in range(30)]
    for mbps in base:
        assert t.step({"p1": mbps}) == []
    events: list[IncidentEvent] = []
    for _ in range(10):
        events += t.step({"p1": 800})
    [ev] = events
    inc = ev.incident
    assert inc.kind == "usage_change" and float(inc.evidence["dev_bps"]) > 0

    again = Correlator(isp(), IncidentStore(path), clock=clock, detection=det,
                       condition_recheck=600)
    t2 = Traffic(again, clock, "olt1", {"p1": 10_000})
    t2.octets = dict(t.octets)
    for _ in range(30):  # 30 min at the new level: more than warm-up and the recheck
        assert t2.step({"p1": 800}) == []
        assert again.tick() == []
    assert list(again.open) == [inc.root]
    events = []
    for _ in range(5):
        events += t2.step({"p1": 106})  # the level from before (in the evidence)
    [done] = events
    assert (done.type, done.incident.id) == ("resolved", inc.id)
    assert "traffic back near" in done.incident.timeline[-1].text


# congestion raised after 30 min: longer than the recheck after a restart (10 min)
SLOW = DetectionConfig(congestion=CongestionConfig(raise_after_s=1800, clear_after_s=300))


def congested_then_restart(path: Path, clock: Clock, det: DetectionConfig = SLOW,
                           ) -> tuple[Incident, Correlator, Traffic]:
    """olt1's p1 congested inbound for 40 min (an incident), then netreflex restarts."""
    c = Correlator(isp(), IncidentStore(path), clock=clock, detection=det)
    t = Traffic(c, clock, "olt1", {"p1": 1000})
    events: list[IncidentEvent] = []
    for mbps in [10, 10] + [960] * 40:
        events += t.step({"p1": mbps})
    [ev] = events
    assert ev.incident.kind == "congestion"
    again = Correlator(isp(), IncidentStore(path), clock=clock, detection=det,
                       condition_recheck=600)
    t2 = Traffic(again, clock, "olt1", {"p1": 1000})
    t2.octets = dict(t.octets)
    return ev.incident, again, t2


def test_congestion_still_going_on_after_a_restart_is_not_resolved_and_opened_again(
    tmp_path: Path,
) -> None:
    clock = Clock()
    inc, again, t = congested_then_restart(tmp_path / "i.db", clock)
    for _ in range(45):  # 45 min still congested: past the recheck and raise_after_s
        assert t.step({"p1": 960}) == []
        assert again.tick() == []
    assert list(again.open) == [inc.root]
    for _ in range(4):  # back below the low mark, for less than clear_after_s (300 s)
        assert t.step({"p1": 100}) == []
    [done] = t.step({"p1": 100})
    assert (done.type, done.incident.id) == ("resolved", inc.id)
    assert done.incident.timeline[-1].text.startswith("cleared: p1 back below")


@pytest.mark.parametrize("kind", ["latency", "congestion"])
def test_a_resumed_incident_with_no_measurements_resolves_after_the_recheck(
    tmp_path: Path, kind: str,
) -> None:
    clock = Clock()
    if kind == "latency":
        inc, again = slow_then_restart(tmp_path / "i.db", clock)
    else:
        inc, again, _ = congested_then_restart(tmp_path / "i.db", clock)
    assert inc.kind == kind
    clock.now += 599
    assert again.tick() == []
    clock.now += 1
    [gone] = again.tick()
    assert (gone.type, gone.incident.id) == ("resolved", inc.id)
    assert gone.incident.timeline[-1].text == \
        "no measurements of it within 600s of a restart: resolved"


def test_congestion_not_resumed_when_its_detector_is_now_off(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    inc, _, _ = congested_then_restart(path, clock)
    off = DetectionConfig(congestion=CongestionConfig(enabled=False))
    again = Correlator(isp(), IncidentStore(path), clock=clock, detection=off,
                       condition_recheck=600)
    t = Traffic(again, clock, "olt1", {"p1": 1000})
    events: list[IncidentEvent] = []
    for _ in range(10):  # 600 s: not raised again (it cannot be)
        events += t.step({"p1": 960}) + again.tick()
    [gone] = events
    assert (gone.type, gone.incident.id) == ("resolved", inc.id)
    assert "not raised again" in gone.incident.timeline[-1].text


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(tmp_path / "incidents.db")


# --- BGP sessions and ONTs across a restart -----------------------------------------------


def restart(path: Path, clock: Clock, inv: Inventory | None = None) -> Correlator:
    return Correlator(inv or isp(), IncidentStore(path), clock=clock, state_hold_down=30)


def session_drops(path: Path, clock: Clock, peer: str, then: float) -> list[IncidentEvent]:
    """core1's session to ``peer`` established, down a minute later; ``then`` seconds
    after that, a tick (which saves what the watch knows): its events."""
    c = restart(path, clock)
    c.observe([bgp("core1", peer, 6, clock.now)])
    clock.now += 60
    c.observe([bgp("core1", peer, 1, clock.now)])
    clock.now += then
    return c.tick()


def test_a_session_pending_its_hold_down_at_a_restart_is_raised_after_it(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    down_at = clock.now + 60
    assert session_drops(path, clock, "10.0.0.2", 10) == []  # within the hold-down

    again = restart(path, clock)
    clock.now += 5
    # the first report after the restart: not a baseline, the same episode
    assert again.observe([bgp("core1", "10.0.0.2", 1, clock.now)]) == []
    assert again.tick() == []  # 15 s since it went down
    clock.now += 15
    [ev] = again.tick()  # 30 s since it went down, not since the restart
    assert (ev.type, ev.incident.kind) == ("opened", "bgp_session_down")
    assert ev.incident.opened_at == down_at + 30


def test_a_session_that_went_down_while_netreflex_was_stopped_is_news(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = restart(path, clock)
    c.observe([bgp("core1", "10.0.0.2", 6, clock.now), bgp("core1", "10.0.0.9", 1, clock.now)])
    c.tick()

    clock.now += 600
    again = restart(path, clock)
    assert again.observe([bgp("core1", "10.0.0.2", 1, clock.now),
                          bgp("core1", "10.0.0.9", 1, clock.now)]) == []
    clock.now += 30
    [ev] = again.tick()
    assert ev.incident.root == "cond:bgp_session_down:core1:10.0.0.2"
    clock.now += 600
    assert again.tick() == []  # 10.0.0.9 was down before the restart too: still no news


def test_onts_offline_at_the_first_start_are_no_news_after_a_restart_either(
    tmp_path: Path,
) -> None:
    from tests.unit.correlator.test_conditions import ont, ont_isp

    clock = Clock()
    path = tmp_path / "i.db"
    c = restart(path, clock, ont_isp())
    c.observe([ont("0/1/0/5", 2, clock.now, "dying-gasp"), ont("0/1/0/6", 1, clock.now)])
    clock.now += 60
    assert c.tick() == []
    c.observe([ont("0/1/0/5", 2, clock.now, "LOS")])  # a new cause: the same ONT still off
    clock.now += 60
    assert c.tick() == []

    again = restart(path, clock, ont_isp())
    again.observe([ont("0/1/0/5", 2, clock.now, "dying-gasp"), ont("0/1/0/6", 1, clock.now)])
    clock.now += 60
    assert again.tick() == [] and again.open == {}  # no storm of old news
    again.observe([ont("0/1/0/5", 1, clock.now)])  # back, then off again: news
    again.observe([ont("0/1/0/5", 2, clock.now + 1, "LOS")])
    clock.now += 60
    [ev] = again.tick()
    assert (ev.incident.kind, ev.incident.port) == ("ont_down", "0/1/0/5")


def test_an_open_bgp_incident_continues_when_the_first_report_says_down(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    [ev] = session_drops(path, clock, "p", 30)

    again = restart(path, clock)
    clock.now += 60
    assert again.observe([bgp("core1", "p", 1, clock.now)]) == []
    clock.now += 60
    assert again.tick() == [] and list(again.open) == [ev.incident.root]
    [done] = again.observe([bgp("core1", "p", 6, clock.now)])
    assert (done.type, done.incident.id) == ("resolved", ev.incident.id)


def test_a_device_first_watched_after_a_restart_starts_with_a_baseline(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = restart(path, clock)
    c.observe([bgp("core1", "p", 6, clock.now)])
    c.tick()
    again = restart(path, clock)
    again.observe([bgp("agg1", "q", 1, clock.now)])  # never reported before: a baseline
    clock.now += 60
    assert again.tick() == []


def test_a_device_removed_from_the_inventory_leaves_the_watch_store(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "i.db"
    c = restart(path, clock)
    c.observe([bgp("core1", "p", 1, clock.now), bgp("agg1", "q", 6, clock.now)])
    c.tick()
    c.inventory = without(isp(), "core1")
    c.tick()
    from correlator.watch_store import WatchStore

    watched, down = WatchStore(str(tmp_path / "watch.db")).load()
    assert watched == {("agg1", "bgp_peer_state")} and down == {}
