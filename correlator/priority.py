"""The priority score of an incident, with the breakdown that produced it.

The score is a sum of components, each ``input x weight = contribution``; the breakdown
is stored on the incident so that anyone can see why incident A outranks B. Pure: the
engine gathers the inputs (effective churn risk, contracts near renewal, minutes open).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from correlator.config import PriorityConfig


@dataclass(frozen=True, slots=True)
class PriorityComponent:
    """One line of the breakdown. ``input`` is a number (or the severity's name, weighted
    as one); ``contribution`` is ``input x weight``, rounded to cents of a point."""

    name: str
    input: float | str
    weight: float
    contribution: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input": self.input, "weight": self.weight,
                "contribution": self.contribution, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PriorityComponent:
        return cls(d["name"], d["input"], d["weight"], d["contribution"], d.get("detail", ""))


@dataclass(frozen=True, slots=True)
class PriorityInputs:
    severity: str
    revenue_at_risk: float
    subscribers_by_tier: Mapping[str, int]
    churn_risk: float  # effective churn risk summed over the affected subscribers
    near_renewal: int  # affected subscribers whose contract ends within the window
    minutes_open: float


@dataclass(frozen=True, slots=True)
class Priority:
    score: float
    breakdown: tuple[PriorityComponent, ...]


def _line(name: str, value: float | str, weight: float, detail: str = "") -> PriorityComponent:
    amount = weight if isinstance(value, str) else value * weight
    return PriorityComponent(name, value, weight, round(amount, 2), detail)


def score(inputs: PriorityInputs, weights: PriorityConfig) -> Priority:
    """Score ``inputs``. Every weight is >= 0 and every input only grows with the set of
    affected subscribers, so adding one never lowers the score."""
    sev = getattr(weights.severity, inputs.severity, None)
    lines = [
        _line("severity", inputs.severity, sev or 0.0,
              "" if sev is not None else "unknown severity: weighted 0"),
        _line("revenue_at_risk", round(inputs.revenue_at_risk, 2), weights.revenue,
              "monthly revenue of the affected subscribers"),
    ]
    for tier, count in sorted(inputs.subscribers_by_tier.items()):
        known = tier in weights.sla_tier
        lines.append(_line(
            f"sla_tier:{tier}", count,
            weights.sla_tier[tier] if known else weights.other_tier,
            "affected subscribers" if known else "affected subscribers; tier not in "
                                                 "priority.sla_tier, other_tier used",
        ))
    lines.append(_line("churn_risk", round(inputs.churn_risk, 4), weights.churn,
                       "effective churn risk summed over the affected subscribers"))
    minutes = max(0.0, inputs.minutes_open)
    capped = min(minutes, weights.duration_cap_minutes)
    lines.append(_line("duration", round(capped, 2), weights.duration,
                       f"minutes open so far (capped at {weights.duration_cap_minutes:g})"
                       if minutes > capped else "minutes open so far"))
    lines.append(_line("contracts_near_renewal", inputs.near_renewal, weights.renewal,
                       f"affected subscribers whose contract ends within "
                       f"{weights.renewal_window_days} days"))
    total = 0.0
    for c in lines:
        total += c.contribution
    return Priority(round(total, 2), tuple(lines))


def effective_churn(base: float, hits: int, *, threshold: int, step: float) -> float:
    """``base`` raised by ``step`` once ``hits`` reaches ``threshold`` and by one more step
    for every hit after that; never above 1.0 and never below ``base``."""
    steps = max(0, hits - threshold + 1)
    return min(1.0, max(base, base + step * steps))
