"""Observation-based detectors (latency and loss baselines, optical power) and the
configuration's errors. Pure computation: fake series, no servers."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from correlator.detection import Condition, DetectionConfig, Detectors
from correlator.inventory import Inventory
from probes.types import JITTER_MS, LOSS_RATIO, ONT_RX_DBM, OPTICAL_RX_DBM, RTT_MS, Observation


def detectors(**sections: object) -> Detectors:
    return Detectors(DetectionConfig.model_validate(sections), Inventory({}, []))


class Series:
    def __init__(self, det: Detectors, name: str, instance: str = "") -> None:
        self.det, self.name, self.instance = det, name, instance
        self.ts = 0.0
        self.got: list[Condition] = []

    def __call__(self, *values: float, labels: dict[str, str] | None = None) -> list[Condition]:
        out: list[Condition] = []
        for v in values:
            self.ts += 60.0
            out += self.det.observe(Observation("olt1", "ping", self.name, self.instance, v,
                                                self.ts, labels or {}))
        self.got += out
        return out


def noisy(rng: random.Random, mean: float, spread: float, n: int) -> list[float]:
    return [mean + rng.uniform(-spread, spread) for _ in range(n)]


# --- latency ------------------------------------------------------------------------------

def test_a_step_to_five_times_the_latency_raises_and_clears() -> None:
    rng = random.Random(1)
    rtt = Series(detectors(), RTT_MS)
    assert rtt(*noisy(rng, 20.0, 2.0, 40)) == []
    assert rtt(100.0, 101.0) == []  # two anomalous samples: not yet three
    cond = rtt(99.0)[0]
    assert cond.kind == "latency" and cond.active and cond.severity == "minor"
    ev = cond.evidence
    assert ev["value"] == 99.0 and 19.0 < float(ev["baseline_mean"]) < 21.0
    assert 0.3 < float(ev["mad"]) < 2.0 and ev["k"] == 4.0 and ev["samples"] == 3
    assert float(ev["threshold"]) == pytest.approx(
        max(float(ev["baseline_mean"]) + 10.0,
            float(ev["baseline_mean"]) + 4.0 * 1.4826 * float(ev["mad"])), abs=1e-3)
    assert cond.summary.startswith("olt1 RTT 99.0 ms (baseline 1") and cond.instance == ""
    assert rtt(*noisy(rng, 20.0, 2.0, 2)) == []
    cleared = rtt(20.0)
    assert [c.active for c in cleared] == [False]
    assert [c.active for c in rtt.got] == [True, False]


def test_noise_within_k_mad_does_not_raise() -> None:
    rng = random.Random(2)
    rtt = Series(detectors(latency={"min_delta_ms": 0.0}), RTT_MS, "10.0.0.1")
    rtt(*noisy(rng, 30.0, 3.0, 500))
    assert rtt.got == []


def test_a_lan_jump_below_the_floor_pages_nobody() -> None:
    rtt = Series(detectors(), RTT_MS)
    rtt(*[0.3] * 30)
    rtt(*[0.9] * 30)
    assert rtt.got == []


def test_a_long_anomaly_does_not_poison_the_baseline() -> None:
    rng = random.Random(4)
    rtt = Series(detectors(), RTT_MS)
    rtt(*noisy(rng, 15.0, 1.0, 30))
    rtt(*noisy(rng, 150.0, 10.0, 600))  # ten hours of trouble
    assert [c.active for c in rtt.got] == [True]
    rtt(*noisy(rng, 15.0, 1.0, 3))
    assert [c.active for c in rtt.got] == [True, False]
    assert 14.0 < float(rtt.got[1].evidence["baseline_mean"]) < 16.0
    rtt(*noisy(rng, 60.0, 1.0, 3))  # and it is still judged against 15 ms
    assert [c.active for c in rtt.got] == [True, False, True]


def test_a_level_that_lasts_a_day_becomes_the_new_normal() -> None:
    rtt = Series(detectors(latency={"rebaseline_after_s": 3600}), RTT_MS)
    rtt(*[10.0] * 25)
    rtt(*[80.0] * 70)  # raised at the third, cleared an hour later, then learnt
    assert [c.active for c in rtt.got] == [True, False]
    assert rtt.got[1].evidence["outcome"] == "rebaselined"
    rtt(*[80.0] * 100)
    assert len(rtt.got) == 2


def test_jitter_and_text_are_ignored() -> None:
    det = detectors()
    assert det.observe(Observation("r1", "ping", JITTER_MS, "", 500.0, 1.0)) == []
    assert det.observe(Observation("r1", "ping", RTT_MS, "", "n/a", 1.0)) == []


# --- loss ---------------------------------------------------------------------------------

def test_loss_over_the_threshold_raises_from_the_first_samples() -> None:
    loss = Series(detectors(), LOSS_RATIO)
    loss(0.0, 0.05, 0.06)
    cond = loss(0.05)[0]
    assert cond.kind == "packet_loss" and cond.severity == "major"
    assert cond.evidence["value"] == 0.05 and cond.evidence["threshold"] == 0.02
    assert "loss 5.0%" in cond.summary
    loss(0.0, 0.0)
    assert [c.active for c in loss(0.0)] == [False]


def test_small_or_total_loss_is_not_packet_loss() -> None:
    loss = Series(detectors(), LOSS_RATIO)
    loss(*[0.0, 0.01] * 20)  # 1%: under the 2% threshold
    loss(*[1.0] * 10)  # nothing answered: an outage, judged elsewhere
    assert loss.got == []


def test_chronic_loss_is_judged_against_its_baseline() -> None:
    rng = random.Random(5)
    loss = Series(detectors(packet_loss={"threshold": 0.02}), LOSS_RATIO)
    loss(0.04, 0.04)  # over the threshold before there is a baseline: two, not three
    loss(*noisy(rng, 0.01, 0.005, 30))
    loss(*noisy(rng, 0.03, 0.001, 2))  # over 2%, not yet three samples
    assert loss.got == []


# --- optical power ------------------------------------------------------------------------

def test_ont_power_with_hysteresis_margin() -> None:
    ont = Series(detectors(), ONT_RX_DBM, "0/1/0/5")
    assert ont(-24.0, -27.5) == []
    cond = ont(-28.2)[0]
    assert cond.kind == "optical_power" and cond.active and cond.instance == "0/1/0/5"
    assert cond.evidence == {"metric": ONT_RX_DBM, "value_dbm": -28.2, "low_dbm": -27.0,
                             "high_dbm": -8.0, "margin_db": 1.0, "samples": 2,
                             "problem": "low"}
    assert cond.summary == "ONT 0/1/0/5 receives -28.2 dBm (below -27 dBm)"
    assert ont(-26.5, -26.6, -26.9, -27.1, -26.2) == []  # inside the margin: still low
    assert [c.active for c in ont(-25.5, -25.9)] == [False]


def test_optics_overload_and_lanes() -> None:
    optics = Series(detectors(), OPTICAL_RX_DBM, "Ethernet1")
    got = optics(3.0, 3.1, labels={"channel": "2"})
    assert [(c.instance, c.evidence["problem"]) for c in got] == [("Ethernet1 lane 2",
                                                                   "overload")]
    assert optics(-3.0, -3.0, labels={"channel": "1"}) == []


# --- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({"congestion": {"high_pct": 80, "low_pct": 85}},
     "low_pct (85) must be below high_pct (80)"),
    ({"plan_saturation": {"low_pct": 90}}, "low_pct (90) must be below high_pct (85)"),
    ({"optical_power": {"ont_low_dbm": -9, "margin_db": 1}},
     "ont_low_dbm (-9) + 2 x margin_db (1) must be below ont_high_dbm (-8)"),
    ({"usage_change": {"z_cap": 0.4}}, "z_cap (0.4) must be above drift_k (0.5)"),
    ({"latency": {"warmup": 5}}, "latency.warmup"),
    ({"packet_loss": {"threshold": 2}}, "packet_loss.threshold"),
])
def test_config_errors_name_the_fields(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        DetectionConfig.model_validate(data)
    assert message in str(exc.value)


def test_config_defaults() -> None:
    cfg = DetectionConfig()
    assert (cfg.congestion.high_pct, cfg.congestion.low_pct) == (90.0, 80.0)
    assert (cfg.optical_power.ont_low_dbm, cfg.latency.min_delta_ms) == (-27.0, 10.0)
    assert cfg.plan_saturation.raise_after_s == 1800.0
