"""The small state machines behind the detectors: pure, clock-free, a few slots each.

- ``Run``: hysteresis over time (raised after ``raise_after`` seconds of high samples,
  cleared after ``clear_after`` seconds of low ones; in between nothing moves);
- ``Baseline``: robust EWMA mean and absolute deviation with warm-up, counting
  consecutive anomalous / normal samples;
- ``Cusum``: two-sided CUSUM on the standardized residual against a slow baseline.

Each ``step`` returns RAISE, CLEAR or STAY; the numbers for the evidence stay readable on
the object after a transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from correlator.detect_config import BaselineConfig, UsageChangeConfig

RAISE: Final = 1
CLEAR: Final = -1
STAY: Final = 0
SIGMA_PER_MAD: Final = 1.4826  # a normal distribution's sigma per median absolute deviation
SIGMA_PER_MEAN_DEV: Final = 1.2533  # ... per mean absolute deviation (sqrt(pi / 2))


class Run:
    """Time-based hysteresis. A sample covers ``start``..``ts`` (the previous sample's
    time to its own): a run of high samples covering ``raise_after`` seconds raises, a
    run of low ones covering ``clear_after`` seconds clears. ``n`` and ``window`` describe
    the run that caused the last transition."""

    __slots__ = ("active", "n", "since", "window")

    def __init__(self) -> None:
        self.active = False
        self.since = -1.0  # start of the current run (of high, or when active of low), or -1
        self.n = 0
        self.window = 0.0

    def over(self, x: float, high: float, low: float, start: float, ts: float,
             raise_after: float, clear_after: float) -> int:
        """``step`` for a value that is high at ``>= high`` and low below ``low``; cheap
        when nothing is going on."""
        if x < high and not self.active and self.since < 0.0:
            return STAY
        return self.step(x >= high, x < low, start, ts, raise_after, clear_after)

    def step(self, high: bool, low: bool, start: float, ts: float,
             raise_after: float, clear_after: float) -> int:
        if self.active:
            hit, after = low, clear_after
        else:
            hit, after = high, raise_after
        if not hit:
            self.since = -1.0
            return STAY
        if self.since < 0.0:
            self.since, self.n = start, 0
        self.n += 1
        if ts - self.since < after:
            return STAY
        self.window = ts - self.since
        self.since = -1.0
        self.active = not self.active
        return RAISE if self.active else CLEAR


class Streak:
    """Sample-based hysteresis: ``raise_n`` consecutive high samples raise, ``clear_n``
    consecutive low ones clear; a sample that is neither breaks both streaks."""

    __slots__ = ("active", "n")

    def __init__(self) -> None:
        self.active = False
        self.n = 0

    def step(self, high: bool, low: bool, raise_n: int, clear_n: int) -> int:
        hit = low if self.active else high
        if not hit:
            self.n = 0
            return STAY
        self.n += 1
        if self.n < (clear_n if self.active else raise_n):
            return STAY
        self.active = not self.active
        self.n = 0
        return RAISE if self.active else CLEAR


class Baseline:
    """Robust baseline of one target's metric (RTT, loss).

    Warm-up: the first ``warmup_samples`` normal samples are averaged (mean, and mean
    absolute deviation from the running mean); after that both are EWMAs with ``alpha``.
    A sample is anomalous when it is ``>= floor``, ``>= mean + min_delta`` and (once warm)
    ``> mean + k x 1.4826 x mad``. Anomalous samples are not learnt."""

    __slots__ = ("active", "anomalous", "floor", "last", "mad", "mean", "min_delta", "n",
                 "normal", "since", "threshold")

    def __init__(self, floor: float, min_delta: float) -> None:
        self.floor = floor
        self.min_delta = min_delta
        self.active = False
        self.mean = 0.0
        self.mad = 0.0
        self.n = 0  # samples learnt (warm at warmup_samples)
        self.normal = 0  # consecutive normal samples
        self.anomalous = 0  # consecutive anomalous samples
        self.since = 0.0  # when raised
        self.threshold = 0.0  # of the last sample judged
        self.last = -1.0  # time of the last sample judged

    def step(self, x: float, ts: float, cfg: BaselineConfig, *, judge_cold: bool) -> int:
        self.last = ts
        warm = self.n >= cfg.warmup_samples
        mean = self.mean
        spread = mean + cfg.k * SIGMA_PER_MAD * self.mad
        bad = (warm or judge_cold) and x >= self.floor and x - mean >= self.min_delta and \
            (not warm or x > spread)
        self.threshold = max(self.floor, mean + self.min_delta, spread if warm else mean)
        if bad:
            self.anomalous += 1
            self.normal = 0
            if self.active:
                if ts - self.since >= cfg.rebaseline_after_s:
                    self.reset()
                    return CLEAR
                return STAY
            if self.anomalous >= cfg.raise_samples:
                self.active, self.since = True, ts
                return RAISE
            return STAY
        self.normal += 1
        self.anomalous = 0
        if warm:
            a = cfg.alpha
            self.mean += a * (x - self.mean)
            self.mad += a * (abs(x - self.mean) - self.mad)
        else:
            self.n += 1
            self.mean += (x - self.mean) / self.n
            self.mad += (abs(x - self.mean) - self.mad) / self.n
            return STAY if not self.active else self._clear(cfg)
        return self._clear(cfg) if self.active else STAY

    def resume(self, mean: float, mad: float, since: float, cfg: BaselineConfig) -> None:
        """Raised since ``since`` against a baseline of ``mean`` and ``mad`` (an open
        incident's evidence, after a restart): warm, so the degraded level is judged
        against the old normal rather than learnt as the new one."""
        self.mean, self.mad = mean, mad
        self.n = cfg.warmup_samples
        self.active, self.since = True, since
        self.normal = self.anomalous = 0

    def _clear(self, cfg: BaselineConfig) -> int:
        if self.normal >= cfg.clear_samples:
            self.active = False
            return CLEAR
        return STAY

    def reset(self) -> None:
        self.active = False
        self.mean = self.mad = 0.0
        self.n = self.normal = self.anomalous = 0


@dataclass(frozen=True, slots=True)
class UsageParams:
    """``UsageChangeConfig`` as plain attributes (read for every sample: a pydantic
    model's attributes take three times as long)."""

    warmup: int
    alpha: float
    drift_k: float
    h: float
    z_cap: float
    min_ratio: float
    min_delta: float
    detect_drops: bool
    clear_z: float
    clear_samples: int
    adopt_after: float

    @classmethod
    def of(cls, c: UsageChangeConfig) -> UsageParams:
        return cls(c.warmup_samples, c.alpha, c.drift_k, c.threshold_h, c.z_cap, c.min_ratio,
                   c.min_delta_bps, c.detect_drops, c.clear_z, c.clear_samples,
                   c.adopt_after_s)


class Cusum:
    """Two-sided CUSUM on a port's traffic (see ``UsageChangeConfig``). ``before`` and
    ``after`` are the levels around the last change, ``stat`` the sum that decided."""

    __slots__ = ("active", "after", "before", "dev", "direction", "down", "fast", "mean", "n",
                 "normal", "since", "stat", "up")

    def __init__(self) -> None:
        self.active = False
        self.mean = 0.0
        self.dev = 0.0  # mean absolute deviation (EWMA)
        self.n = 0
        self.up = 0.0
        self.down = 0.0
        self.fast = 0.0  # EWMA of the traffic with weight 0.5: the level now
        self.since = 0.0
        self.normal = 0
        self.before = 0.0
        self.after = 0.0
        self.stat = 0.0
        self.direction = "up"

    def step(self, x: float, ts: float, cfg: UsageParams) -> int:
        self.fast += 0.5 * (x - self.fast)
        n = self.n
        if n < cfg.warmup:
            n += 1
            self.n = n
            self.mean += (x - self.mean) / n
            self.dev += (abs(x - self.mean) - self.dev) / n
            return STAY
        mean = self.mean
        sigma = SIGMA_PER_MEAN_DEV * self.dev
        floor = 0.05 * mean if mean > 0.0 else 0.0
        if sigma < floor:
            sigma = floor
        if sigma < 1000.0:  # b/s: an idle port is not infinitely sure of itself
            sigma = 1000.0
        z = (x - mean) / sigma
        if self.active:
            return self._while_active(x, z, ts, cfg)
        cap = cfg.z_cap
        zc = cap if z > cap else -cap if z < -cap else z
        up = self.up + zc - cfg.drift_k
        down = self.down - zc - cfg.drift_k
        if up < 0.0:
            up = 0.0
        if down < 0.0:
            down = 0.0
        h = cfg.h
        level = self.fast
        if up > h:
            if level >= mean * cfg.min_ratio and level - mean >= cfg.min_delta:
                return self._raise(up, level, "up", ts)
            up = h  # armed, waiting for the change to be large enough
        if down > h and cfg.detect_drops:
            if level * cfg.min_ratio <= mean and mean - level >= cfg.min_delta:
                return self._raise(down, level, "down", ts)
            down = h
        self.up, self.down = up, down
        # learn, winsorized at 3 sigma: a burst moves the baseline only a little
        xc = mean + 3.0 * sigma if z > 3.0 else mean - 3.0 * sigma if z < -3.0 else x
        a = cfg.alpha
        self.mean = mean + a * (xc - mean)
        self.dev += a * (abs(xc - self.mean) - self.dev)
        return STAY

    def resume(self, before: float, dev: float, after: float, direction: str, since: float,
               cfg: UsageParams) -> None:
        """Raised since ``since``, from ``before`` (deviation ``dev``) to ``after``: an open
        incident's evidence, after a restart. It clears as when never interrupted."""
        self.n = cfg.warmup
        self.mean, self.dev, self.fast = before, dev, after
        self.active, self.since, self.normal = True, since, 0
        self.before, self.after, self.direction = before, after, direction
        self.up = self.down = 0.0

    def _raise(self, stat: float, level: float, direction: str, ts: float) -> int:
        self.active, self.since, self.normal = True, ts, 0
        self.before, self.after, self.stat, self.direction = self.mean, level, stat, direction
        self.up = self.down = 0.0
        return RAISE

    def _while_active(self, x: float, z: float, ts: float, cfg: UsageParams) -> int:
        self.after = self.fast
        back = abs(z) <= cfg.clear_z
        self.normal = self.normal + 1 if back else 0
        if self.normal >= cfg.clear_samples:
            self.active = False
            self.direction = "returned"
            return CLEAR
        if ts - self.since >= cfg.adopt_after:
            self.active = False
            self.n = 0  # the new level is learnt as the baseline
            self.mean = self.dev = 0.0
            self.direction = "adopted"
            return CLEAR
        return STAY
