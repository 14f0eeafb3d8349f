"""Detection beyond up/down: counter rates, utilization, errors, optical power, latency
and loss baselines, usage change-points and plan saturation.

Pure and clock-free: the caller passes counters and observations with their timestamps.
``Detectors`` returns only transitions (a raised or a cleared ``Condition``), never the
same state twice in a row; each carries the numbers that decided it (``evidence``).
The per-sample path is O(1) per port and allocates nothing unless something changes:
a device's ports are kept in the order of its last interface table, so a poll with the
same table walks two lists side by side.

Rates: a counter that went down is a wrap (of 2^32 if its last value was below 2^32,
else 2^64) when the implied rate is plausible for the port's speed, otherwise a reset
(device restart, counters cleared): the sample is skipped and the next one compares
with the new value. ``DEVICE_RESTARTED`` forgets a device's last values outright.
Thresholds and defaults: ``correlator.detect_config`` and the README ("Detection").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from correlator.detect_config import DetectionConfig
from correlator.detect_stats import RAISE, Baseline, Cusum, Run, Streak, UsageParams
from correlator.inventory import Inventory
from probes.types import (
    DEVICE_RESTARTED,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_IN_OCTETS,
    IF_OUT_OCTETS,
    LOSS_RATIO,
    ONT_RX_DBM,
    OPTICAL_RX_DBM,
    RTT_MS,
    InterfaceCounters,
    Observation,
)

__all__ = ["Condition", "ConditionKind", "DetectionConfig", "Detectors"]

ConditionKind = Literal["congestion", "errors", "optical_power", "latency", "packet_loss",
                        "usage_change", "plan_saturation"]
Evidence = dict[str, float | int | str]

_COUNTER_NAMES = frozenset({IF_IN_OCTETS, IF_OUT_OCTETS, IF_IN_ERRORS, IF_IN_FCS_ERRORS})
_OCTETS = frozenset({IF_IN_OCTETS, IF_OUT_OCTETS})
_WIDTH32 = 1 << 32
_WIDTH64 = 1 << 64


@dataclass(frozen=True, slots=True)
class Condition:
    """A detector's verdict on one element: raised (active=True) or cleared (False).
    Detectors return only transitions, never the same state twice in a row."""

    kind: ConditionKind
    device: str
    instance: str  # interface name, ping target, optics component; "" = device
    active: bool
    severity: str  # "critical" | "major" | "minor"
    ts: float
    summary: str  # one line for humans: "ge-0/0/1 in 96% of 10 Gb/s for 5 min"
    evidence: Mapping[str, float | int | str]  # the numbers that triggered it
    subscriber: str | None = None  # plan_saturation: the one subscriber concerned


class _Port:
    """One interface: last raw counters and the detectors' state."""

    __slots__ = ("cong_in", "cong_out", "e", "err", "fcs", "i", "in_bps", "name", "o",
                 "out_bps", "plan", "plan_bps", "plan_gen", "speed", "subscriber", "ts",
                 "usage")

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Everything but the name as new (the port was down)."""
        self.ts = -1.0  # of the last values; -1: none
        self.i: int | None = None
        self.o: int | None = None
        self.e: int | None = None
        self.speed = 0.0  # b/s; 0: unknown
        self.in_bps: float | None = None
        self.out_bps: float | None = None
        self.cong_in = Run()
        self.cong_out = Run()
        self.err = Run()
        self.fcs = Run()
        self.usage = Cusum()
        self.plan_gen = -1  # inventory generation the plan was looked up in
        self.plan_bps = 0.0  # 0: not a port with exactly one subscriber with a plan
        self.subscriber: str | None = None
        self.plan = Run()

    def rebaseline(self) -> None:
        self.ts = -1.0
        self.i = self.o = self.e = None


@dataclass(frozen=True, slots=True)
class _Tuned:
    """What the per-sample path reads of the configuration, as plain attributes (a
    pydantic model's take three times as long); None: that detector is off."""

    max_gap: float
    wrap_ratio: float
    unknown_max: float
    congestion: tuple[float, float, float, float] | None  # high, low, raise after, clear after
    errors: bool
    usage: UsageParams | None
    plan: tuple[float, float, float, float] | None

    @classmethod
    def of(cls, c: DetectionConfig) -> _Tuned:
        cc, pc = c.congestion, c.plan_saturation
        return cls(
            c.counters.max_gap_s, c.counters.wrap_max_ratio, c.counters.unknown_speed_max_bps,
            (cc.high_pct, cc.low_pct, cc.raise_after_s, cc.clear_after_s) if cc.enabled
            else None,
            c.errors.enabled, UsageParams.of(c.usage_change) if c.usage_change.enabled else None,
            (pc.high_pct, pc.low_pct, pc.raise_after_s, pc.clear_after_s) if pc.enabled
            else None)


class _Device:
    __slots__ = ("aligned", "names", "obs", "optics", "ports", "targets", "ts")

    def __init__(self) -> None:
        self.ports: dict[str, _Port] = {}
        self.names: list[str] = []  # the interface table last seen ...
        self.aligned: list[_Port] = []  # ... and its ports, in that order
        self.targets: dict[tuple[str, str], Baseline] = {}  # (metric, instance)
        self.optics: dict[str, Streak] = {}
        self.obs: dict[tuple[str, str], tuple[int, float]] = {}  # counters as observations
        self.ts = 0.0  # last time anything was seen


class Detectors:
    """Every detector, for every device. ``inventory`` may be swapped at any time (plan
    speeds and subscriber bindings are looked up again)."""

    def __init__(self, config: DetectionConfig, inventory: Inventory) -> None:
        self.config = config
        self.inventory = inventory
        self._seen: Inventory | None = inventory
        self._gen = 0
        self._devices: dict[str, _Device] = {}
        self._active: dict[tuple[str, str, str], Condition] = {}

    # --- public ---------------------------------------------------------------------

    @property
    def config(self) -> DetectionConfig:
        return self._config

    @config.setter
    def config(self, config: DetectionConfig) -> None:
        self._config = config
        self._tuned = _Tuned.of(config)

    def counters(self, device: str, counters: InterfaceCounters, ts: float) -> list[Condition]:
        """One poll of a device's interface table."""
        if not self._config.enabled:
            return []
        dev = self._devices.get(device) or self._device(device)
        dev.ts = ts
        if self.inventory is not self._seen:
            self._seen, self._gen = self.inventory, self._gen + 1
        names = counters.name
        ports = dev.aligned if names == dev.names else self._align(dev, names)
        out: list[Condition] = []
        max_gap = self._tuned.max_gap
        wrap = self._wrap
        judge = self._judge
        for p, i, o, e, sp in zip(ports, counters.in_octets, counters.out_octets,
                                  counters.in_errors, counters.speed_mbps, strict=False):
            last = p.ts
            pi, po, pe = p.i, p.o, p.e
            p.ts, p.i, p.o, p.e = ts, i, o, e
            speed = p.speed = sp * 1e6 if sp else 0.0
            dt = ts - last
            if last < 0.0 or dt <= 0.0 or dt > max_gap:
                continue
            rin = rout = eps = None
            if i is not None and pi is not None:
                d = i - pi
                if d < 0 and (d := wrap(pi, i, dt, speed)) < 0:
                    continue  # a reset: the new values are the baseline
                rin = d * 8.0 / dt
            if o is not None and po is not None:
                d = o - po
                if d < 0 and (d := wrap(po, o, dt, speed)) < 0:
                    continue
                rout = d * 8.0 / dt
            if e is not None and pe is not None:
                if e < pe:
                    continue  # error counters are cleared, not wrapped
                eps = (e - pe) / dt
            p.in_bps, p.out_bps = rin, rout
            total = None if rin is None and rout is None else (rin or 0.0) + (rout or 0.0)
            judge(device, p, last, ts, rin, rout, eps, None, total, out)
        return out

    def observe(self, obs: Observation) -> list[Condition]:
        """Latency, loss, optical power, counters sent as observations (gNMI, CLI) and
        device restarts; anything else is not the detectors' business."""
        if not self.config.enabled:
            return []
        name = obs.name
        if name in _COUNTER_NAMES:
            return self._counter(obs)
        if name in (RTT_MS, LOSS_RATIO):
            return self._baseline(obs)
        if name in (OPTICAL_RX_DBM, ONT_RX_DBM):
            return self._optical(obs)
        if name == DEVICE_RESTARTED:
            dev = self._devices.get(obs.device)
            if dev is not None:
                for p in dev.ports.values():
                    p.rebaseline()
                dev.obs.clear()
        return []

    def forget(self, device: str) -> list[Condition]:
        """The device went away: clear whatever it had raised and drop its state."""
        dev = self._devices.pop(device, None)
        return self._clear(device, None, dev.ts if dev is not None else 0.0, f"{device} is gone")

    def forget_port(self, device: str, port: str) -> list[Condition]:
        """The port went down: clear what it had raised and start its detectors afresh
        (when it is back, its counters, runs and baseline from before mean nothing)."""
        dev = self._devices.get(device)
        if dev is not None:
            p = dev.ports.get(port)
            if p is not None:
                p.reset()  # in place: dev.aligned holds it
            for seen in [k for k in dev.obs if k[1] == port]:
                del dev.obs[seen]
        return self._clear(device, port, dev.ts if dev is not None else 0.0, f"{port} is down")

    def _clear(self, device: str, instance: str | None, ts: float, why: str) -> list[Condition]:
        """Clear what the device (``instance`` None) or one of its elements had raised."""
        out = []
        for key, cond in list(self._active.items()):
            if cond.device == device and instance in (None, cond.instance):
                del self._active[key]
                out.append(Condition(
                    cond.kind, device, cond.instance, False, cond.severity, ts,
                    f"{_what(cond)}: no longer judged ({why})", {"reason": "forgotten"},
                    cond.subscriber))
        return out

    def resume(self, cond: Condition) -> bool:
        """After a restart, a raised condition (an open incident) taken up where it was,
        raised, so that only samples that would clear it clear it:
        - a baseline kind (latency, packet_loss, usage_change) against the baseline its
          evidence names (a baseline learnt afresh would take the degraded level as the
          normal);
        - congestion, errors and plan_saturation in the direction, counter or subscriber
          its evidence names (raising again would take ``raise_after_s``, which may be
          longer than ``condition_recheck``: resolved, then opened again).
        False for optical_power, a detector that is off, or evidence without the numbers:
        those must be raised again."""
        config, ev = self._config, cond.evidence
        if not config.enabled or not cond.active:
            return False
        key = (cond.kind, cond.device, cond.instance)
        if cond.kind in ("latency", "packet_loss"):
            loss = cond.kind == "packet_loss"
            cfg = config.packet_loss if loss else config.latency
            mean, mad = _number(ev, "baseline_mean"), _number(ev, "mad")
            if not cfg.enabled or mean is None or mad is None:
                return False
            b = self._new_baseline(loss)
            b.resume(mean, mad, cond.ts, cfg)
            dev = self._devices.get(cond.device) or self._device(cond.device)
            dev.targets[LOSS_RATIO if loss else RTT_MS, cond.instance] = b
        elif cond.kind == "usage_change":
            params = self._tuned.usage
            before, after = _number(ev, "before_bps"), _number(ev, "after_bps")
            if params is None or before is None or after is None or not cond.instance:
                return False
            self._port(cond.device, cond.instance).usage.resume(
                before, _number(ev, "dev_bps") or 0.0, after, str(ev.get("direction", "up")),
                cond.ts, params)
        elif cond.kind in ("congestion", "errors", "plan_saturation"):
            run = self._resumable_run(cond)
            if run is None:
                return False
            run.active, run.since = True, -1.0
        else:
            return False
        self._active[key] = cond
        return True

    def _resumable_run(self, cond: Condition) -> Run | None:
        """The port's hysteresis that raised ``cond`` (congestion in or out, input or FCS
        errors, the plan of its subscriber); None: that detector is off, or the evidence
        does not say."""
        tuned, ev = self._tuned, cond.evidence
        if not cond.instance:
            return None
        if cond.kind == "congestion":
            direction = ev.get("direction")
            if tuned.congestion is None or direction not in ("in", "out"):
                return None
            p = self._port(cond.device, cond.instance)
            return p.cong_in if direction == "in" else p.cong_out
        if cond.kind == "errors":
            metric = ev.get("metric")
            if not tuned.errors or metric not in (IF_IN_ERRORS, IF_IN_FCS_ERRORS):
                return None
            p = self._port(cond.device, cond.instance)
            return p.err if metric == IF_IN_ERRORS else p.fcs
        if tuned.plan is None or not cond.subscriber:
            return None
        # the plan's subscriber: looked up again at the first sample (plan_gen), which
        # clears it if the port's binding changed meanwhile
        p = self._port(cond.device, cond.instance)
        p.subscriber, p.plan_gen = cond.subscriber, -1
        return p.plan

    def sampled(self, kind: str, device: str, instance: str) -> bool:
        """Whether the detector of ``kind`` (latency and packet_loss: a target; the
        others: a port's counters) had a sample of this element since it started (or
        forgot the device)."""
        dev = self._devices.get(device)
        if dev is None:
            return False
        if kind in ("latency", "packet_loss"):
            b = dev.targets.get((LOSS_RATIO if kind == "packet_loss" else RTT_MS, instance))
            return b is not None and b.last >= 0.0
        p = dev.ports.get(instance)
        return (p is not None and p.ts >= 0.0) or (IF_IN_OCTETS, instance) in dev.obs \
            or (IF_OUT_OCTETS, instance) in dev.obs

    def devices(self) -> list[str]:
        """The devices the detectors keep state of."""
        return [*self._devices, *(c.device for c in self._active.values())]

    def active(self) -> list[Condition]:
        """What is raised now, oldest first."""
        return sorted(self._active.values(), key=lambda c: c.ts)

    # --- counters -------------------------------------------------------------------

    def _device(self, device: str) -> _Device:
        dev = self._devices[device] = _Device()
        return dev

    def _port(self, device: str, name: str) -> _Port:
        """A port's state (new if none yet)."""
        dev = self._devices.get(device) or self._device(device)
        p = dev.ports.get(name)
        if p is None:
            p = dev.ports[name] = _Port(name)
        return p

    def _align(self, dev: _Device, names: list[str]) -> list[_Port]:
        ports = dev.ports
        for name in names:
            if name not in ports:
                ports[name] = _Port(name)
        dev.names = list(names)
        dev.aligned = [ports[n] for n in names]
        return dev.aligned

    def _wrap(self, last: int, new: int, dt: float, speed: float) -> int:
        """The increase of a counter that went down from ``last`` to ``new``, or -1 when
        that is a reset rather than a wrap."""
        width = _WIDTH32 if last < _WIDTH32 else _WIDTH64
        d = width - last + new
        tuned = self._tuned
        limit = speed * tuned.wrap_ratio if speed else tuned.unknown_max
        return d if d >= 0 and d * 8.0 / dt <= limit else -1

    def _counter(self, obs: Observation) -> list[Condition]:
        value = obs.value
        if not isinstance(value, int):
            return []
        dev = self._devices.get(obs.device) or self._device(obs.device)
        dev.ts = ts = obs.ts
        key = (obs.name, obs.instance)
        last = dev.obs.get(key)
        dev.obs[key] = (value, ts)
        p = self._port(obs.device, obs.instance)
        if last is None:
            return []
        prev, start = last
        dt = ts - start
        if dt <= 0.0 or dt > self._tuned.max_gap:
            return []
        d = value - prev
        octets = obs.name in _OCTETS
        if d < 0 and (not octets or (d := self._wrap(prev, value, dt, p.speed)) < 0):
            return []
        out: list[Condition] = []
        if self.inventory is not self._seen:
            self._seen, self._gen = self.inventory, self._gen + 1
        if obs.name == IF_IN_OCTETS:
            p.in_bps = d * 8.0 / dt
            self._judge(obs.device, p, start, ts, p.in_bps, None, None, None, None, out)
        elif obs.name == IF_OUT_OCTETS:
            p.out_bps = rate = d * 8.0 / dt
            total = rate + (p.in_bps or 0.0)
            self._judge(obs.device, p, start, ts, None, rate, None, None, total, out)
        elif obs.name == IF_IN_ERRORS:
            self._judge(obs.device, p, start, ts, None, None, d / dt, None, None, out)
        else:
            self._judge(obs.device, p, start, ts, None, None, None, d / dt, None, out)
        return out

    def _judge(self, device: str, p: _Port, start: float, ts: float, rin: float | None,
               rout: float | None, eps: float | None, fcs: float | None,
               total: float | None, out: list[Condition]) -> None:
        """One sample's rates (None: not in this sample) through the port's detectors."""
        tuned = self._tuned
        speed = p.speed
        if speed > 0.0 and tuned.congestion is not None:
            hi, lo, after_hi, after_lo = tuned.congestion
            if rin is not None and \
                    (t := p.cong_in.over(rin * 100.0 / speed, hi, lo, start, ts, after_hi,
                                         after_lo)):
                self._congestion(device, p, "in", t, rin, ts, out)
            if rout is not None and \
                    (t := p.cong_out.over(rout * 100.0 / speed, hi, lo, start, ts, after_hi,
                                          after_lo)):
                self._congestion(device, p, "out", t, rout, ts, out)
        if tuned.errors:
            if eps is not None and (eps or p.err.active or p.err.since >= 0.0):
                self._errors(device, p, p.err, IF_IN_ERRORS, eps, start, ts, out)
            if fcs is not None and (fcs or p.fcs.active or p.fcs.since >= 0.0):
                self._errors(device, p, p.fcs, IF_IN_FCS_ERRORS, fcs, start, ts, out)
        if total is not None and tuned.usage is not None and p.usage.step(total, ts, tuned.usage):
            self._usage(device, p, total, ts, out)
        if rout is not None and tuned.plan is not None:
            if p.plan_gen != self._gen:
                self._resolve_plan(device, p, ts, out)
            if p.plan_bps > 0.0:
                hi, lo, after_hi, after_lo = tuned.plan
                if t := p.plan.over(rout * 100.0 / p.plan_bps, hi, lo, start, ts, after_hi,
                                    after_lo):
                    self._plan(device, p, t, rout, ts, out)

    def _congestion(self, device: str, p: _Port, direction: str, t: int, rate: float,
                    ts: float, out: list[Condition]) -> None:
        other = p.cong_out if direction == "in" else p.cong_in
        if other.active:
            return  # the port is (still) congested the other way
        cc = self.config.congestion
        r = p.cong_in if direction == "in" else p.cong_out
        u = rate * 100.0 / p.speed
        ev: Evidence = {
            "direction": direction, "utilization_pct": round(u, 2), "rate_bps": round(rate),
            "speed_bps": round(p.speed), "samples": r.n, "window_s": round(r.window, 1)}
        if t == RAISE:
            ev["threshold_pct"] = cc.high_pct
            summary = (f"{p.name} {direction} at {u:.0f}% of {_bps(p.speed)} for "
                       f"{_duration(r.window)}")
        else:
            ev["threshold_pct"] = cc.low_pct
            summary = f"{p.name} back below {cc.low_pct:g}% ({direction} {u:.0f}%)"
        self._emit("congestion", device, p.name, t == RAISE, cc.severity, ts, summary, ev, out)

    def _errors(self, device: str, p: _Port, r: Run, metric: str, eps: float, start: float,
                ts: float, out: list[Condition]) -> None:
        ec = self.config.errors
        level = eps / ec.rate_per_s
        per_gb = -1.0
        if p.in_bps:
            per_gb = eps / (p.in_bps / 8e9)
            if eps >= ec.min_rate_per_s:
                level = max(level, per_gb / ec.per_gb)
        t = r.step(level >= 1.0, level < ec.clear_fraction, start, ts, ec.raise_after_s,
                   ec.clear_after_s)
        if not t:
            return
        other = p.fcs if r is p.err else p.err
        if other.active:
            return
        ev: Evidence = {
            "metric": metric, "errors_per_s": round(eps, 4), "rate_per_s": ec.rate_per_s,
            "per_gb": ec.per_gb, "min_rate_per_s": ec.min_rate_per_s, "samples": r.n,
            "window_s": round(r.window, 1)}
        if per_gb >= 0.0:
            ev["errors_per_gb"] = round(per_gb, 3)
        what = "FCS errors" if metric == IF_IN_FCS_ERRORS else "input errors"
        if t == RAISE:
            ratio = f" ({per_gb:.1f}/GB)" if per_gb >= 0.0 else ""
            summary = f"{p.name} {eps:.2f} {what}/s{ratio} for {_duration(r.window)}"
        else:
            summary = f"{p.name} {what} back to {eps:.2f}/s"
        self._emit("errors", device, p.name, t == RAISE, ec.severity, ts, summary, ev, out)

    def _usage(self, device: str, p: _Port, x: float, ts: float,
               out: list[Condition]) -> None:
        c = p.usage
        uc = self.config.usage_change
        ev: Evidence = {"before_bps": round(c.before), "after_bps": round(c.after),
                        "rate_bps": round(x), "threshold_h": uc.threshold_h}
        if c.active:
            ev.update(cusum=round(c.stat, 2), direction=c.direction, dev_bps=round(c.dev))
            summary = (f"{p.name} traffic stepped {c.direction} from {_bps(c.before)} to "
                       f"{_bps(c.after)}")
        else:
            ev["outcome"] = c.direction  # "returned" or "adopted"
            summary = (f"{p.name} traffic back near {_bps(c.before)}" if c.direction == "returned"
                       else f"{p.name} traffic of {_bps(c.after)} is the new normal")
        self._emit("usage_change", device, p.name, c.active, uc.severity, ts, summary, ev, out)

    def _resolve_plan(self, device: str, p: _Port, ts: float, out: list[Condition]) -> None:
        p.plan_gen = self._gen
        sid, plan = None, 0.0
        subs = self.inventory.subscribers_on(device, p.name)
        if len(subs) == 1:
            mbps = self.inventory.subscribers[subs[0]].plan_mbps
            if mbps:
                sid, plan = subs[0], mbps * 1e6
        if sid != p.subscriber and p.plan.active:
            key = ("plan_saturation", device, p.name)
            cond = self._active.pop(key, None)
            if cond is not None:
                out.append(Condition(
                    "plan_saturation", device, p.name, False, cond.severity, ts,
                    f"{_what(cond)}: the port's binding changed",
                    {"reason": "inventory changed"}, cond.subscriber))
        if sid != p.subscriber or not plan:
            p.plan = Run()
        p.subscriber, p.plan_bps = sid, plan

    def _plan(self, device: str, p: _Port, t: int, rate: float, ts: float,
              out: list[Condition]) -> None:
        pc = self.config.plan_saturation
        pct = rate * 100.0 / p.plan_bps
        r = p.plan
        ev: Evidence = {
            "utilization_pct": round(pct, 2), "rate_bps": round(rate),
            "plan_bps": round(p.plan_bps), "direction": "out", "samples": r.n,
            "window_s": round(r.window, 1),
            "threshold_pct": pc.high_pct if t == RAISE else pc.low_pct}
        sid = p.subscriber
        if t == RAISE:
            summary = (f"{sid} uses {pct:.0f}% of a {_bps(p.plan_bps)} plan on {p.name} for "
                       f"{_duration(r.window)}")
        else:
            summary = f"{sid} back below {pc.low_pct:g}% of the plan ({pct:.0f}%)"
        self._emit("plan_saturation", device, p.name, t == RAISE, pc.severity, ts, summary, ev,
                   out, sid)

    # --- observations ---------------------------------------------------------------

    def _baseline(self, obs: Observation) -> list[Condition]:
        value = obs.value
        if isinstance(value, str):
            return []
        loss = obs.name == LOSS_RATIO
        if loss and value >= 1.0:
            return []  # nothing answered: an outage, which is not the detectors' business
        cfg = self.config.packet_loss if loss else self.config.latency
        if not cfg.enabled:
            return []
        dev = self._devices.get(obs.device) or self._device(obs.device)
        dev.ts = obs.ts
        key = (obs.name, obs.instance)
        b = dev.targets.get(key)
        if b is None:
            b = dev.targets[key] = self._new_baseline(loss)
        t = b.step(float(value), obs.ts, cfg, judge_cold=loss)
        if not t:
            return []
        kind: ConditionKind = "packet_loss" if loss else "latency"
        target = obs.instance or obs.device
        ev: Evidence = {
            "metric": obs.name, "value": value, "baseline_mean": round(b.mean, 4),
            "mad": round(b.mad, 4), "k": cfg.k, "threshold": round(b.threshold, 4),
            "samples": cfg.raise_samples if t == RAISE else cfg.clear_samples}
        if t == RAISE:
            summary = (f"{target} loss {value * 100:.1f}% (baseline {b.mean * 100:.1f}%)" if loss
                       else f"{target} RTT {value:.1f} ms (baseline {b.mean:.1f} ms)")
        elif b.n == 0:
            ev["outcome"] = "rebaselined"
            summary = f"{target} {obs.name} of {value:g} taken as the new normal"
        else:
            summary = (f"{target} loss back to {value * 100:.1f}%" if loss
                       else f"{target} RTT back to {value:.1f} ms")
        out: list[Condition] = []
        self._emit(kind, obs.device, obs.instance, t == RAISE, cfg.severity, obs.ts, summary,
                   ev, out)
        return out

    def _new_baseline(self, loss: bool) -> Baseline:
        if loss:
            return Baseline(self._config.packet_loss.threshold, 0.0)
        return Baseline(0.0, self._config.latency.min_delta_ms)

    def _optical(self, obs: Observation) -> list[Condition]:
        oc = self.config.optical_power
        value = obs.value
        if not oc.enabled or isinstance(value, str):
            return []
        dev = self._devices.get(obs.device) or self._device(obs.device)
        dev.ts = obs.ts
        channel = obs.labels.get("channel")
        instance = obs.instance if channel is None else f"{obs.instance} lane {channel}"
        ont = obs.name == ONT_RX_DBM
        low, high = (oc.ont_low_dbm, oc.ont_high_dbm) if ont else \
            (oc.optics_low_dbm, oc.optics_high_dbm)
        s = dev.optics.get(instance)
        if s is None:
            s = dev.optics[instance] = Streak()
        m = oc.margin_db
        t = s.step(value < low or value > high, low + m <= value <= high - m,
                   oc.raise_samples, oc.clear_samples)
        if not t:
            return []
        ev: Evidence = {
            "metric": obs.name, "value_dbm": value, "low_dbm": low, "high_dbm": high,
            "margin_db": m, "samples": oc.raise_samples if t == RAISE else oc.clear_samples}
        what = "ONT " if ont else ""
        if t == RAISE:
            ev["problem"] = "low" if value < low else "overload"
            limit = f"below {low:g}" if value < low else f"above {high:g}"
            summary = f"{what}{instance} receives {value:.1f} dBm ({limit} dBm)"
        else:
            summary = f"{what}{instance} receives {value:.1f} dBm again"
        out: list[Condition] = []
        self._emit("optical_power", obs.device, instance, t == RAISE, oc.severity, obs.ts,
                   summary, ev, out)
        return out

    # --- conditions -----------------------------------------------------------------

    def _emit(self, kind: ConditionKind, device: str, instance: str, active: bool,
              severity: str, ts: float, summary: str, evidence: Evidence,
              out: list[Condition], subscriber: str | None = None) -> None:
        key = (kind, device, instance)
        if active == (key in self._active):
            return  # never the same state twice (a forgotten device's detector, say)
        cond = Condition(kind, device, instance, active, severity, ts, summary, evidence,
                         subscriber)
        if active:
            self._active[key] = cond
        else:
            raised = self._active.pop(key)
            if cond.subscriber is None:
                cond = Condition(kind, device, instance, False, severity, ts, summary, evidence,
                                 raised.subscriber)
        out.append(cond)


def _number(evidence: Mapping[str, float | int | str], key: str) -> float | None:
    value = evidence.get(key)
    return float(value) if isinstance(value, int | float) else None


def _what(cond: Condition) -> str:
    where = cond.instance or cond.device
    return f"{cond.kind.replace('_', ' ')} on {where}"


def _bps(bps: float) -> str:
    for unit, scale in (("Tb/s", 1e12), ("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} b/s"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


