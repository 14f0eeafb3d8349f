"""Which elements are cut off, and what is the root cause of each.

Pure functions over the inventory graph and the current fault state, so they are tested
without sockets or clocks. An element is affected only when *every* upstream path to it
is down: a dual-homed access node with one live parent is not affected. Passive elements
(splitters, patch panels) are never down themselves, only cut off.

``analyse`` computes everything from scratch; ``Analyser`` gives the same answer
incrementally, for the correlator, which asks again after every change.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from correlator.incidents import Impact
from correlator.inventory import PASSIVE, Inventory, ParentLink

DeviceKey = str
PortKey = tuple[str, str]


def device_root(device: str) -> str:
    return f"device:{device}"


def link_root(device: str, port: str) -> str:
    return f"link:{device}:{port}"


@dataclass(slots=True)
class Analysis:
    """Root causes and what each one explains."""

    # root key -> devices cut off because of it (not including a device root itself)
    affected_devices: dict[str, set[str]] = field(default_factory=dict)
    # root key -> symptom keys (device:X or link:X:Y faults explained by the root)
    symptoms: dict[str, set[str]] = field(default_factory=dict)
    # every device with no live upstream path (root devices included)
    cut_off: set[str] = field(default_factory=set)


def _edge_cut(child: str, link: ParentLink, down_ports: Collection[PortKey]) -> PortKey | None:
    if link.port and (link.device, link.port) in down_ports:
        return (link.device, link.port)
    if link.local_port and (child, link.local_port) in down_ports:
        return (child, link.local_port)
    return None


def analyse(
    inv: Inventory,
    down_devices: Collection[DeviceKey],
    down_ports: Collection[PortKey],
    opened_at: Mapping[str, float] | None = None,
) -> Analysis:
    """Work out root causes for the given unreachable devices and down ports.

    ``opened_at`` (root key → time) breaks ties when a device is cut off by several roots
    at once: it is attributed to the earliest (then the lexically first) of them.
    Unknown and passive devices among ``down_devices`` are ignored: a passive element is
    down only when the path above it is.
    """
    down = _effective(inv, down_devices)
    ports = set(down_ports)
    cut_off = set(inv.devices) - _reachable(inv, down, ports)
    return _attribute(inv, down, ports, cut_off, opened_at or {})


def _effective(inv: Inventory, down_devices: Iterable[DeviceKey]) -> set[str]:
    devices = inv.devices
    return {d for d in down_devices if d in devices and devices[d].role != PASSIVE}


def _reachable(inv: Inventory, down: Collection[str], down_ports: Collection[PortKey]) -> set[str]:
    """Devices still reachable from a live root over live edges."""
    live: set[str] = set()
    queue = deque(d for d in inv.roots if d not in down)
    live.update(queue)
    while queue:
        node = queue.popleft()
        for child, link in inv.children.get(node, ()):
            if child in live or child in down:
                continue
            if _edge_cut(child, link, down_ports):
                continue
            live.add(child)
            queue.append(child)
    return live


def _attribute(
    inv: Inventory,
    down_devices: set[str],
    down_ports: set[PortKey],
    cut_off: set[str],
    opened_at: Mapping[str, float],
) -> Analysis:
    """Root causes and what each explains, given the devices with no live upstream path.
    The work is proportional to the faults and the cut-off devices, not to the network."""
    devices = inv.devices

    def live(dev: str) -> bool:
        return dev in devices and dev not in cut_off

    # 1. root causes
    roots: set[str] = set()
    for dev in down_devices:
        parents = devices[dev].parents
        if not parents or any(live(p.device) for p in parents):
            roots.add(device_root(dev))
    port_symptom_of: dict[str, str] = {}
    for device, port in down_ports:
        key = link_root(device, port)
        if device in cut_off:
            continue  # stale or explained upstream; attributed below with its device
        # a link whose far end died is a symptom of that device, not a fault of its own
        far_ends = inv.edge_ports.get((device, port), [])
        far_roots = [device_root(c) for c in far_ends if device_root(c) in roots]
        if far_roots:
            port_symptom_of[key] = min(far_roots)
            continue
        roots.add(key)

    # 2. attribute every cut-off device that is not itself a root to its upstream root(s)
    memo: dict[str, set[str]] = {}

    def causes(dev: str, seen: frozenset[str]) -> set[str]:
        if dev in memo:
            return memo[dev]
        out: set[str] = set()
        for link in devices[dev].parents:
            cut = _edge_cut(dev, link, down_ports)
            if cut and link_root(*cut) in roots:
                out.add(link_root(*cut))
                continue
            parent = link.device
            if live(parent) or parent in seen:
                continue
            if device_root(parent) in roots:
                out.add(device_root(parent))
            else:
                out |= causes(parent, seen | {dev})
        memo[dev] = out
        return out

    def rank(key: str) -> tuple[float, str]:
        return (opened_at.get(key, float("inf")), key)

    analysis = Analysis(cut_off=set(cut_off))
    for key in roots:
        analysis.affected_devices[key] = set()
        analysis.symptoms[key] = set()
    owner_of: dict[str, str] = {}
    for dev in cut_off:
        if device_root(dev) in roots:
            continue
        found = causes(dev, frozenset())
        if not found:
            continue
        owner = min(found, key=rank)
        owner_of[dev] = owner
        analysis.affected_devices[owner].add(dev)
        if dev in down_devices:
            analysis.symptoms[owner].add(device_root(dev))
    for port_key, owner in port_symptom_of.items():
        analysis.symptoms[owner].add(port_key)
    # ports down on cut-off devices are symptoms of whatever cut the device off
    for device, port in down_ports:
        key = link_root(device, port)
        if key in roots or key in port_symptom_of:
            continue
        owner_key = device_root(device)
        if owner_key in roots:
            analysis.symptoms[owner_key].add(key)
        elif device in owner_of:
            analysis.symptoms[owner_of[device]].add(key)
    return analysis


class Analyser:
    """``analyse`` for one inventory, kept up to date from one call to the next.

    Each call compares the faults with the previous call's and re-derives reachability
    only below the elements that changed (a customer port: nothing; an OLT: its subtree);
    attribution then costs in proportion to the faults and the cut-off devices (a few ms
    with an aggregation node down; tens of ms with a whole core cut off). The
    result is the same as ``analyse`` (a property test checks it on random networks and
    fault sequences). ``impact`` caches each root's impact while its devices stay the
    same. Not thread-safe; one per correlator (build a new one for a new inventory).
    """

    def __init__(self, inv: Inventory) -> None:
        self.inventory = inv
        self._down: set[str] = set()
        self._ports: set[PortKey] = set()
        self._cut_off = set(inv.devices) - _reachable(inv, (), ())
        # (device, port) -> the devices whose upstream link goes through that port
        self._through: dict[PortKey, list[str]] = defaultdict(list)
        for child, dev in inv.devices.items():
            for link in dev.parents:
                if link.port:
                    self._through[(link.device, link.port)].append(child)
                if link.local_port:
                    self._through[(child, link.local_port)].append(child)
        self._impacts: dict[str, tuple[frozenset[str], Impact]] = {}

    def analyse(
        self,
        down_devices: Collection[DeviceKey],
        down_ports: Collection[PortKey],
        opened_at: Mapping[str, float] | None = None,
    ) -> Analysis:
        inv = self.inventory
        down = _effective(inv, down_devices)
        ports = set(down_ports)
        seeds = down ^ self._down
        for key in ports ^ self._ports:
            seeds.update(self._through.get(key, ()))
        if seeds:
            self._recompute(seeds, down, ports)
        self._down, self._ports = down, ports
        analysis = _attribute(inv, down, ports, self._cut_off, opened_at or {})
        for root in [r for r in self._impacts if r not in analysis.symptoms]:
            del self._impacts[root]
        return analysis

    def _recompute(self, seeds: Iterable[str], down: set[str], ports: set[PortKey]) -> None:
        """Reachability of ``seeds`` and everything below them; the rest is unchanged."""
        inv = self.inventory
        region: set[str] = set()
        stack = list(seeds)
        while stack:
            node = stack.pop()
            if node in region:
                continue
            region.add(node)
            stack.extend(c for c, _ in inv.children.get(node, ()) if c not in region)
        cut = self._cut_off
        cut |= region  # until a live path is found
        queue: deque[str] = deque()
        for node in region:
            if node in down:
                continue
            parents = inv.devices[node].parents
            if not parents or any(
                p.device in inv.devices and p.device not in cut
                and not _edge_cut(node, p, ports) for p in parents
            ):
                cut.discard(node)
                queue.append(node)
        while queue:
            node = queue.popleft()
            for child, link in inv.children.get(node, ()):
                if child not in cut or child in down or _edge_cut(child, link, ports):
                    continue
                cut.discard(child)
                queue.append(child)

    def impact(self, root: str, devices: Collection[str]) -> Impact:
        """``impact_of``, cached while the root's devices stay the same."""
        hit = self._impacts.get(root)
        if hit is not None and hit[0] == devices:
            return hit[1]
        imp = impact_of(self.inventory, root, devices)
        self._impacts[root] = (frozenset(devices), imp)
        return imp


def impact_of(inv: Inventory, root: str, devices: Collection[str]) -> Impact:
    """What ``root`` and the ``devices`` it cut off hurt: the same as ``compute_impact``
    of ``subscribers_behind``, from the inventory's sums per device and port."""
    kind, _, rest = root.partition(":")
    if kind == "device":
        totals = inv.totals_on([rest, *devices])
    else:
        device, _, port = rest.partition(":")
        totals = inv.totals_on(devices, [(device, port)])
    return Impact(
        subscribers=totals.subscribers,
        devices=tuple(sorted(devices)),
        revenue_by_tier=totals.revenue_by_tier,
        subscribers_by_tier=totals.subscribers_by_tier,
    )


def subscribers_behind(inv: Inventory, root: str, devices: Collection[str]) -> list[str]:
    """Subscribers that lose service because of ``root`` and the devices it cut off."""
    out: list[str] = []
    kind, _, rest = root.partition(":")
    if kind == "device":
        out.extend(inv.subscribers_on(rest))
    else:
        device, _, port = rest.partition(":")
        out.extend(inv.subscribers_on(device, port))
    for dev in devices:
        out.extend(inv.subscribers_on(dev))
    return out
