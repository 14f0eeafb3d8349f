"""From Observations to incidents: detection, root cause, impact and lifecycle.

``Correlator.observe`` is synchronous and I/O-light (one small SQLite write per incident
change): the collector calls it with each batch of observations from the bus. Judgement
(planned, churn history, priority) runs only when an incident opens, changes scope or
closes; flap damping is O(1) per state change. ``tick`` (about once a second) opens
incidents whose hold-down has passed, releases elements that stopped flapping, expires
silences and notices maintenance that ended under an open incident.

Beyond up/down, ``correlator.detection`` raises conditions (congestion, errors, optical
power, latency, loss, usage change, plan saturation) from the counters and measurements
passed to ``observe`` and ``observe_counters``, and ``correlator.conditions`` watches BGP
sessions and ONTs: each raised condition opens an incident of its own kind (root key
``cond:...``), its clearing resolves it. An outage explains what happens on a dead
element: a condition on a device that is unreachable (or cut off, or on a port that is
down) is not opened, and an open one merges into the outage's incident.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from correlator.condition_incidents import ConditionIncidents
from correlator.conditions import Finding, is_condition_root
from correlator.config import ChurnConfig, DampingConfig, PriorityConfig
from correlator.damping import Damper, ElementFlaps
from correlator.detection import Condition, DetectionConfig
from correlator.incidents import (
    FlapInfo,
    Impact,
    Incident,
    IncidentEvent,
    TimelineEntry,
    compute_impact,
)
from correlator.inventory import Inventory
from correlator.judgement import Judge
from correlator.maintenance import MaintenanceWindow
from correlator.silences import Maintenance, MaintenanceEvent
from correlator.store import IncidentStore
from correlator.topology import Analyser, Analysis, device_root, link_root
from probes.types import (
    BGP_PEER_STATE,
    DEVICE_RESTARTED,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_IN_OCTETS,
    IF_OPER_STATUS,
    IF_OUT_OCTETS,
    JITTER_MS,
    LOSS_RATIO,
    ONT_RX_DBM,
    ONT_STATE,
    OPTICAL_RX_DBM,
    REACHABLE,
    RTT_MS,
    STATUS_NAMES,
    STATUS_UP,
    InterfaceCounters,
    Observation,
)

log = logging.getLogger(__name__)

# Sources that report transitions as they happen (rather than state on a schedule): their
# "down" is news even for a port never seen before.
EVENT_SOURCES = frozenset({"trap", "syslog", "gnmi"})

_SEVERITY = {"core": "critical", "aggregation": "critical", "access": "major"}
_SWEEP_EVERY = 60.0  # seconds between sweeps of the damper's quiet elements
_PRUNE_EVERY = 3600.0  # seconds between prunes of the subscriber incident history
# measurements the detectors judge (correlator.detection); DEVICE_RESTARTED goes there too
_DETECTED = frozenset({RTT_MS, LOSS_RATIO, JITTER_MS, OPTICAL_RX_DBM, ONT_RX_DBM,
                       IF_IN_OCTETS, IF_OUT_OCTETS, IF_IN_ERRORS, IF_IN_FCS_ERRORS})
_WATCHED = frozenset({BGP_PEER_STATE, ONT_STATE})  # correlator.conditions.StateWatch


@dataclass(slots=True)
class PortState:
    oper: int
    admin_up: bool


@dataclass(slots=True)
class Stats:
    observations: int = 0
    unknown_device: int = 0
    faults: int = 0
    damped: int = 0  # state changes of flapping elements, counted but not correlated
    # (kind, "raised" | "cleared") -> conditions found, whether or not they became incidents
    detections: dict[tuple[str, str], int] = field(default_factory=dict)
    folded: int = 0  # raised conditions on elements an outage already explains


class Correlator(ConditionIncidents):
    """Keeps device and port state, and the open incidents that explain it (conditions:
    see ``ConditionIncidents``)."""

    def __init__(
        self,
        inventory: Inventory,
        store: IncidentStore,
        *,
        clock: Callable[[], float] = time.time,
        hold_down: float = 0.0,
        priority: PriorityConfig | None = None,
        churn: ChurnConfig | None = None,
        damping: DampingConfig | None = None,
        windows: Iterable[MaintenanceWindow] = (),
        max_silence: float = 7 * 86_400.0,
        on_notice: Callable[[MaintenanceEvent], None] | None = None,
        detection: DetectionConfig | None = None,
        state_hold_down: float | None = None,
        condition_recheck: float = 3600.0,
    ) -> None:
        """``hold_down``: seconds an unreachable device (or a link between two devices) must
        stay so before its incident opens, so that the faults of a failing neighbourhood,
        which arrive from different polls, are attributed to the right root before anyone
        is told. Customer-facing ports open at once (or after ``damping.port_hold_down``).

        ``windows`` (from ``load_maintenance``) and the silences in ``store`` make
        incidents planned; ``on_notice`` hears about silences created and expired.
        ``self.maintenance`` is the maintenance API (windows, silences).

        ``detection``: the detectors' thresholds; ``state_hold_down``: how long a BGP
        session or an ONT must stay down before its incident opens (default
        ``hold_down``); ``condition_recheck``: after a restart, seconds within which a
        detector must raise an open condition again (a baseline kind: have a sample of
        it), else its incident resolves."""
        self._inventory = inventory
        self._analyser = Analyser(inventory)  # root causes and impacts, incrementally
        self._analysis = Analysis()  # the latest one
        self.hold_down = hold_down
        self.damping = damping or DampingConfig()
        self.damper = Damper(self.damping)
        self.maintenance = Maintenance(inventory, store, windows=windows, clock=clock,
                                       max_silence=max_silence, on_event=on_notice)
        self.churn = churn or ChurnConfig()
        self.judge = Judge(inventory, store, self.maintenance,
                           priority=priority or PriorityConfig(), churn=self.churn)
        self.detection = detection or DetectionConfig()
        self._init_conditions(inventory, hold_down if state_hold_down is None
                              else state_hold_down, EVENT_SOURCES, condition_recheck)
        self._dirty = False  # a damped change: reconcile without a note
        self._seen_maintenance = self.maintenance.version
        self._next_plan_check = math.inf  # when the first planned incident's cover ends
        self._next_sweep = 0.0
        self._next_prune = 0.0
        self.pending: dict[str, float] = {}  # root key -> first seen, while held down
        self.recheck: set[str] = set()  # cut-off devices to confirm after their parent returned
        self._notes: list[TimelineEntry] = []
        self.store = store
        self.clock = clock
        self.stats = Stats()
        self.reachable: dict[str, bool] = {}
        self.ports: dict[tuple[str, str], PortState] = {}
        self.down_devices: set[str] = set()
        self.down_ports: set[tuple[str, str]] = set()
        self.open: dict[str, Incident] = {}  # root key -> incident
        now = clock()
        for inc in store.open_incidents():
            self.open[inc.root] = inc
            keys: Sequence[str] = (inc.root, *inc.symptoms)
            if inc.kind == "flapping" and inc.flap is not None:
                self.damper.restore(inc.root, now, transitions=inc.flap.transitions,
                                    first=inc.flap.since, down=inc.flap.state == "down")
                if inc.flap.state != "down":
                    keys = ()  # its (sticky) symptoms are history, not current state
            for key in keys:
                self._seed(key)
            if inc.planned and inc.planned_until is not None:
                self._next_plan_check = min(self._next_plan_check, inc.planned_until)
            self._restore_condition(inc, now)
        self._start_conditions()  # the state watch's store; devices no longer there

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    @inventory.setter
    def inventory(self, inv: Inventory) -> None:
        """A new inventory (reload): every part that looks things up in it gets it; the
        state of devices it no longer has goes (``_drop_removed``)."""
        self._inventory = inv
        self.judge.inventory = inv
        self.maintenance.inventory = inv
        self.detectors.inventory = inv
        self.watch.inventory = inv
        self._analyser = Analyser(inv)
        self._drop_removed()

    def _seed(self, key: str) -> None:
        """Restore fault state from a persisted incident until observations say otherwise."""
        kind, _, rest = key.partition(":")
        if kind == "device":
            self.down_devices.add(rest)
        elif kind == "link":
            device, _, port = rest.partition(":")
            self.down_ports.add((device, port))

    # --- detection -----------------------------------------------------------------------

    def observe(self, batch: Iterable[Observation]) -> list[IncidentEvent]:
        changed: list[str] = []
        found: list[Condition | Finding] = []
        self._dirty = False
        devices = self._inventory.devices
        detect = self.detection.enabled
        stats = self.stats
        for obs in batch:
            stats.observations += 1
            if obs.device not in devices:
                stats.unknown_device += 1
                continue
            name = obs.name
            note = None
            if name in _DETECTED:
                if detect:
                    found.extend(self.detectors.observe(obs))
            elif name == REACHABLE:
                note = self._reachability(obs)
            elif name == IF_OPER_STATUS:
                note = self._oper_status(obs)
            elif name in _WATCHED:
                if (f := self.watch.observe(obs, self.clock())) is not None:
                    found.append(f)
            elif name == DEVICE_RESTARTED:
                log.info("device restarted device=%s uptime=%s", obs.device, obs.value)
                if detect:
                    found.extend(self.detectors.observe(obs))
            if note:
                stats.faults += 1
                changed.append(note)
        events = self._reconcile(changed) if changed or self._dirty else []
        if found:
            self._found(found, events)
        return events

    def observe_counters(
        self, device: str, counters: InterfaceCounters, ts: float
    ) -> list[IncidentEvent]:
        """One device's interface table from a poll (SNMP): rates, utilization, errors."""
        if not self.detection.enabled or device not in self._inventory.devices:
            return []
        found = self.detectors.counters(device, counters, ts)
        if not found:
            return []
        events: list[IncidentEvent] = []
        self._found(list(found), events)
        return events

    def tick(self) -> list[IncidentEvent]:
        """Open incidents whose hold-down has passed, resolve flapping that has calmed
        down, expire silences, and re-check planned incidents whose maintenance ended.
        Call about once a second."""
        now = self.clock()
        events: list[IncidentEvent] = []
        again = bool(self.pending)
        if self.damper.suppressed:
            again |= self._release_stable(now, events)
        self.maintenance.expire_due(now)
        if self.maintenance.version != self._seen_maintenance or now >= self._next_plan_check:
            self._replan(now, events)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.damper.sweep(now)
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY
            self.store.prune_hits(now - self.churn.window_days * 86_400.0)
            self._repeats_ended(now, events)
        again |= self._tick_conditions(events)
        if again:
            events.extend(self._reconcile([]))
        if self.watch.pending:
            due = self.watch.due(now, self._skip_state)
            if due:
                self._found(due, events)
        if self._held:
            self._release_held(now, events)
        if self._unconfirmed:
            self._expire_unconfirmed(now, events)
        return events

    # --- flap damping --------------------------------------------------------------------

    def _changed(self, root: str, *, down: bool, note: str) -> str | None:
        """A state change of an element: the note to correlate, or None when damped."""
        if not self.damping.enabled:
            return note
        now = self.clock()
        was = root in self.damper.suppressed
        st = self.damper.record(root, now, down=down)
        if was:
            self.stats.damped += 1
            self._flap_progress(root, st, now)
            self._dirty = True
            return None
        if st.suppressed:
            log.warning("element flapping element=%s transitions=%d window=%.0fs", root,
                        st.transitions, st.window)
        return note

    def _flap_progress(self, root: str, st: ElementFlaps, now: float) -> None:
        """Count one more change on the element's flapping incident: no event."""
        inc = self.open.get(root)
        if inc is None or inc.kind != "flapping":
            return
        inc = replace(inc, flap=_flap_info(st), updated_at=now)
        self.open[root] = inc
        self.store.save(inc)

    def _is_down(self, root: str) -> bool:
        kind, _, rest = root.partition(":")
        if kind == "device":
            return rest in self.down_devices
        device, _, port = rest.partition(":")
        return (device, port) in self.down_ports

    def _release_stable(self, now: float, events: list[IncidentEvent]) -> bool:
        """Resolve the flapping incidents of elements stable long enough; True when one
        of them is stable *down* (a plain incident takes over: reconcile)."""
        again = False
        for root in self.damper.due(now):
            st = self.damper.get(root)
            flap = _flap_info(st) if st is not None else None
            self.damper.release(root, now)
            inc = self.open.get(root)
            if inc is None or inc.kind != "flapping":
                continue
            down = self._is_down(root)
            flap = flap or inc.flap
            n = flap.transitions if flap else 0
            text = (f"no longer flapping: stable {'down' if down else 'up'} for "
                    f"{self.damping.stable_for:.0f}s after {n} state changes")
            if down:
                text += "; an incident for the outage takes over"
            closed = replace(inc, state="resolved", resolved_at=now, updated_at=now, flap=flap,
                             timeline=(*inc.timeline, TimelineEntry(now, text)))
            closed = self.judge.assess(closed, now, previous=inc.impact)
            del self.open[root]
            self.store.save(closed)
            log.info("flapping resolved incident=%s root=%s transitions=%d stable=%s", inc.id,
                     root, n, "down" if down else "up")
            events.append(IncidentEvent("resolved", closed, now))
            if down:
                again = True
                hold = self._hold_for(root)
                if hold > 0:
                    self.pending[root] = now - hold  # down long enough: no second hold-down
        return again

    # --- maintenance ---------------------------------------------------------------------

    def _replan(self, now: float, events: list[IncidentEvent]) -> None:
        """Planned incidents whose windows or silences ended (or changed): still covered,
        or no longer planned (an update, so that customers can now be told)."""
        self._seen_maintenance = self.maintenance.version
        nxt = math.inf
        for root, inc in list(self.open.items()):
            if not inc.planned:
                continue
            upd, dropped = self.judge.keep_plan(inc, now)
            if dropped:
                upd = replace(upd, updated_at=now, revision=inc.revision + 1)
                log.info("incident no longer planned incident=%s was=%s", inc.id,
                         ",".join(inc.planned_by))
                events.append(IncidentEvent("updated", upd, now))
            if upd != inc:
                self.open[root] = upd
                self.store.save(upd)
            if upd.planned and upd.planned_until is not None:
                nxt = min(nxt, upd.planned_until)
        self._next_plan_check = nxt

    def _reachability(self, obs: Observation) -> str | None:
        up = bool(obs.value)
        dev = obs.device
        self.reachable[dev] = up
        if dev in self.recheck:
            self.recheck.discard(dev)
            if up:
                return None  # came back with its parent: nothing to tell
        if up and dev in self.down_devices:
            self.down_devices.discard(dev)
            self._recheck_below(dev)
            return self._changed(device_root(dev), down=False, note=f"{dev} answers again")
        if not up and dev not in self.down_devices:
            self.down_devices.add(dev)
            reason = obs.labels.get("reason", "no answer")
            return self._changed(device_root(dev), down=True,
                                 note=f"{dev} stopped answering {obs.source} ({reason})")
        return None

    def _recheck_below(self, dev: str) -> None:
        """A device is back: the devices it had cut off are probably back too. Treat them
        as up until their next poll confirms either way, instead of opening an incident
        for each of them now (no recovery storm)."""
        stack = [dev]
        seen = {dev}
        while stack:
            for child, _ in self.inventory.children.get(stack.pop(), ()):
                if child in seen:
                    continue
                seen.add(child)
                stack.append(child)
                if child in self.down_devices and device_root(child) not in self.open:
                    self.down_devices.discard(child)
                    self.recheck.add(child)

    def _oper_status(self, obs: Observation) -> str | None:
        key = (obs.device, obs.instance)
        oper = int(obs.value)
        admin_up = obs.labels.get("admin", "up") == "up"
        before = self.ports.get(key)
        self.ports[key] = PortState(oper, admin_up)
        is_down = admin_up and oper != STATUS_UP
        status = STATUS_NAMES.get(oper, str(oper))
        if key in self.down_ports:
            if not is_down:
                self.down_ports.discard(key)
                why = "up" if admin_up else "administratively down"
                return self._changed(link_root(*key), down=False,
                                     note=f"{obs.device} {obs.instance} is {why} ({obs.source})")
            return None
        if before is None and obs.source not in EVENT_SOURCES:
            return None  # baseline: a port already down when we start polling is not news
        # an event source (trap, syslog, stream) reports a transition: news even unseen
        was_down = before is not None and before.admin_up and before.oper != STATUS_UP
        if is_down and not was_down:
            self.down_ports.add(key)
            return self._changed(link_root(*key), down=True,
                                 note=f"{obs.device} {obs.instance} went {status} ({obs.source})")
        return None

    # --- root cause and lifecycle ----------------------------------------------------------

    def _reconcile(self, notes: list[str]) -> list[IncidentEvent]:
        now = self.clock()
        if self._analyser.inventory is not self.inventory:  # a new inventory swapped in
            self._analyser = Analyser(self.inventory)
        analyser = self._analyser
        opened_at = {root: inc.opened_at for root, inc in self.open.items()}
        analysis = analyser.analyse(self.down_devices, self.down_ports, opened_at)
        self._analysis = analysis
        self._folding = self._folds()
        events: list[IncidentEvent] = []
        timeline = tuple(TimelineEntry(now, n) for n in notes)
        keep = 2 * max(self.hold_down, self.damping.port_hold_down)
        self._notes = [n for n in self._notes if now - n.ts <= keep] + list(timeline)
        self.pending = {r: t for r, t in self.pending.items() if r in analysis.symptoms}

        # a flapping incident ends only when its element is stable (see tick)
        gone = [root for root, inc in self.open.items()
                if root not in analysis.symptoms and inc.kind != "flapping"
                and not is_condition_root(root)]
        for root in sorted(analysis.symptoms, key=lambda r: (opened_at.get(r, now), r)):
            devices = analysis.affected_devices[root]
            impact = analyser.impact(root, devices)
            symptoms = tuple(sorted(analysis.symptoms[root]))
            inc = self.open.get(root)
            if root in self.damper.suppressed and (inc is None or inc.kind != "flapping"):
                self.pending.pop(root, None)
                self._open_flapping(root, now, symptoms, impact, timeline, inc, events)
            elif inc is None:
                hold = self._hold_for(root)
                if hold > 0:
                    first = self.pending.setdefault(root, now)
                    if now - first < hold:
                        continue
                    del self.pending[root]
                else:
                    first = now
                since = first - max(hold, self.hold_down)
                held = tuple(n for n in self._notes if n.ts >= since) or timeline
                inc = self._new_incident(root, now, symptoms, impact, held)
                inc = self.judge.plan(inc, now)
                inc = self.judge.assess(inc, now, previous=None,
                                        exclude=self._absorbed(symptoms, root))
                self._opened(inc, now, events)
            elif inc.kind == "flapping":
                self._grow_flapping(inc, now, symptoms, impact, events)
            elif inc.symptoms != symptoms or not inc.impact.same_scope(impact):
                self._update(inc, now, symptoms, impact, timeline, events)

        for root in gone:
            owner_key = next((r for r, sy in analysis.symptoms.items() if root in sy), None)
            if owner_key is not None and owner_key not in self.open:
                continue  # its new root is still held down: merge when that one opens
            inc = self.open.pop(root)
            owner = self.open.get(owner_key) if owner_key else None
            if owner is not None:
                # still down, but now explained by a fault upstream: not an all-clear
                closed = replace(
                    inc, state="merged", merged_into=owner.id, resolved_at=now, updated_at=now,
                    timeline=(*inc.timeline,
                              TimelineEntry(now, f"now a symptom of {owner.id} ({owner.title})")),
                )
                log.info("incident merged incident=%s into=%s", inc.id, owner.id)
                events.append(IncidentEvent("merged", closed, now))
                self.store.forget_hits(inc.id)  # its subscribers count with the owner
            else:
                closed = replace(
                    inc, state="resolved", resolved_at=now, updated_at=now,
                    timeline=inc.timeline + timeline + (TimelineEntry(now, "resolved"),),
                )
                closed = self.judge.assess(closed, now, previous=inc.impact)
                log.info("incident resolved incident=%s root=%s after=%.0fs",
                         inc.id, root, now - inc.opened_at)
                events.append(IncidentEvent("resolved", closed, now))
            self.store.save(closed)
        for owner_key, roots in self._folding.items():
            owner = self.open.get(owner_key)
            if owner is None:
                continue  # its outage is still held down: merge when that one opens
            for root in roots:
                self._fold(self.open[root], owner, now, events)
        if self.down_devices or self.down_ports:
            self._forget_dead()
        return events

    def _opened(self, inc: Incident, now: float, events: list[IncidentEvent]) -> None:
        self.open[inc.root] = inc
        self.store.save(inc)
        if inc.planned and inc.planned_until is not None:
            self._next_plan_check = min(self._next_plan_check, inc.planned_until)
        log.warning(
            "incident opened incident=%s root=%s kind=%s subscribers=%d revenue_at_risk=%.2f "
            "symptoms=%d priority=%.2f planned=%s", inc.id, inc.root, inc.kind,
            inc.impact.subscriber_count, inc.impact.revenue_at_risk, len(inc.symptoms),
            inc.priority, inc.planned,
        )
        events.append(IncidentEvent("opened", inc, now))
        self._repeats(inc, now, events)

    def _update(
        self, inc: Incident, now: float, symptoms: tuple[str, ...], impact: Impact,
        timeline: tuple[TimelineEntry, ...], events: list[IncidentEvent],
    ) -> None:
        new = replace(inc, symptoms=symptoms, impact=impact, updated_at=now,
                      revision=inc.revision + 1, timeline=inc.timeline + timeline)
        if new.planned:
            new, _ = self.judge.keep_plan(new, now)
        new = self.judge.assess(new, now, previous=inc.impact,
                                exclude=self._absorbed(symptoms, inc.root))
        self.open[new.root] = new
        self.store.save(new)
        if new.planned and new.planned_until is not None:
            self._next_plan_check = min(self._next_plan_check, new.planned_until)
        log.info("incident updated incident=%s subscribers=%d symptoms=%d priority=%.2f",
                 new.id, impact.subscriber_count, len(symptoms), new.priority)
        events.append(IncidentEvent("updated", new, now))
        self._repeats(new, now, events)

    def _absorbed(self, symptoms: Iterable[str], root: str | None = None) -> tuple[str, ...]:
        """Ids of open incidents about to merge into the one with these symptoms (and
        the conditions that root explains)."""
        out = tuple(self.open[s].id for s in symptoms if s in self.open)
        if root is not None and root in self._folding:
            out += tuple(self.open[r].id for r in self._folding[root])
        return out

    def _open_flapping(
        self, root: str, now: float, symptoms: tuple[str, ...], impact: Impact,
        timeline: tuple[TimelineEntry, ...], replacing: Incident | None,
        events: list[IncidentEvent],
    ) -> None:
        """One incident for a flapping element; the element's own incident, if one is
        open, merges into it."""
        st = self.damper.get(root)
        assert st is not None
        text = (f"flapping: {st.transitions} state changes in {st.window:.0f}s; later changes "
                f"are counted here, and it resolves once stable for "
                f"{self.damping.stable_for:.0f}s")
        base = self._new_incident(root, now, symptoms, impact,
                                  (*timeline, TimelineEntry(now, text)))
        inc = self.judge.plan(replace(base, kind="flapping", flap=_flap_info(st)), now)
        absorbed = self._absorbed(symptoms, root) + ((replacing.id,) if replacing else ())
        inc = self.judge.assess(inc, now, previous=None, exclude=absorbed)
        merged: IncidentEvent | None = None
        if replacing is not None:
            closed = replace(
                replacing, state="merged", merged_into=inc.id, resolved_at=now, updated_at=now,
                timeline=(*replacing.timeline,
                          TimelineEntry(now, f"now part of {inc.id} ({inc.title})")),
            )
            self.store.save(closed)  # first: one open incident per root
            self.store.forget_hits(replacing.id)
            log.info("incident merged incident=%s into=%s", replacing.id, inc.id)
            merged = IncidentEvent("merged", closed, now)
        self._opened(inc, now, events)
        if merged is not None:
            events.append(merged)

    def _grow_flapping(
        self, inc: Incident, now: float, symptoms: tuple[str, ...], impact: Impact,
        events: list[IncidentEvent],
    ) -> None:
        """A flapping incident keeps everything it has hurt in this episode: its scope
        only grows (an update), it never shrinks while the element is up."""
        subs = set(inc.impact.subscribers) | set(impact.subscribers)
        devices = set(inc.impact.devices) | set(impact.devices)
        syms = tuple(sorted(set(inc.symptoms) | set(symptoms)))
        if (len(subs) == len(inc.impact.subscribers) and syms == inc.symptoms
                and len(devices) == len(inc.impact.devices)):
            return
        self._update(inc, now, syms, compute_impact(self.inventory, subs, devices), (), events)

    def _hold_for(self, root: str) -> float:
        """Unreachable devices and links between devices wait out the hold-down: the rest
        of their neighbourhood's faults are on the way. Customer ports open at once, or
        after ``damping.port_hold_down``."""
        kind, _, rest = root.partition(":")
        if kind == "device":
            return self.hold_down
        device, _, port = rest.partition(":")
        if (device, port) in self.inventory.edge_ports:
            return self.hold_down
        return self.damping.port_hold_down

    def _new_incident(
        self, root: str, now: float, symptoms: tuple[str, ...], impact: Impact,
        timeline: tuple[TimelineEntry, ...],
    ) -> Incident:
        kind, _, rest = root.partition(":")
        if kind == "device":
            device, port, fault = rest, None, "device_unreachable"
            role = self.inventory.devices[device].role
            severity = _SEVERITY.get(role, "minor")
        else:
            device, _, port = rest.partition(":")
            fault = "link_down"
            role = self.inventory.devices[device].role
            severity = "major" if impact.devices else "minor"
        return Incident(
            id=self.store.next_id(), root=root, kind=fault, device=device, port=port,
            role=role, site=self.inventory.devices[device].site, severity=severity,
            state="open", opened_at=now, updated_at=now, symptoms=symptoms, impact=impact,
            timeline=timeline,
        )

    def open_incidents(self) -> list[Incident]:
        return sorted(self.open.values(), key=lambda i: i.opened_at)

    def ranked(self) -> list[Incident]:
        """Open incidents, highest priority first (then the earliest opened)."""
        return sorted(self.open.values(), key=lambda i: (-i.priority, i.opened_at, i.id))

    def mark_mitigated(self, incident_id: str, by: str, detail: str,
                       ts: float) -> IncidentEvent | None:
        """A remediation fixed the incident (its verify step saw the element back): note
        who and when on the incident and its timeline. Returns the ``mitigated`` event,
        or None when the incident is unknown, merged or already mitigated."""
        inc = next((i for i in self.open.values() if i.id == incident_id), None)
        if inc is None:
            inc = self.store.get(incident_id)
        if inc is None or inc.state == "merged" or inc.mitigated_at is not None:
            return None
        new = replace(inc, mitigated_at=ts, mitigated_by=by,
                      timeline=(*inc.timeline, TimelineEntry(ts, f"mitigated by {by}: {detail}")))
        if self.open.get(new.root) is inc:
            self.open[new.root] = new
        self.store.save(new)
        log.info("incident mitigated incident=%s by=%s", new.id, by)
        return IncidentEvent("mitigated", new, ts)


def _flap_info(st: ElementFlaps) -> FlapInfo:
    return FlapInfo(st.transitions, st.first, st.last_change, "down" if st.down else "up")


__all__ = ["Correlator", "device_root", "link_root"]
