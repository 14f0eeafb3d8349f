"""RTT, jitter and loss from echo results, and the Observations they become (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.icmp import JITTER_MS, LOSS_RATIO, RTT_MS, PingProbeConfig, summarize
from probes.icmp.parse import observations
from probes.types import REACHABLE


def by_name(obs):
    return {o.name: o for o in obs}


def test_all_answered():
    s = summarize([0.001, 0.003, 0.002])
    assert (s.sent, s.received, s.loss_ratio) == (3, 3, 0.0)
    assert s.rtt_min_ms == pytest.approx(1.0)
    assert s.rtt_max_ms == pytest.approx(3.0)
    assert s.rtt_avg_ms == pytest.approx(2.0)
    assert s.jitter_ms == pytest.approx(1.5)  # |3-1| and |2-3|


def test_jitter_skips_losses_and_needs_two_answers():
    s = summarize([0.010, None, 0.014, None])
    assert s.received == 2 and s.loss_ratio == pytest.approx(0.5)
    assert s.jitter_ms == pytest.approx(4.0)
    assert summarize([None, 0.005]).jitter_ms == 0.0


def test_all_lost_is_unreachable_with_timeout_reason():
    # The all-lost path of PingPoller.poll, fed here directly: loopback always answers,
    # and a DROP rule to make a 127.x address silent is not available in tests.
    s = summarize([None, None, None])
    assert not s.reachable and s.loss_ratio == 1.0 and s.rtt_avg_ms is None
    obs = by_name(observations("cpe1", s, ts=5.0))
    assert obs[REACHABLE].value == 0 and obs[REACHABLE].labels["reason"] == "timeout"
    assert obs[LOSS_RATIO].value == 1.0
    assert RTT_MS not in obs and JITTER_MS not in obs


def test_observations_when_answered():
    obs = by_name(observations("cpe1", summarize([0.001, None, 0.002]), ts=5.0))
    assert {o.source for o in obs.values()} == {"icmp"}
    assert obs[REACHABLE].value == 1
    assert obs[RTT_MS].value == pytest.approx(1.5)
    assert obs[RTT_MS].labels == {"min": "1.000", "max": "2.000"}
    assert obs[JITTER_MS].value == pytest.approx(1.0)
    assert obs[LOSS_RATIO].value == pytest.approx(1 / 3)


@given(st.lists(st.one_of(st.none(), st.floats(0.0, 10.0)), min_size=1, max_size=50))
def test_invariants(rtts):
    s = summarize(rtts)
    assert s.sent == len(rtts)
    assert 0.0 <= s.loss_ratio <= 1.0
    assert s.reachable == any(r is not None for r in rtts)
    if s.reachable:
        assert s.rtt_min_ms <= s.rtt_avg_ms + 1e-9 and s.rtt_avg_ms <= s.rtt_max_ms + 1e-9
        assert 0.0 <= s.jitter_ms <= s.rtt_max_ms - s.rtt_min_ms + 1e-9


@pytest.mark.parametrize(
    "bad", [{"size": 63}, {"size": 1501}, {"count": 0}, {"timeout": 0}, {"typo": 1},
            {"privileged": "maybe"}, {"count": 100, "timeout": 30}]
)
def test_config_rejects(bad):
    with pytest.raises(ValueError):
        PingProbeConfig(**bad)
