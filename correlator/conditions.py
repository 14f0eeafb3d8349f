"""Conditions as incidents: what the detectors raise (``correlator.detection``) and what
the correlator watches in state itself -- BGP sessions and ONTs that stay down.

A ``Finding`` is the one shape the engine turns into an incident (``active``) or resolves
(not ``active``): a detector's ``Condition`` becomes one with ``from_condition``;
``StateWatch`` makes them from BGP_PEER_STATE and ONT_STATE observations once the
element has stayed down for the hold-down. Everything here is synchronous and clock-free
(callers pass the time), so it is tested without sockets or sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from correlator.detection import Condition
from correlator.incidents import Impact, Incident, Service
from correlator.inventory import Inventory
from correlator.topology import analyse, device_root, impact_of, link_root
from correlator.watch_store import Down, WatchStore
from probes.types import BGP_PEER_STATE, ONT_STATE, Observation

BGP_ESTABLISHED = 6  # BGP4-MIB bgpPeerState
BGP_STATE_NAMES: Mapping[int, str] = {
    1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established",
}
ONT_ONLINE = 1  # ONT_STATE values (probes.cli.parse)
_SEVERITY_BGP = {"core": "major", "aggregation": "major"}
_PORT_DIGITS = re.compile(r"(\d+(?:/\d+)*)\s*$")

Evidence = Mapping[str, float | int | str]


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition raised (``active``) or cleared on one element; ``root`` is the key of
    its incident (``cond:<kind>:<device>:<instance>``, ``cond:<kind>:<subscriber>``)."""

    root: str
    kind: str
    device: str
    port: str | None  # the instance the condition is about, None for the device itself
    active: bool
    severity: str
    ts: float
    summary: str
    evidence: Evidence = field(default_factory=dict)
    subscriber: str | None = None  # the one subscriber concerned (plan saturation...)
    # who it hurts when not "whoever is behind the element" (an ONT's subscribers)
    subscribers: tuple[str, ...] | None = None
    # ports of ``device`` whose going down explains it (beside the device itself)
    fold_ports: tuple[str, ...] = ()
    service: Service = "degraded"


def condition_root(kind: str, device: str, instance: str = "",
                   subscriber: str | None = None) -> str:
    if subscriber is not None:
        return f"cond:{kind}:{subscriber}"
    return f"cond:{kind}:{device}:{instance}"


def is_condition_root(root: str) -> bool:
    return root.startswith("cond:")


def from_condition(c: Condition) -> Finding:
    return Finding(
        root=condition_root(c.kind, c.device, c.instance, c.subscriber), kind=c.kind,
        device=c.device, port=c.instance or None, active=c.active, severity=c.severity,
        ts=c.ts, summary=c.summary, evidence=c.evidence, subscriber=c.subscriber,
        subscribers=None if c.subscriber is None else (c.subscriber,),
        fold_ports=(c.instance,) if c.instance else (),
    )


def degraded_impact(inv: Inventory, device: str, port: str | None) -> Impact:
    """The subscribers behind an element that works badly: those who would lose service
    if it failed (same topology rules as an outage: a dual-homed node with another live
    parent is not behind it), marked ``degraded``. ``port`` None: the whole device."""
    if device not in inv.devices:
        return Impact(service="degraded")
    behind: set[str] = set()
    if port is None:
        root = device_root(device)
        behind = analyse(inv, [device], []).affected_devices.get(root, behind)
    else:
        root = link_root(device, port)
        if (device, port) in inv.edge_ports:  # a link to another device: who is behind it
            behind = analyse(inv, [], [(device, port)]).affected_devices.get(root, behind)
    imp = impact_of(inv, root, behind)
    devices = imp.devices if port is not None else tuple(sorted({device, *imp.devices}))
    return replace(imp, devices=devices, service="degraded")


def pon_digits(port: str) -> str:
    """The trailing ``frame/slot/port`` digits of a port name (``GPON 0/1/0`` → ``0/1/0``)."""
    m = _PORT_DIGITS.search(port)
    return m.group(1) if m else port


@dataclass(slots=True)
class _Down:
    since: float
    finding: Finding


class StateWatch:
    """BGP sessions that left established and ONTs gone offline, for longer than
    ``hold_down``. ``observe`` returns the cleared ``Finding`` when one recovers;
    ``due`` the raised ones whose hold-down has passed.

    A change is news only after the device's first report of that kind (the baseline: a
    session or ONT already down when we start is not) or from an event source (syslog).
    An administratively shut BGP session is never news. An element down at the baseline
    stays no news until it is back up (its state may change meanwhile: idle, active...).

    Across a restart (``attach`` a ``WatchStore``): the elements known down, and the
    devices whose baseline was taken, are kept. After a restart a device's first report
    is a baseline only if it never had one: an element pending its hold-down before
    the restart stays pending from when it went down, and one down now that was up
    before (it went down while netreflex was not running) is pending from now.

    ONT → subscribers: a subscriber is bound to device, port and ``onu_id``; ONT_STATE's
    instance is ``frame/slot/port/ont_id``. They match when the ONT id equals ``onu_id``
    and the ONT's ``frame/slot/port`` equals the trailing digits of the subscriber's port
    (``0/1/0``, ``GPON 0/1/0``), or ends with them (``1/0`` for a port named without its
    frame)."""

    def __init__(self, inventory: Inventory, hold_down: float,
                 event_sources: frozenset[str]) -> None:
        self.inventory = inventory
        self.hold_down = hold_down
        self.event_sources = event_sources
        self.pending: dict[str, _Down] = {}  # root -> down since, and the finding to raise
        self._first: dict[tuple[str, str], float] = {}  # (device, name) -> first report ts
        self._down: dict[str, Down] = {}  # root -> since, news: every element known down
        self._before: set[tuple[str, str]] = set()  # baselines taken before a restart
        self._store: WatchStore | None = None
        self._dirty: dict[str, Down | None] = {}  # changes of _down not yet saved
        self._new_keys: set[tuple[str, str]] = set()  # ... of the baselines
        self._gone: set[str] = set()  # ... devices forgotten
        self._onts: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self._onts_of: Inventory | None = None

    def attach(self, store: WatchStore) -> None:
        """Keep what the watch knows in ``store``, and take up what it kept."""
        self._store = store
        before, down = store.load()
        self._before |= before
        for root, known in down.items():
            self._down.setdefault(root, known)

    def flush(self) -> None:
        """Save what changed since the last flush (no store: forget it)."""
        if self._store is not None and (self._dirty or self._new_keys or self._gone):
            self._store.save(self._new_keys, self._dirty, self._gone)
        self._dirty, self._new_keys, self._gone = {}, set(), set()

    def _mark(self, root: str, known: Down | None) -> None:
        if known is None:
            if self._down.pop(root, None) is None:
                return
        else:
            self._down[root] = known
        self._dirty[root] = known

    def _news(self, root: str, now: float, baseline: bool) -> float | None:
        """An element reported down and not pending: since when it is news, or None."""
        known = self._down.get(root)
        if known is not None:  # down already: pending from then (a restart), or no news
            return known[0] if known[1] else None
        self._mark(root, (now, not baseline))
        return None if baseline else now

    def observe(self, obs: Observation, now: float) -> Finding | None:
        key = (obs.device, obs.name)
        first = self._first.get(key)
        if first is None:
            first = self._first[key] = obs.ts
            if key not in self._before:
                self._new_keys.add(key)
        baseline = obs.ts == first and obs.source not in self.event_sources \
            and key not in self._before
        if obs.name == BGP_PEER_STATE:
            return self._bgp(obs, now, baseline)
        if obs.name == ONT_STATE:
            return self._ont(obs, now, baseline)
        return None

    def _bgp(self, obs: Observation, now: float, baseline: bool) -> Finding | None:
        root = condition_root("bgp_session_down", obs.device, obs.instance)
        state = int(obs.value)
        name = obs.labels.get("state") or BGP_STATE_NAMES.get(state, str(state))
        if state == BGP_ESTABLISHED or obs.labels.get("admin") == "down":
            self._mark(root, None)
            down = self.pending.pop(root, None)
            if down is None:
                return None
            why = "established again" if state == BGP_ESTABLISHED else "shut down by an operator"
            return replace(down.finding, active=False, ts=now,
                           summary=f"BGP session {obs.instance} on {obs.device} {why}",
                           evidence={**down.finding.evidence, "state_now": name,
                                     "down_for_s": round(now - down.since, 1)})
        if root in self.pending or (since := self._news(root, now, baseline)) is None:
            return None
        dev = self.inventory.devices.get(obs.device)
        role = dev.role if dev is not None else "other"
        evidence: dict[str, float | int | str] = {
            "peer": obs.instance, "state": name, "state_code": state,
            "hold_down_s": self.hold_down}
        if obs.labels.get("remote_as"):
            evidence["remote_as"] = obs.labels["remote_as"]
        self.pending[root] = _Down(since, Finding(
            root=root, kind="bgp_session_down", device=obs.device, port=obs.instance,
            active=True, severity=_SEVERITY_BGP.get(role, "minor"), ts=now,
            summary=f"BGP session {obs.instance} on {obs.device} is {name}, not established",
            evidence=evidence, subscribers=()))
        return None

    def _ont(self, obs: Observation, now: float, baseline: bool) -> Finding | None:
        root = condition_root("ont_down", obs.device, obs.instance)
        if int(obs.value) == ONT_ONLINE:
            self._mark(root, None)
            down = self.pending.pop(root, None)
            if down is None:
                return None
            return replace(down.finding, active=False, ts=now,
                           summary=f"ONT {obs.instance} on {obs.device} online again",
                           evidence={**down.finding.evidence,
                                     "down_for_s": round(now - down.since, 1)})
        if root in self.pending or (since := self._news(root, now, baseline)) is None:
            return None
        cause = obs.labels.get("last_down_cause", "")
        subs, ports = self.ont_subscribers(obs.device, obs.instance)
        # dying gasp: the ONT said it lost power -- usually switched off at the customer's
        severity = "minor" if cause == "dying-gasp" else "major"
        evidence: dict[str, float | int | str] = {
            "ont": obs.instance, "cause": cause or "unknown", "subscribers": len(subs),
            "hold_down_s": self.hold_down}
        if ports:
            evidence["pon_port"] = ports[0]
        why = f" ({cause})" if cause else ""
        self.pending[root] = _Down(since, Finding(
            root=root, kind="ont_down", device=obs.device, port=obs.instance, active=True,
            severity=severity, ts=now, summary=f"ONT {obs.instance} on {obs.device} "
            f"offline{why}: {len(subs)} subscriber(s)", evidence=evidence,
            subscribers=tuple(subs), fold_ports=tuple(ports), service="down"))
        return None

    def ont_subscribers(self, device: str, instance: str) -> tuple[list[str], list[str]]:
        """The subscribers bound to an ONT, and the inventory ports they are bound to."""
        if self._onts_of is not self.inventory:
            self._onts, self._onts_of = {}, self.inventory
        subs = self.inventory.subscribers
        index = self._onts.get(device)
        if index is None:  # onu_id -> (port digits, subscriber), built once per device
            index = self._onts[device] = {}
            for sid in self.inventory.subscribers_on(device):
                rec = subs[sid]
                if rec.onu_id:
                    index.setdefault(rec.onu_id, []).append((pon_digits(rec.port), sid))
        fsp, _, ont = instance.rpartition("/")
        out = sorted(sid for digits, sid in index.get(ont, ())
                     if digits == fsp or fsp.endswith("/" + digits))
        return out, sorted({subs[sid].port for sid in out})

    def due(self, now: float, skip: Callable[[Finding], bool]) -> list[Finding]:
        """Raised findings down for ``hold_down`` or more, except those ``skip`` says are
        open already or explained by an outage (they stay pending)."""
        out: list[Finding] = []
        for down in self.pending.values():
            if now - down.since >= self.hold_down and not skip(down.finding):
                out.append(replace(down.finding, ts=now))
        return out

    def devices(self) -> set[str]:
        """The devices the watch keeps state of."""
        return ({d for d, _ in self._first} | {d for d, _ in self._before}
                | {f.finding.device for f in self.pending.values()}
                | {_root_device(r) for r in self._down})

    def forget(self, devices: set[str]) -> None:
        """Devices gone from the inventory: their pending elements and baselines go."""
        self.pending = {r: d for r, d in self.pending.items()
                        if d.finding.device not in devices}
        self._first = {k: ts for k, ts in self._first.items() if k[0] not in devices}
        self._before = {k for k in self._before if k[0] not in devices}
        for root in [r for r in self._down if _root_device(r) in devices]:
            self._mark(root, None)
        self._gone |= devices

    def restore(self, inc: Incident) -> None:
        """An open incident from the store: down since it opened, until told otherwise."""
        self.pending[inc.root] = _Down(inc.opened_at, Finding(
            root=inc.root, kind=inc.kind, device=inc.device, port=inc.port, active=True,
            severity=inc.severity, ts=inc.opened_at, summary=inc.summary,
            evidence=inc.evidence, subscribers=inc.impact.subscribers,
            fold_ports=tuple(p for p in (inc.evidence.get("pon_port"),) if isinstance(p, str)),
            service=inc.impact.service))


def _root_device(root: str) -> str:
    """The device of a ``cond:<kind>:<device>:<instance>`` root."""
    return root.split(":", 3)[2]


__all__ = ["Finding", "StateWatch", "condition_root", "degraded_impact", "from_condition",
           "is_condition_root"]
