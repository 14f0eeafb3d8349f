"""Correlator settings: hold-downs, priority weights, churn history, flap damping and
where maintenance windows come from. Every weight is a plain number of points, so the
stored breakdown of an incident's priority reads as ``input x weight = contribution``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from correlator.detection import DetectionConfig
from probes.source import Strict

Weight = Annotated[float, Field(ge=0)]


def _tier_weights() -> dict[str, float]:
    return {"residential": 1.0, "business": 3.0, "enterprise": 10.0}


class SeverityWeights(Strict):
    critical: Weight = 50.0
    major: Weight = 20.0
    minor: Weight = 5.0


class PriorityConfig(Strict):
    """Points per unit of each input. Every weight is >= 0, so an incident never ranks
    lower because it hurts one more subscriber."""

    revenue: Weight = Field(default=0.1, description="points per unit of monthly revenue at risk")
    sla_tier: dict[str, Weight] = Field(
        default_factory=_tier_weights, description="points per affected subscriber of the tier"
    )
    other_tier: Weight = Field(
        default=1.0, description="points per affected subscriber of a tier not in sla_tier"
    )
    churn: Weight = Field(
        default=20.0, description="points per unit of (effective) churn risk, summed over the "
                                  "affected subscribers",
    )
    severity: SeverityWeights = Field(default_factory=SeverityWeights)
    duration: Weight = Field(default=0.5, description="points per minute open so far")
    duration_cap_minutes: float = Field(default=240.0, ge=0, description="minutes counted at most")
    renewal: Weight = Field(
        default=5.0, description="points per affected subscriber whose contract ends within "
                                 "renewal_window_days",
    )
    renewal_window_days: int = Field(default=90, ge=0, le=3650)


class ChurnConfig(Strict):
    """A subscriber hit by ``repeat_threshold`` incidents (or more) within ``window_days``
    gets an effective churn risk of ``churn_risk + step x (hits - repeat_threshold + 1)``,
    at most 1.0. The history is kept in the state directory and survives restarts."""

    window_days: float = Field(default=30.0, gt=0, le=3650)
    repeat_threshold: int = Field(default=3, ge=1, le=1000)
    step: float = Field(default=0.1, ge=0, le=1)
    count_planned: bool = Field(
        default=False, description="whether incidents inside a maintenance window count"
    )
    repeat_incidents: int = Field(
        default=20, ge=0, le=100_000,
        description="at most this many `repeated_failures` incidents (one per subscriber "
                    "reaching repeat_threshold) opened by one incident; a larger outage lists "
                    "them in its impact.repeat_subscribers instead (0: never open them)",
    )


class DampingConfig(Strict):
    """Flap damping per element (port or device), like BGP route-flap dampening (RFC 2439).

    Each time an element goes down it earns ``penalty`` points; points decay by half every
    ``half_life`` seconds. Reaching ``suppress`` turns the element into one incident of kind
    ``flapping`` (later changes only count on it). That incident resolves once the element
    has not changed state for ``stable_for`` seconds *and* its points have decayed below
    ``reuse``. Points are capped so that they fall below ``reuse`` at most ``max_suppress``
    seconds after the last change. ``port_hold_down`` additionally delays incidents for
    customer-facing ports: a port that comes back sooner never opens one (it still earns
    points)."""

    enabled: bool = True
    penalty: float = Field(default=1000.0, gt=0)
    half_life: float = Field(default=300.0, gt=0, le=86_400)
    suppress: float = Field(default=2000.0, gt=0)
    reuse: float = Field(default=750.0, gt=0)
    max_suppress: float = Field(default=1800.0, gt=0, le=86_400)
    stable_for: float = Field(default=300.0, ge=0, le=86_400)
    port_hold_down: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _thresholds(self) -> DampingConfig:
        if self.reuse >= self.suppress:
            raise ValueError(f"reuse ({self.reuse:g}) must be below suppress ({self.suppress:g})")
        return self


class CorrelationConfig(Strict):
    unreachable_hold_down: float = Field(
        default=5.0, ge=0, le=600,
        description="seconds a device must stay unreachable before its incident opens, so "
                    "the rest of a failing neighbourhood is attributed to the right root",
    )
    priority: PriorityConfig = Field(default_factory=PriorityConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    damping: DampingConfig = Field(default_factory=DampingConfig)
    maintenance_file: str | None = Field(
        default=None, description="maintenance windows (YAML), relative to the config file"
    )
    max_silence: float = Field(
        default=7 * 86_400.0, gt=0, le=90 * 86_400,
        description="seconds a silence may last at most; a forgotten silence hides outages",
    )
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    state_hold_down: float | None = Field(
        default=None, ge=0, le=3600,
        description="seconds a BGP session must stay down (or an ONT offline) before its "
                    "incident opens; default: unreachable_hold_down",
    )
    condition_recheck: float = Field(
        default=3600.0, gt=0, le=7 * 86_400,
        description="after a restart, a condition incident (congestion, errors...) whose "
                    "element its detector has not measured (optical power: not raised "
                    "again) within this many seconds is resolved",
    )
