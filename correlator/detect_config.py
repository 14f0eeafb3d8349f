"""Thresholds of the detectors beyond up/down (``correlation.detection``).

Every number is an ISP default that can be overridden per key; the README's "Detection"
section explains each. Pairs that form a hysteresis are checked (the raise threshold must
be beyond the clear threshold), with a message naming both fields.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from probes.source import Strict

Severity = Literal["critical", "major", "minor"]
Seconds = float


def _below(low_name: str, low: float, high_name: str, high: float) -> None:
    if low >= high:
        raise ValueError(f"{low_name} ({low:g}) must be below {high_name} ({high:g}): "
                         f"the condition is raised at {high_name} and cleared below {low_name}")


class CountersConfig(Strict):
    """How raw counters become rates."""

    wrap_max_ratio: float = Field(
        default=1.1, ge=1, le=10,
        description="a counter that went down is taken as a wrap (of 2^32 when the last "
                    "value was below 2^32, else 2^64) only when the implied rate is at most "
                    "this x the port speed; otherwise it is a reset: the sample is skipped")
    unknown_speed_max_bps: float = Field(
        default=100e9, gt=0,
        description="the plausible rate for a wrap on a port whose speed is unknown")
    max_gap_s: Seconds = Field(
        default=3600.0, gt=0, le=86_400,
        description="samples further apart than this are not compared (a 32-bit counter "
                    "may have wrapped more than once): the next one starts afresh")


class _Hysteresis(Strict):
    """A percentage raised at ``high_pct`` and cleared below ``low_pct``."""

    high_pct: float
    low_pct: float

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        _below("low_pct", self.low_pct, "high_pct", self.high_pct)
        return self


class CongestionConfig(_Hysteresis):
    """Utilization of a port, in and out separately, against its speed."""

    enabled: bool = True
    high_pct: float = Field(default=90.0, gt=0, le=100, description="raised at or above")
    low_pct: float = Field(default=80.0, ge=0, le=100, description="cleared below")
    raise_after_s: Seconds = Field(
        default=300.0, ge=0, le=86_400,
        description="seconds of consecutive samples at or above high_pct before raising")
    clear_after_s: Seconds = Field(
        default=300.0, ge=0, le=86_400,
        description="seconds of consecutive samples below low_pct before clearing")
    severity: Severity = "major"


class ErrorsConfig(Strict):
    """Input errors (ifInErrors; FCS/CRC errors from gNMI or CLI on their own).

    Only octets are counted, not packets, so the ratio is errors per GB received. A
    sample is *high* when errors/s >= rate_per_s, or when errors/s >= min_rate_per_s and
    errors per GB >= per_gb; it is *low* when both figures are below clear_fraction of
    their thresholds."""

    enabled: bool = True
    rate_per_s: float = Field(default=1.0, gt=0, description="errors/s that are always too many")
    per_gb: float = Field(default=10.0, gt=0, description="errors per GB received that are "
                                                          "too many (at min_rate_per_s or more)")
    min_rate_per_s: float = Field(default=0.1, ge=0, description="below this rate the ratio "
                                                                 "is not judged")
    clear_fraction: float = Field(default=0.5, gt=0, lt=1,
                                  description="cleared below this fraction of the thresholds")
    raise_after_s: Seconds = Field(default=300.0, ge=0, le=86_400)
    clear_after_s: Seconds = Field(default=600.0, ge=0, le=86_400)
    severity: Severity = "minor"


class OpticalConfig(Strict):
    """Received optical power: ONT_RX_DBM (GPON class B+ ONTs) and OPTICAL_RX_DBM (port
    and line optics; set these from your transceivers' datasheets)."""

    enabled: bool = True
    ont_low_dbm: float = Field(default=-27.0, ge=-60, le=10,
                               description="GPON class B+ ONT sensitivity")
    ont_high_dbm: float = Field(default=-8.0, ge=-60, le=10, description="ONT overload")
    optics_low_dbm: float = Field(default=-20.0, ge=-60, le=10)
    optics_high_dbm: float = Field(default=2.0, ge=-60, le=10)
    margin_db: float = Field(default=1.0, ge=0, le=10,
                             description="cleared only once this far inside the limits")
    raise_samples: int = Field(default=2, ge=1, le=1000)
    clear_samples: int = Field(default=2, ge=1, le=1000)
    severity: Severity = "major"

    @model_validator(mode="after")
    def _window(self) -> OpticalConfig:
        for kind in ("ont", "optics"):
            low, high = getattr(self, f"{kind}_low_dbm"), getattr(self, f"{kind}_high_dbm")
            if low + 2 * self.margin_db >= high:
                raise ValueError(
                    f"{kind}_low_dbm ({low:g}) + 2 x margin_db ({self.margin_db:g}) must be "
                    f"below {kind}_high_dbm ({high:g}): nothing could ever clear")
        return self


class BaselineConfig(Strict):
    """A per-target robust baseline: EWMA of the value and of its absolute deviation
    (a MAD estimate; x 1.4826 ~ one standard deviation). A sample is anomalous when it is
    above mean + k x 1.4826 x MAD *and* at least min_delta above the mean; anomalous
    samples do not update the baseline, so a long outage never becomes the new normal."""

    enabled: bool = True
    warmup_samples: int = Field(default=20, ge=2, le=10_000,
                                description="samples learnt before judging")
    alpha: float = Field(default=0.05, gt=0, le=1, description="EWMA weight of a new sample")
    k: float = Field(default=4.0, gt=0, le=100)
    raise_samples: int = Field(default=3, ge=1, le=1000,
                               description="consecutive anomalous samples before raising")
    clear_samples: int = Field(default=3, ge=1, le=1000,
                               description="consecutive normal samples before clearing")
    rebaseline_after_s: Seconds = Field(
        default=86_400.0, gt=0, le=90 * 86_400,
        description="raised this long without a break: the level is taken as the new normal "
                    "(the condition clears and the baseline is learnt again)")


class LatencyConfig(BaselineConfig):
    min_delta_ms: float = Field(default=10.0, ge=0, description="RTT above the baseline mean "
                                                                "that is never news")
    severity: Severity = "minor"


class LossConfig(BaselineConfig):
    threshold: float = Field(default=0.02, gt=0, lt=1,
                             description="loss ratio (0..1) at or above which a sample may be "
                                         "anomalous, baseline or not (judged from the first "
                                         "sample); total loss is an outage, not judged here")
    severity: Severity = "major"


class UsageChangeConfig(Strict):
    """Two-sided CUSUM of a port's traffic (in + out, b/s) on the residual against a slow
    robust EWMA baseline, standardized by the baseline's deviation and capped at z_cap
    (so one burst cannot raise it alone). Raised when the upper sum passes threshold_h
    and the new level is at least min_ratio x and min_delta_bps above the old one (with
    ``detect_drops``, the lower sum likewise for drops). While raised the old baseline is
    kept; the condition clears when traffic is back within clear_z deviations of it for
    clear_samples samples, or after adopt_after_s, when the new level becomes the baseline."""

    enabled: bool = True
    warmup_samples: int = Field(default=12, ge=2, le=10_000)
    alpha: float = Field(default=0.02, gt=0, le=1, description="EWMA weight (slow baseline)")
    drift_k: float = Field(default=0.5, ge=0, le=10, description="CUSUM allowance, in deviations")
    threshold_h: float = Field(default=12.0, gt=0, le=1000, description="CUSUM decision level")
    z_cap: float = Field(default=3.0, gt=0, le=100, description="largest residual counted")
    min_ratio: float = Field(default=2.0, ge=1, le=1000)
    min_delta_bps: float = Field(default=10e6, ge=0)
    detect_drops: bool = False
    clear_z: float = Field(default=1.0, ge=0, le=100)
    clear_samples: int = Field(default=3, ge=1, le=1000)
    adopt_after_s: Seconds = Field(default=6 * 3600.0, gt=0, le=90 * 86_400)
    severity: Severity = "minor"

    @model_validator(mode="after")
    def _levels(self) -> UsageChangeConfig:
        if self.z_cap <= self.drift_k:
            raise ValueError(f"z_cap ({self.z_cap:g}) must be above drift_k ({self.drift_k:g}): "
                             "the CUSUM could never grow")
        return self


class PlanSaturationConfig(_Hysteresis):
    """An access port bound to exactly one subscriber with plan_mbps: the port's out rate
    (downstream, towards the subscriber) as a percentage of the plan."""

    enabled: bool = True
    high_pct: float = Field(default=85.0, gt=0, le=1000)
    low_pct: float = Field(default=70.0, ge=0, le=1000)
    raise_after_s: Seconds = Field(default=1800.0, ge=0, le=7 * 86_400)
    clear_after_s: Seconds = Field(default=900.0, ge=0, le=7 * 86_400)
    severity: Severity = "minor"


class DetectionConfig(Strict):
    """Detection beyond up/down; each detector can be switched off on its own."""

    enabled: bool = Field(default=True, description="run the detectors at all")
    counters: CountersConfig = Field(default_factory=CountersConfig)
    congestion: CongestionConfig = Field(default_factory=CongestionConfig)
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig)
    optical_power: OpticalConfig = Field(default_factory=OpticalConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    packet_loss: LossConfig = Field(default_factory=LossConfig)
    usage_change: UsageChangeConfig = Field(default_factory=UsageChangeConfig)
    plan_saturation: PlanSaturationConfig = Field(default_factory=PlanSaturationConfig)
