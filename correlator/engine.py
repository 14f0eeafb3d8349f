"""From Observations to incidents: detection, root cause, impact and lifecycle.

``Correlator.observe`` is synchronous and I/O-light (one small SQLite write per incident
change): the collector calls it with each batch of observations from the bus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from correlator.incidents import (
    Impact,
    Incident,
    IncidentEvent,
    TimelineEntry,
    compute_impact,
)
from correlator.inventory import Inventory
from correlator.store import IncidentStore
from correlator.topology import analyse, device_root, link_root, subscribers_behind
from probes.types import (
    DEVICE_RESTARTED,
    IF_OPER_STATUS,
    REACHABLE,
    STATUS_NAMES,
    STATUS_UP,
    Observation,
)

log = logging.getLogger(__name__)

_SEVERITY = {"core": "critical", "aggregation": "critical", "access": "major"}


@dataclass(slots=True)
class PortState:
    oper: int
    admin_up: bool


@dataclass(slots=True)
class Stats:
    observations: int = 0
    unknown_device: int = 0
    faults: int = 0


class Correlator:
    """Keeps device and port state, and the open incidents that explain it."""

    def __init__(
        self,
        inventory: Inventory,
        store: IncidentStore,
        *,
        clock: Callable[[], float] = time.time,
        hold_down: float = 0.0,
    ) -> None:
        """``hold_down``: seconds an unreachable device (or a link between two devices) must
        stay so before its incident opens, so that the faults of a failing neighbourhood,
        which arrive from different polls, are attributed to the right root before anyone
        is told. Customer-facing ports open at once."""
        self.inventory = inventory
        self.hold_down = hold_down
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
        for inc in store.open_incidents():
            self.open[inc.root] = inc
            for key in (inc.root, *inc.symptoms):
                self._seed(key)

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
        for obs in batch:
            self.stats.observations += 1
            if obs.device not in self.inventory.devices:
                self.stats.unknown_device += 1
                continue
            if obs.name == REACHABLE:
                note = self._reachability(obs)
            elif obs.name == IF_OPER_STATUS:
                note = self._oper_status(obs)
            elif obs.name == DEVICE_RESTARTED:
                log.info("device restarted device=%s uptime=%s", obs.device, obs.value)
                note = None
            else:
                note = None
            if note:
                self.stats.faults += 1
                changed.append(note)
        if not changed:
            return []
        return self._reconcile(changed)

    def tick(self) -> list[IncidentEvent]:
        """Open incidents whose hold-down has passed. Call about once a second."""
        return self._reconcile([]) if self.pending else []

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
            return f"{dev} answers again"
        if not up and dev not in self.down_devices:
            self.down_devices.add(dev)
            reason = obs.labels.get("reason", "no answer")
            return f"{dev} stopped answering {obs.source} ({reason})"
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
                return f"{obs.device} {obs.instance} is {why} ({obs.source})"
            return None
        if before is None:
            return None  # baseline: a port already down when we start is not news
        was_down = before.admin_up and before.oper != STATUS_UP
        if is_down and not was_down:
            self.down_ports.add(key)
            return f"{obs.device} {obs.instance} went {status} ({obs.source})"
        return None

    # --- root cause and lifecycle ----------------------------------------------------------

    def _reconcile(self, notes: list[str]) -> list[IncidentEvent]:
        now = self.clock()
        inv = self.inventory
        opened_at = {root: inc.opened_at for root, inc in self.open.items()}
        analysis = analyse(inv, self.down_devices, self.down_ports, opened_at)
        events: list[IncidentEvent] = []
        timeline = tuple(TimelineEntry(now, n) for n in notes)
        self._notes = [n for n in self._notes if now - n.ts <= 2 * self.hold_down] + list(timeline)
        self.pending = {r: t for r, t in self.pending.items() if r in analysis.symptoms}

        gone = [root for root in self.open if root not in analysis.symptoms]
        for root in sorted(analysis.symptoms, key=lambda r: (opened_at.get(r, now), r)):
            devices = analysis.affected_devices[root]
            subs = subscribers_behind(inv, root, devices)
            impact = compute_impact(inv, subs, devices)
            symptoms = tuple(sorted(analysis.symptoms[root]))
            inc = self.open.get(root)
            if inc is None:
                if self.hold_down > 0 and self._held(root):
                    first = self.pending.setdefault(root, now)
                    if now - first < self.hold_down:
                        continue
                    del self.pending[root]
                else:
                    first = now
                held = tuple(n for n in self._notes if n.ts >= first - self.hold_down) or timeline
                inc = self._new_incident(root, now, symptoms, impact, held)
                self.open[root] = inc
                self.store.save(inc)
                log.warning(
                    "incident opened incident=%s root=%s subscribers=%d revenue_at_risk=%.2f "
                    "symptoms=%d", inc.id, root, impact.subscriber_count,
                    impact.revenue_at_risk, len(symptoms),
                )
                events.append(IncidentEvent("opened", inc, now))
            elif inc.symptoms != symptoms or inc.impact != impact:
                inc = replace(inc, symptoms=symptoms, impact=impact, updated_at=now,
                              revision=inc.revision + 1, timeline=inc.timeline + timeline)
                self.open[root] = inc
                self.store.save(inc)
                log.info("incident updated incident=%s subscribers=%d symptoms=%d",
                         inc.id, impact.subscriber_count, len(symptoms))
                events.append(IncidentEvent("updated", inc, now))

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
            else:
                closed = replace(
                    inc, state="resolved", resolved_at=now, updated_at=now,
                    timeline=inc.timeline + timeline + (TimelineEntry(now, "resolved"),),
                )
                log.info("incident resolved incident=%s root=%s after=%.0fs",
                         inc.id, root, now - inc.opened_at)
                events.append(IncidentEvent("resolved", closed, now))
            self.store.save(closed)
        return events

    def _held(self, root: str) -> bool:
        """Unreachable devices and links between devices wait out the hold-down: the rest
        of their neighbourhood's faults are on the way. Customer ports open at once."""
        kind, _, rest = root.partition(":")
        if kind == "device":
            return True
        device, _, port = rest.partition(":")
        return (device, port) in self.inventory.edge_ports

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


__all__ = ["Correlator", "device_root", "link_root"]
