"""Condition incidents: the part of the correlator that turns what the detectors
(``correlator.detection``) and the state watch (``correlator.conditions``: BGP sessions,
ONTs) find into incidents, folds them into outages, and opens ``repeated_failures``.

``ConditionIncidents`` is a mixin of ``correlator.engine.Correlator``: it works on the
correlator's open incidents, store, judge and fault state (declared below), and keeps
its own few tables. Roots are ``cond:<kind>:...`` keys, which the topology analysis
never produces, so the two halves never claim the same incident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from correlator.conditions import (
    Finding,
    StateWatch,
    condition_root,
    degraded_impact,
    from_condition,
    is_condition_root,
)
from correlator.config import ChurnConfig
from correlator.detection import Condition, ConditionKind, DetectionConfig, Detectors
from correlator.incidents import (
    Incident,
    IncidentEvent,
    TimelineEntry,
    compute_impact,
    evidence_text,
)
from correlator.inventory import Inventory
from correlator.judgement import Judge
from correlator.store import IncidentStore
from correlator.topology import Analysis, device_root, link_root
from correlator.watch_store import WatchStore, watch_path

if TYPE_CHECKING:
    from correlator.damping import Damper
    from correlator.engine import PortState, Stats

log = logging.getLogger(__name__)

# kinds whose state the correlator watches itself (StateWatch), not the detectors
STATE_KINDS = frozenset({"bgp_session_down", "ont_down"})
# kinds whose detector, after a restart, resumes raised from the open incident's evidence
# (Detectors.resume): the baseline kinds instead of learning the degraded level as the
# normal, the others instead of waiting out raise_after_s again
RESUMED_KINDS = frozenset({"latency", "packet_loss", "usage_change", "congestion", "errors",
                           "plan_saturation"})


class ConditionIncidents:
    """Condition incidents, mixed into ``Correlator``."""

    # the correlator's, used here
    open: dict[str, Incident]
    store: IncidentStore
    judge: Judge
    churn: ChurnConfig
    detection: DetectionConfig
    stats: Stats
    clock: Callable[[], float]
    down_devices: set[str]
    down_ports: set[tuple[str, str]]
    ports: dict[tuple[str, str], PortState]
    reachable: dict[str, bool]
    pending: dict[str, float]
    recheck: set[str]
    damper: Damper
    _inventory: Inventory
    _analysis: Analysis

    def _init_conditions(self, inventory: Inventory, state_hold_down: float,
                         event_sources: frozenset[str], recheck: float) -> None:
        self.detectors = Detectors(self.detection, inventory)
        self.watch = StateWatch(inventory, state_hold_down, event_sources)
        self.condition_recheck = recheck
        self._unconfirmed: dict[str, float] = {}  # root -> resolved unless raised again by
        self._folding: dict[str, tuple[str, ...]] = {}  # outage root -> conditions it explains
        self._held: dict[str, Finding] = {}  # raised while their outage is held down
        self._forgotten: set[str] = set()  # down devices whose detectors forgot them
        self._forgotten_ports: set[tuple[str, str]] = set()  # down ports, the same
        self._resumed: set[str] = set()  # restored roots their detector took up again
        self._removed: list[IncidentEvent] | None = None  # for the next tick: _drop_removed

    def _restore_condition(self, inc: Incident, now: float) -> None:
        """An open incident from the store, at start."""
        if inc.kind in STATE_KINDS:
            self.watch.restore(inc)
        elif is_condition_root(inc.root) and inc.kind != "repeated_failures":
            self._unconfirmed[inc.root] = now + self.condition_recheck
            if inc.kind in RESUMED_KINDS and self.detectors.resume(Condition(
                    cast(ConditionKind, inc.kind), inc.device, inc.port or "", True,
                    inc.severity, inc.opened_at, inc.summary, inc.evidence, inc.subscriber)):
                self._resumed.add(inc.root)

    def _opened(self, inc: Incident, now: float, events: list[IncidentEvent]) -> None:
        raise NotImplementedError  # the correlator's: record, persist, tell

    def _found(self, found: Iterable[Condition | Finding], events: list[IncidentEvent]) -> None:
        now = self.clock()
        counts = self.stats.detections
        for item in found:
            f = from_condition(item) if isinstance(item, Condition) else item
            if f.active:
                counts[f.kind, "raised"] = counts.get((f.kind, "raised"), 0) + 1
                self._raise(f, now, events)
            else:
                if f.kind not in STATE_KINDS or f.root in self.open:
                    counts[f.kind, "cleared"] = counts.get((f.kind, "cleared"), 0) + 1
                self._clear(f, now, events)

    def _outage_of(self, device: str, ports: Iterable[str]) -> str | None:
        """The root key of the outage that explains trouble on ``device`` (or on these
        of its ports): ``""`` while that outage is not analysed yet, None when the
        device and the ports are up. The outage may still be held down (not open)."""
        a = self._analysis
        keys: list[str] = []
        if device in self.down_devices or device in a.cut_off:
            keys.append(device_root(device))
        for port in ports:
            if (device, port) in self.down_ports:
                keys.append(link_root(device, port))
        if not keys:
            return None
        for key in keys:
            if key in a.symptoms:
                return key
        for root, symptoms in a.symptoms.items():
            if any(k in symptoms for k in keys):
                return root
        for root, devices in a.affected_devices.items():
            if device in devices:
                return root
        return ""

    def _folds(self) -> dict[str, tuple[str, ...]]:
        """Outage root -> the open condition incidents it explains."""
        out: dict[str, list[str]] = {}
        for root, inc in self.open.items():
            if is_condition_root(root) and inc.kind != "repeated_failures":
                owner = self._outage_of(inc.device, _fold_ports(inc))
                if owner:
                    out.setdefault(owner, []).append(root)
        return {k: tuple(v) for k, v in out.items()}

    def _fold(self, inc: Incident, owner: Incident, now: float,
              events: list[IncidentEvent]) -> None:
        """A condition on an element that an outage took down: part of the outage now."""
        del self.open[inc.root]
        self._unconfirmed.pop(inc.root, None)
        self._resumed.discard(inc.root)
        text = f"now a symptom of {owner.id} ({owner.title}); it was: {inc.summary}"
        closed = replace(inc, state="merged", merged_into=owner.id, resolved_at=now,
                         updated_at=now, timeline=(*inc.timeline, TimelineEntry(now, text)))
        self.store.save(closed)
        self.store.forget_hits(inc.id)  # its subscribers count with the outage
        log.info("incident merged incident=%s into=%s", inc.id, owner.id)
        events.append(IncidentEvent("merged", closed, now))
        self._forget_down(inc.device, (inc.port,) if inc.port else ())

    def _forget_dead(self) -> None:
        """Devices and ports whose outage incident is open: their detectors forget them
        (a baseline or a counter from before the outage means nothing after it, and a
        condition raised before it, now part of the outage, must be raised afresh when
        the element is back)."""
        self._forgotten &= self.down_devices
        for dev in self.down_devices:
            if dev not in self._forgotten:
                owner = self._outage_of(dev, ())
                if owner and owner in self.open:
                    self._forget_device(dev)
                    self._forgotten.add(dev)
        self._forgotten_ports &= self.down_ports
        for dev, port in self.down_ports:
            if (dev, port) not in self._forgotten_ports:
                owner = self._outage_of(dev, (port,))
                if owner and owner in self.open:
                    self._forget_port(dev, port)
                    self._forgotten_ports.add((dev, port))

    def _forget_down(self, device: str, ports: Iterable[str]) -> None:
        """A condition on ``device`` (or these of its ports) is part of an open outage:
        the detectors of what is down forget it."""
        if device in self.down_devices:
            self._forget_device(device)
            return
        for port in ports:
            if (device, port) in self.down_ports:
                self._forget_port(device, port)

    def _forget_port(self, device: str, port: str) -> None:
        """The port is down: its detectors start afresh when it is back."""
        self._count_cleared(self.detectors.forget_port(device, port))

    def _forget_device(self, device: str) -> None:
        """The device is down: its detectors start afresh when it is back."""
        self._count_cleared(self.detectors.forget(device))

    def _count_cleared(self, conditions: Iterable[Condition]) -> None:
        counts = self.stats.detections
        for c in conditions:
            counts[c.kind, "cleared"] = counts.get((c.kind, "cleared"), 0) + 1

    def _drop_removed(self) -> None:
        """Forget the devices the inventory no longer has (a reload, or a restart with a
        new inventory): their fault, watch, detector and hold-down state goes, and their
        open incidents resolve -- nothing would ever clear them, as their observations
        are no longer taken. The events go out with the next ``tick``."""
        known = self._inventory.devices
        refs = {*self.down_devices, *self.reachable, *self.recheck,
                *(d for d, _ in self.down_ports), *(d for d, _ in self.ports),
                *(_device_of(root) for root in self.pending),
                *(f.device for f in self._held.values()), *self.watch.devices(),
                *self.detectors.devices(),
                *(i.device for i in self.open.values() if i.kind != "repeated_failures")}
        removed = {d for d in refs if d not in known}
        if not removed:
            return
        now = self.clock()
        events = self._removed = self._removed or []
        log.warning("devices removed from the inventory: %s; their state is dropped and "
                    "their open incidents resolve", ", ".join(sorted(removed)))
        self.down_devices -= removed
        self.down_ports = {k for k in self.down_ports if k[0] not in removed}
        self.recheck -= removed
        self._forgotten -= removed
        self._forgotten_ports = {k for k in self._forgotten_ports if k[0] not in removed}
        for key in [k for k in self.ports if k[0] in removed]:
            del self.ports[key]
        for dev in removed:
            self.reachable.pop(dev, None)
            self._forget_device(dev)
        self.pending = {r: t for r, t in self.pending.items() if _device_of(r) not in removed}
        self._held = {r: f for r, f in self._held.items() if f.device not in removed}
        self.watch.forget(removed)
        for inc in [i for i in self.open.values()
                    if i.device in removed and i.kind != "repeated_failures"]:
            self.damper.release(inc.root, now)
            self._resolve(inc, now, f"{inc.device} removed from the inventory: no longer "
                          "watched", events, closed_by="inventory")

    def _start_conditions(self) -> None:
        """At the end of the correlator's start: the state watch takes up what it kept
        (``watch.db`` beside the incident store), then the state and incidents of
        devices the inventory no longer has go."""
        self.watch.attach(WatchStore(watch_path(self.store.path)))
        self._drop_removed()

    def _tick_conditions(self, events: list[IncidentEvent]) -> bool:
        """Each ``tick``: save what the state watch learnt, and deliver the events of
        ``_drop_removed``; True after a removal (the fault state changed: reconcile)."""
        self.watch.flush()
        if self._removed is None:
            return False
        events.extend(self._removed)
        self._removed = None
        return True

    def _raise(self, f: Finding, now: float, events: list[IncidentEvent]) -> None:
        if f.device not in self._inventory.devices:  # removed by a reload meanwhile
            log.info("condition dropped kind=%s device=%s: not in the inventory", f.kind,
                     f.device)
            return
        if f.root in self.open:
            self._unconfirmed.pop(f.root, None)  # raised again after a restart
            return
        owner_key = self._outage_of(f.device, f.fold_ports)
        if owner_key is not None:
            self.stats.folded += 1
            if owner_key in self.open:
                if f.kind not in STATE_KINDS:
                    self._forget_down(f.device, f.fold_ports)
            elif f.kind not in STATE_KINDS:
                self._held[f.root] = f  # the outage is held down: wait for its verdict
            return
        inv = self._inventory
        if f.subscribers is not None:
            impact = compute_impact(inv, f.subscribers, (f.device,))
        else:
            impact = degraded_impact(inv, f.device,
                                     f.port if self._is_port(f.device, f.port) else None)
        if impact.service != f.service:
            impact = replace(impact, service=f.service)
        dev = inv.devices[f.device]  # known: checked above
        inc = Incident(
            id=self.store.next_id(), root=f.root, kind=f.kind, device=f.device, port=f.port,
            role=dev.role, site=dev.site, severity=f.severity, state="open", opened_at=now,
            updated_at=now, impact=impact, timeline=(TimelineEntry(now, f.summary),),
            evidence=dict(f.evidence), summary=f.summary, subscriber=f.subscriber,
        )
        inc = self.judge.plan(inc, now)
        inc = self.judge.assess(inc, now, previous=None)
        self._opened(inc, now, events)

    def _is_port(self, device: str, port: str | None) -> bool:
        """Whether an instance names a port we know (else: the device as a whole)."""
        if not port:
            return False
        key = (device, port)
        return (key in self.ports or key in self._inventory.edge_ports
                or bool(self._inventory.subscribers_on(device, port)))

    def _clear(self, f: Finding, now: float, events: list[IncidentEvent]) -> None:
        self._held.pop(f.root, None)
        inc = self.open.get(f.root)
        if inc is None:
            return
        numbers = evidence_text(f.evidence)
        self._resolve(inc, now, f"cleared: {f.summary}" + (f" ({numbers})" if numbers else ""),
                      events)

    def _resolve(self, inc: Incident, now: float, text: str,
                 events: list[IncidentEvent], *, closed_by: str | None = None) -> None:
        del self.open[inc.root]
        self._unconfirmed.pop(inc.root, None)
        self._resumed.discard(inc.root)
        closed = replace(inc, state="resolved", resolved_at=now, updated_at=now,
                         closed_by=closed_by,
                         timeline=(*inc.timeline, TimelineEntry(now, text)))
        closed = self.judge.assess(closed, now, previous=inc.impact)
        self.store.save(closed)
        log.info("incident resolved incident=%s root=%s after=%.0fs", inc.id, inc.root,
                 now - inc.opened_at)
        events.append(IncidentEvent("resolved", closed, now))

    def _skip_state(self, f: Finding) -> bool:
        return f.root in self.open or self._outage_of(f.device, f.fold_ports) is not None

    def _release_held(self, now: float, events: list[IncidentEvent]) -> None:
        """Conditions raised while their element's outage was held down: the outage
        opened (they are its symptoms: dropped) or did not (they open now)."""
        for root, f in list(self._held.items()):
            owner_key = self._outage_of(f.device, f.fold_ports)
            if owner_key is None:
                del self._held[root]
                self._raise(f, now, events)
            elif owner_key in self.open:
                del self._held[root]
                self._forget_down(f.device, f.fold_ports)

    def _expire_unconfirmed(self, now: float, events: list[IncidentEvent]) -> None:
        """Condition incidents restored at start that nothing confirmed within
        ``condition_recheck``: resolved. A detector that resumed raised
        (``RESUMED_KINDS``) confirms by having samples at all -- it then clears the
        incident only on samples back to normal; one that did not (optical power, or
        evidence without the numbers) by raising again."""
        for root, deadline in list(self._unconfirmed.items()):
            if now < deadline:
                continue
            del self._unconfirmed[root]
            inc = self.open.get(root)
            if inc is None:
                continue
            if root in self._resumed:
                self._resumed.discard(root)
                if self.detectors.sampled(inc.kind, inc.device, inc.port or ""):
                    continue  # measured: its detector decides when it is over
                text = "no measurements of it"
            else:
                text = "not raised again"
            self._resolve(inc, now, f"{text} within {self.condition_recheck:.0f}s of a "
                          "restart: resolved", events)

    def _repeats(self, inc: Incident, now: float, events: list[IncidentEvent]) -> None:
        """Subscribers this incident brought to churn.repeat_threshold incidents within
        churn.window_days: one ``repeated_failures`` incident each (at most
        churn.repeat_incidents per incident)."""
        subs = inc.impact.repeat_subscribers
        if (not subs or inc.kind in ("repeated_failures", "flapping")
                or self.churn.repeat_incidents == 0):  # flapping says "again" already
            return
        new = [s for s in subs
               if condition_root("repeated_failures", "", subscriber=s) not in self.open]
        if not new:
            return
        if len(new) > self.churn.repeat_incidents:
            log.info("repeated failures not opened incident=%s subscribers=%d limit=%d "
                     "(see impact.repeat_subscribers)", inc.id, len(new),
                     self.churn.repeat_incidents)
            return
        inv = self._inventory
        window = self.churn.window_days
        threshold = self.churn.repeat_threshold
        counts = self.stats.detections
        for sid in new:
            rec = inv.subscribers.get(sid)
            if rec is None:
                continue
            ids = self.store.incidents_hitting(sid, since=now - window * 86_400.0)
            dev = inv.devices.get(rec.device)
            summary = (f"subscriber {sid} hit by {len(ids)} incidents in {window:g} days "
                       f"(threshold {threshold})")
            rep = Incident(
                id=self.store.next_id(),
                root=condition_root("repeated_failures", "", subscriber=sid),
                kind="repeated_failures", device=rec.device, port=rec.port,
                role=dev.role if dev else "other", site=dev.site if dev else None,
                severity="minor", state="open", opened_at=now, updated_at=now,
                impact=replace(compute_impact(inv, [sid], ()), service="degraded"),
                timeline=(TimelineEntry(now, summary),), summary=summary, subscriber=sid,
                evidence={"incidents": len(ids), "threshold": threshold,
                          "window_days": window, "incident_ids": ",".join(ids),
                          "latest": inc.id},
            )
            counts["repeated_failures", "raised"] = counts.get(
                ("repeated_failures", "raised"), 0) + 1
            self._opened(self.judge.assess(rep, now, previous=None), now, events)

    def _repeats_ended(self, now: float, events: list[IncidentEvent]) -> None:
        """Resolve ``repeated_failures`` incidents whose window slid below the threshold."""
        since = now - self.churn.window_days * 86_400.0
        counts = self.stats.detections
        for inc in [i for i in self.open.values() if i.kind == "repeated_failures"]:
            sid = inc.subscriber or ""
            n = self.store.hit_counts([sid], since=since).get(sid, 0)
            if n < self.churn.repeat_threshold:
                counts["repeated_failures", "cleared"] = counts.get(
                    ("repeated_failures", "cleared"), 0) + 1
                self._resolve(inc, now, f"{n} incident(s) in the last "
                              f"{self.churn.window_days:g} days, below the threshold of "
                              f"{self.churn.repeat_threshold}", events)


def _device_of(root: str) -> str:
    """The device of an outage root key (``device:<d>``, ``link:<d>:<port>``)."""
    return root.split(":", 2)[1]


def _fold_ports(inc: Incident) -> tuple[str, ...]:
    """The ports of its device whose going down explains a condition incident."""
    pon = inc.evidence.get("pon_port")
    if isinstance(pon, str):
        return (pon,)
    return (inc.port,) if inc.port else ()


__all__ = ["STATE_KINDS", "ConditionIncidents"]
