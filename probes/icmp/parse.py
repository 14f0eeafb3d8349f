"""Echo round-trip times to statistics and Observations (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from probes.types import JITTER_MS, LOSS_RATIO, REACHABLE, RTT_MS, Observation

SOURCE: Final = "icmp"


@dataclass(frozen=True, slots=True)
class PingStats:
    """One target's echoes in one poll. RTT fields are ``None`` when nothing answered."""

    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None

    @property
    def loss_ratio(self) -> float:
        return 0.0 if self.sent == 0 else (self.sent - self.received) / self.sent

    @property
    def reachable(self) -> bool:
        return self.received > 0


def summarize(rtts: Sequence[float | None]) -> PingStats:
    """Statistics of echoes in the order sent: seconds per answer, ``None`` for a loss.

    Jitter is the mean absolute difference between consecutive *answered* echoes
    (RFC 3550's instantaneous variation, unsmoothed); it needs two answers, else 0.
    """
    answered = [r * 1000.0 for r in rtts if r is not None]
    if not answered:
        return PingStats(len(rtts), 0, None, None, None, None)
    diffs = [abs(b - a) for a, b in pairwise(answered)]
    return PingStats(
        sent=len(rtts),
        received=len(answered),
        rtt_min_ms=min(answered),
        rtt_avg_ms=sum(answered) / len(answered),
        rtt_max_ms=max(answered),
        jitter_ms=sum(diffs) / len(diffs) if diffs else 0.0,
    )


def observations(device: str, stats: PingStats, ts: float) -> list[Observation]:
    """REACHABLE and loss always; RTT and jitter only when something answered."""
    if not stats.reachable:
        return [
            Observation(device, SOURCE, REACHABLE, "", 0, ts, {"reason": "timeout"}),
            Observation(device, SOURCE, LOSS_RATIO, "", 1.0, ts),
        ]
    assert stats.rtt_avg_ms is not None and stats.jitter_ms is not None
    return [
        Observation(device, SOURCE, REACHABLE, "", 1, ts),
        Observation(
            device,
            SOURCE,
            RTT_MS,
            "",
            round(stats.rtt_avg_ms, 3),
            ts,
            {"min": f"{stats.rtt_min_ms:.3f}", "max": f"{stats.rtt_max_ms:.3f}"},
        ),
        Observation(device, SOURCE, JITTER_MS, "", round(stats.jitter_ms, 3), ts),
        Observation(device, SOURCE, LOSS_RATIO, "", stats.loss_ratio, ts),
    ]
