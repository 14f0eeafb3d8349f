"""Which elements are cut off, and what is the root cause of each.

Pure functions over the inventory graph and the current fault state, so they are tested
without sockets or clocks. An element is affected only when *every* upstream path to it
is down: a dual-homed access node with one live parent is not affected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from correlator.inventory import Inventory, ParentLink

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
    """
    down_devices = set(down_devices)
    down_ports = set(down_ports)
    opened_at = opened_at or {}

    # 1. devices still reachable from a live root over live edges
    live: set[str] = set()
    queue = deque(d for d in inv.roots if d not in down_devices)
    live.update(queue)
    while queue:
        node = queue.popleft()
        for child, link in inv.children.get(node, ()):
            if child in live or child in down_devices:
                continue
            if _edge_cut(child, link, down_ports):
                continue
            live.add(child)
            queue.append(child)
    cut_off = set(inv.devices) - live

    # 2. root causes
    roots: set[str] = set()
    for dev in down_devices:
        if dev not in inv.devices:
            continue
        parents = inv.devices[dev].parents
        if not parents or any(p.device in live for p in parents):
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

    # 3. attribute every cut-off device that is not itself a root to its upstream root(s)
    memo: dict[str, set[str]] = {}

    def causes(dev: str, seen: frozenset[str]) -> set[str]:
        if dev in memo:
            return memo[dev]
        out: set[str] = set()
        for link in inv.devices[dev].parents:
            cut = _edge_cut(dev, link, down_ports)
            if cut and link_root(*cut) in roots:
                out.add(link_root(*cut))
                continue
            parent = link.device
            if parent in live or parent in seen:
                continue
            if device_root(parent) in roots:
                out.add(device_root(parent))
            else:
                out |= causes(parent, seen | {dev})
        memo[dev] = out
        return out

    def rank(key: str) -> tuple[float, str]:
        return (opened_at.get(key, float("inf")), key)

    analysis = Analysis(cut_off=cut_off)
    for key in roots:
        analysis.affected_devices[key] = set()
        analysis.symptoms[key] = set()
    for dev in cut_off:
        if device_root(dev) in roots:
            continue
        found = causes(dev, frozenset())
        if not found:
            continue
        owner = min(found, key=rank)
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
            continue
        for root, devs in analysis.affected_devices.items():
            if device in devs:
                analysis.symptoms[root].add(key)
                break
    return analysis


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
