"""Counter-based detectors: rates with wraps and resets, congestion, errors, plan
saturation and usage change-points. Pure computation: fake time, no servers."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.detection import Condition, DetectionConfig, Detectors
from correlator.inventory import Device, Inventory, Subscriber
from probes.types import (
    DEVICE_RESTARTED,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_IN_OCTETS,
    IF_OUT_OCTETS,
    InterfaceCounters,
    Observation,
)

PORT = "ge-0/0/1"
STEP = 60.0
GIG = 1000  # Mb/s


def sub(sid: str, device: str, port: str, plan: float | None = None) -> Subscriber:
    return Subscriber(sid, None, None, device, port, None, None, None, 30.0, "residential",
                      None, 0.0, None, None, False, False, plan)


def inventory(*subs: Subscriber) -> Inventory:
    return Inventory({"sw1": Device("sw1", "access", None, (), None)}, list(subs))


def config(**sections: dict[str, Any]) -> DetectionConfig:
    return DetectionConfig.model_validate(sections)


def quiet(**sections: dict[str, Any]) -> DetectionConfig:
    """Only the detectors named are on."""
    off = {k: {"enabled": False} for k in ("congestion", "errors", "usage_change",
                                           "plan_saturation")}
    return DetectionConfig.model_validate({**off, **sections})


def counters(in_octets: int | None, out_octets: int | None = 0, errors: int | None = 0,
             speed: int | None = GIG, name: str = PORT) -> InterfaceCounters:
    return InterfaceCounters([1], [name], [1], [in_octets], [out_octets], [errors], [0],
                             [speed])


def rate_octets(bps: float, seconds: float = STEP) -> int:
    return round(bps * seconds / 8)


class Feed:
    """Feeds one port at a rate (b/s) per step; collects what comes back."""

    def __init__(self, det: Detectors, device: str = "sw1", start: float = 1000.0) -> None:
        self.det, self.device, self.ts = det, device, start
        self.i = self.o = self.e = 0
        self.got: list[Condition] = []

    def first(self) -> list[Condition]:
        return self.det.counters(self.device, counters(self.i, self.o, self.e), self.ts)

    def step(self, in_bps: float = 0.0, out_bps: float = 0.0, eps: float = 0.0,
             speed: int | None = GIG) -> list[Condition]:
        self.ts += STEP
        self.i += rate_octets(in_bps)
        self.o += rate_octets(out_bps)
        self.e += round(eps * STEP)
        got = self.det.counters(self.device, counters(self.i, self.o, self.e, speed), self.ts)
        self.got += got
        return got


def one(conds: list[Condition]) -> Condition:
    assert len(conds) == 1, conds
    return conds[0]


# --- rates: wraps and resets --------------------------------------------------------------

def instant() -> DetectionConfig:
    return quiet(congestion={"high_pct": 40, "low_pct": 10, "raise_after_s": 0,
                             "clear_after_s": 0})


@pytest.mark.parametrize("last", [2**32 - 1_000_000_000, 2**64 - 1_000_000_000],
                         ids=["32-bit", "64-bit"])
def test_a_wrap_gives_the_true_rate(last: int) -> None:
    det = Detectors(instant(), inventory())
    assert det.counters("sw1", counters(last), 0.0) == []
    new = rate_octets(500e6) - 1_000_000_000  # 500 Mb/s over the step, across the wrap
    cond = one(det.counters("sw1", counters(new), STEP))
    assert cond.kind == "congestion" and cond.active
    assert cond.evidence["rate_bps"] == 500_000_000
    assert cond.evidence["utilization_pct"] == 50.0


def test_a_reset_is_skipped_without_a_spike() -> None:
    det = Detectors(instant(), inventory())
    det.counters("sw1", counters(5 * 10**12), 0.0)
    # went down: a 64-bit wrap would mean ~2^64 bytes in a minute; it is a reset
    assert det.counters("sw1", counters(1_000), STEP) == []
    # the next sample compares with the value after the reset: 100 Mb/s, nothing to say
    assert det.counters("sw1", counters(1_000 + rate_octets(100e6)), 2 * STEP) == []
    cond = one(det.counters("sw1", counters(1_000 + rate_octets(100e6) + rate_octets(600e6)),
                            3 * STEP))
    assert cond.evidence["rate_bps"] == 600_000_000


def test_an_implausible_32bit_decrease_is_a_reset() -> None:
    det = Detectors(instant(), inventory())
    det.counters("sw1", counters(3_000_000_000, speed=100), 0.0)
    # as a 32-bit wrap this would be 2.29e9 bytes in 60 s = 305 Mb/s on a 100 Mb/s port
    assert det.counters("sw1", counters(1_000_000_000, speed=100), STEP) == []
    assert det.counters("sw1", counters(1_000_000_000 + rate_octets(10e6), speed=100),
                        2 * STEP) == []


def test_device_restart_forgets_the_last_values() -> None:
    det = Detectors(instant(), inventory())
    det.counters("sw1", counters(10**9), 0.0)
    det.observe(Observation("sw1", "snmp", DEVICE_RESTARTED, "", 30, STEP))
    # the restarted device counted up from 0 past the old value: not a rate to judge
    assert det.counters("sw1", counters(10**9 + rate_octets(900e6)), STEP) == []
    assert det.counters("sw1", counters(10**9 + rate_octets(900e6) + rate_octets(100e6)),
                        2 * STEP) == []


def test_missing_columns_and_unknown_speed_are_not_judged() -> None:
    det = Detectors(instant(), inventory())
    det.counters("sw1", counters(None, None, None), 0.0)
    assert det.counters("sw1", counters(None, None, None), STEP) == []
    assert det.counters("sw1", counters(0, 0, 0, speed=None), 2 * STEP) == []
    assert det.counters("sw1", counters(10**12, 10**12, 0, speed=None), 3 * STEP) == []
    assert det.counters("sw1", counters(2 * 10**12, 2 * 10**12, 0, speed=0), 4 * STEP) == []


def test_interface_table_changes_keep_ports_by_name() -> None:
    det = Detectors(instant(), inventory())
    two = InterfaceCounters([1, 2], ["a", "b"], [1, 1], [0, 0], [0, 0], [0, 0], [0, 0],
                            [GIG, GIG])
    det.counters("sw1", two, 0.0)
    # "a" disappeared, "c" is new, "b" moved: b's rate is still computed from its own values
    moved = InterfaceCounters([2, 3], ["b", "c"], [1, 1], [rate_octets(700e6), 5 * 10**9],
                              [0, 0], [0, 0], [0, 0], [GIG, GIG])
    cond = one(det.counters("sw1", moved, STEP))
    assert cond.instance == "b" and cond.evidence["rate_bps"] == 700_000_000


# --- congestion ---------------------------------------------------------------------------

def test_congestion_is_sustained_with_hysteresis() -> None:
    det = Detectors(quiet(congestion={}), inventory())
    feed = Feed(det)
    feed.first()
    for _ in range(4):  # 4 minutes at 95%: not yet 5
        assert feed.step(950e6) == []
    cond = one(feed.step(950e6))
    assert cond.active and cond.severity == "major"
    assert cond.evidence == {
        "direction": "in", "utilization_pct": 95.0, "rate_bps": 950_000_000,
        "speed_bps": 1_000_000_000, "samples": 5, "window_s": 300.0, "threshold_pct": 90.0}
    assert cond.summary == f"{PORT} in at 95% of 1 Gb/s for 5 min"
    assert det.active() == [cond]
    for bps in (960e6, 850e6, 790e6, 790e6, 850e6, 790e6, 790e6, 790e6, 790e6):
        assert feed.step(bps) == []  # between the thresholds, or not long enough below
    cleared = one(feed.step(500e6))
    assert not cleared.active and cleared.evidence["threshold_pct"] == 80.0
    assert det.active() == []
    assert [c.active for c in feed.got] == [True, False]


def test_no_flapping_at_the_threshold() -> None:
    det = Detectors(quiet(congestion={}), inventory())
    feed = Feed(det)
    feed.first()
    for k in range(40):
        feed.step(901e6 if k % 2 else 899e6)
    assert feed.got == []


def test_congestion_in_and_out_are_one_condition_per_port() -> None:
    det = Detectors(quiet(congestion={"raise_after_s": 60, "clear_after_s": 60}), inventory())
    feed = Feed(det)
    feed.first()
    raised = one(feed.step(950e6, 100e6))
    assert raised.evidence["direction"] == "in"
    assert feed.step(950e6, 990e6) == []  # out congested too: same port, already raised
    assert feed.step(100e6, 990e6) == []  # in clears, out still congested
    cleared = one(feed.step(100e6, 100e6))
    assert not cleared.active and cleared.evidence["direction"] == "out"


def test_forget_clears_what_the_device_raised() -> None:
    det = Detectors(instant(), inventory())
    feed = Feed(det)
    feed.first()
    raised = one(feed.step(900e6))
    gone = one(det.forget("sw1"))
    assert (gone.kind, gone.instance, gone.active) == (raised.kind, PORT, False)
    assert gone.evidence == {"reason": "forgotten"}
    assert det.active() == [] and det.forget("sw1") == []


# --- errors -------------------------------------------------------------------------------

def test_errors_by_rate_and_per_gb() -> None:
    det = Detectors(quiet(errors={"raise_after_s": 120, "clear_after_s": 120}), inventory())
    feed = Feed(det)
    feed.first()
    assert feed.step(800e6, eps=0.5) == []  # 0.5/s on 100 MB/s = 5/GB: fine
    assert feed.step(800e6, eps=0.5) == []
    feed.step(8e6, eps=0.5)  # 0.5/s on 1 MB/s = 500/GB: too many (first of two)
    cond = one(feed.step(8e6, eps=0.5))
    assert cond.kind == "errors" and cond.severity == "minor"
    assert cond.evidence["errors_per_s"] == 0.5 and cond.evidence["errors_per_gb"] == 500.0
    assert cond.evidence["per_gb"] == 10.0 and cond.evidence["samples"] == 2
    assert feed.step(8e6, eps=0.01) == []
    cleared = one(feed.step(8e6, eps=0.0))
    assert not cleared.active


def test_fcs_errors_as_observations() -> None:
    det = Detectors(quiet(errors={"raise_after_s": 0}), inventory())

    def fcs(value: int, ts: float) -> list[Condition]:
        return det.observe(Observation("r1", "gnmi", IF_IN_FCS_ERRORS, "et-0/0/0", value, ts))

    assert fcs(100, 0.0) == []
    cond = one(fcs(100 + 300, 60.0))  # 5/s
    assert cond.evidence["metric"] == IF_IN_FCS_ERRORS and cond.evidence["errors_per_s"] == 5.0
    assert "FCS errors" in cond.summary
    assert fcs(50, 120.0) == []  # cleared counters: skipped, not a wrap


def test_octets_as_observations_use_the_known_speed() -> None:
    det = Detectors(instant(), inventory())
    det.counters("r1", counters(0, name="et-0/0/0", speed=10_000), 0.0)

    def octets(name: str, value: int, ts: float) -> list[Condition]:
        return det.observe(Observation("r1", "gnmi", name, "et-0/0/0", value, ts))

    assert octets(IF_IN_OCTETS, 0, 100.0) == []
    assert octets(IF_OUT_OCTETS, 2**64 - 10, 100.0) == []
    cond = one(octets(IF_OUT_OCTETS, rate_octets(5e9) - 10, 160.0))  # wraps at 2^64
    assert cond.evidence["direction"] == "out" and cond.evidence["utilization_pct"] == 50.0


# --- plan saturation ----------------------------------------------------------------------

def test_plan_saturation_only_on_a_port_with_one_subscriber() -> None:
    inv = inventory(sub("s1", "sw1", "p1", plan=100), sub("s2", "sw1", "p2", plan=100),
                    sub("s3", "sw1", "p2", plan=100), sub("s4", "sw1", "p3"))
    det = Detectors(quiet(plan_saturation={}), inv)
    feeds = {p: Feed(det) for p in ("p1", "p2", "p3")}
    got: dict[str, list[Condition]] = {p: [] for p in feeds}
    ts = 0.0
    octets = dict.fromkeys(feeds, 0)
    for k in range(40):
        for p in feeds:
            if k:
                octets[p] += rate_octets(90e6)
            got[p] += det.counters("sw1", counters(0, octets[p], name=p), ts)
        ts += STEP
    cond = one(got["p1"])
    assert cond.kind == "plan_saturation" and cond.subscriber == "s1"
    assert cond.evidence["utilization_pct"] == 90.0 and cond.evidence["plan_bps"] == 100e6
    assert cond.evidence["window_s"] == 1800.0 and cond.evidence["samples"] == 30
    assert cond.summary == "s1 uses 90% of a 100 Mb/s plan on p1 for 30 min"
    assert got["p2"] == [] and got["p3"] == []
    # the plan changes on reload: the port is no longer bound to one subscriber with a plan
    det.inventory = inventory(sub("s1", "sw1", "p1"))
    octets["p1"] += rate_octets(90e6)
    cleared = one(det.counters("sw1", counters(0, octets["p1"], name="p1"), ts))
    assert not cleared.active and cleared.subscriber == "s1"
    assert cleared.evidence == {"reason": "inventory changed"}


def test_plan_saturation_clears_below_the_low_threshold() -> None:
    det = Detectors(quiet(plan_saturation={"raise_after_s": 60, "clear_after_s": 120}),
                    inventory(sub("s1", "sw1", PORT, plan=50)))
    feed = Feed(det)
    feed.first()
    assert one(feed.step(out_bps=48e6)).active
    assert feed.step(out_bps=30e6) == []
    cleared = one(feed.step(out_bps=30e6))
    assert not cleared.active and cleared.subscriber == "s1"


# --- taken up after a restart (Detectors.resume) -------------------------------------------

def raised(kind: str, instance: str = PORT, subscriber: str | None = None,
           **evidence: Any) -> Condition:
    """An open incident's condition as a restart finds it in the store."""
    return Condition(kind, "sw1", instance, True, "minor", 0.0, "",  # type: ignore[arg-type]
                     evidence, subscriber)


def test_resumed_errors_stay_raised_until_measured_back() -> None:
    det = Detectors(quiet(errors={"raise_after_s": 600, "clear_after_s": 120}), inventory())
    assert det.resume(raised("errors", metric=IF_IN_ERRORS))
    assert [c.kind for c in det.active()] == ["errors"]
    feed = Feed(det)
    feed.first()
    for _ in range(20):  # still bad, far past raise_after_s: nothing new to say
        assert feed.step(8e6, eps=0.5) == []
    assert feed.step(8e6, eps=0.0) == []  # low for 60 s of the 120 s it takes
    cleared = one(feed.step(8e6, eps=0.0))
    assert not cleared.active and cleared.kind == "errors" and det.active() == []


def test_resumed_fcs_errors_are_the_fcs_counter() -> None:
    det = Detectors(quiet(errors={"raise_after_s": 0, "clear_after_s": 0}), inventory())
    assert det.resume(raised("errors", "et-0/0/0", metric=IF_IN_FCS_ERRORS))

    def fcs(value: int, ts: float) -> list[Condition]:
        return det.observe(Observation("sw1", "gnmi", IF_IN_FCS_ERRORS, "et-0/0/0", value, ts))

    assert fcs(100, 0.0) == []
    assert fcs(400, 60.0) == []  # still 5/s: still the one raised
    cleared = one(fcs(400, 120.0))
    assert not cleared.active and cleared.evidence["metric"] == IF_IN_FCS_ERRORS


def test_what_cannot_be_resumed_is_refused() -> None:
    det = Detectors(quiet(errors={}, plan_saturation={}), inventory())
    assert not det.resume(raised("congestion", direction="in"))  # congestion is off here
    assert not det.resume(raised("errors", metric="if_out_errors"))  # not a counter it judges
    assert not det.resume(raised("errors", "", metric=IF_IN_ERRORS))  # no port
    assert not det.resume(raised("plan_saturation", direction="out"))  # no subscriber
    assert not det.resume(raised("optical_power", rx_dbm=-30.0))
    assert det.active() == []


def test_resumed_plan_saturation_keeps_its_subscriber_or_clears_on_a_new_binding() -> None:
    inv = inventory(sub("s1", "sw1", PORT, plan=50))
    det = Detectors(quiet(plan_saturation={"raise_after_s": 1800, "clear_after_s": 120}), inv)
    assert det.resume(raised("plan_saturation", subscriber="s1", direction="out"))
    feed = Feed(det)
    feed.first()
    for _ in range(5):
        assert feed.step(out_bps=48e6) == []  # still saturated: the same condition
    assert feed.step(out_bps=10e6) == []
    cleared = one(feed.step(out_bps=10e6))
    assert not cleared.active and cleared.subscriber == "s1"

    moved = Detectors(quiet(plan_saturation={}), inventory(sub("s2", "sw1", PORT, plan=50)))
    assert moved.resume(raised("plan_saturation", subscriber="s1", direction="out"))
    feed = Feed(moved)
    assert feed.first() == []
    gone = one(feed.step(out_bps=48e6))  # the port is someone else's now
    assert not gone.active and gone.subscriber == "s1"
    assert gone.evidence == {"reason": "inventory changed"}


# --- usage change-point -------------------------------------------------------------------

def usage_feed(levels: list[float]) -> list[Condition]:
    det = Detectors(quiet(usage_change={}), inventory())
    feed = Feed(det)
    feed.first()
    for x in levels:
        feed.step(x, 0.0, speed=10_000)
    return feed.got


def test_usage_step_up_raises_once_and_clears_when_back() -> None:
    rng = random.Random(7)
    base = [rng.gauss(200e6, 20e6) for _ in range(60)]
    spike = [rng.gauss(900e6, 20e6) for _ in range(30)]
    back = [rng.gauss(200e6, 20e6) for _ in range(30)]
    got = usage_feed(base + spike + back)
    assert [c.active for c in got] == [True, False]
    raised, cleared = got
    assert 150e6 < float(raised.evidence["before_bps"]) < 250e6
    assert 800e6 < float(raised.evidence["after_bps"]) < 1000e6
    assert float(raised.evidence["cusum"]) > 12.0 and raised.evidence["threshold_h"] == 12.0
    assert cleared.evidence["outcome"] == "returned"


def test_a_new_level_becomes_the_baseline() -> None:
    rng = random.Random(3)
    levels = [rng.gauss(100e6, 5e6) for _ in range(30)] + \
             [rng.gauss(500e6, 5e6) for _ in range(400)]  # > 6 h at one sample a minute
    got = usage_feed(levels)
    assert [c.active for c in got] == [True, False]
    assert got[1].evidence["outcome"] == "adopted"


def test_a_single_burst_is_not_a_change() -> None:
    levels = [200e6] * 40 + [5e9] + [200e6] * 40
    assert usage_feed(levels) == []


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mean=st.floats(1e6, 5e9),
       cv=st.floats(0.0, 0.3))
def test_iid_noise_is_never_a_change(seed: int, mean: float, cv: float) -> None:
    rng = random.Random(seed)
    levels = [max(0.0, rng.gauss(mean, mean * cv)) for _ in range(300)]
    assert usage_feed(levels) == []


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.floats(3.0, 20.0))
def test_larger_steps_are_found_no_later(seed: int, factor: float) -> None:
    """Monotone: a step k times the baseline raised after n samples is raised no later
    when the step is larger."""
    rng = random.Random(seed)
    noise = [rng.gauss(0.0, 10e6) for _ in range(120)]

    def raised_at(f: float) -> int:
        levels = [100e6 + x for x in noise[:40]] + [100e6 * f + x for x in noise[40:]]
        det = Detectors(quiet(usage_change={}), inventory())
        feed = Feed(det)
        feed.first()
        for n, x in enumerate(levels):
            if feed.step(x, speed=100_000):
                return n
        return len(levels)

    assert raised_at(factor * 1.5) <= raised_at(factor) < 120


def test_disabled_detection_says_nothing() -> None:
    det = Detectors(DetectionConfig(enabled=False), inventory())
    feed = Feed(det)
    feed.first()
    for _ in range(10):
        feed.step(990e6, 990e6, eps=100)
    assert feed.got == [] and det.active() == []
