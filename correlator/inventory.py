"""The inventory: devices, how they hang together, and the subscribers behind each port.

Read from YAML (devices, topology, subscribers) and CSV (subscriber bindings at scale).
Every problem is reported with its file and line; nothing is half-loaded.

Subscribers are kept as columns (``correlator.subscribers``), not one object each:
``Inventory.subscribers`` is a read-only mapping that builds a ``Subscriber`` on access,
and impact sums are taken from per-port totals. A million subscribers load in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import operator
import os
import pickle
import sys
import threading
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from itertools import chain, compress, repeat
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import yaml
from pydantic import BeforeValidator, Field, ValidationError

from correlator.subscriber_csv import load_csv, python_child
from correlator.subscriber_index import Index, ints_from
from correlator.subscriber_index import merge as merge_index
from correlator.subscribers import (
    CSV_COLUMNS,
    UNITS,
    Subscriber,
    SubscriberModel,
    SubscriberRecord,
    SubscriberTable,
    subscriber,
)
from probes import source
from probes.source import Located, Problem, SourceError, Strict, load_yaml, short

__all__ = [
    "CSV_COLUMNS", "Device", "Inventory", "ParentLink", "Subscriber", "SubscriberRecord",
    "Totals", "load_inventory", "reload_inventory",
]

# ``passive``: splitters, patch panels -- never polled, never unreachable themselves; cut
# off only when every path above them is.
ROLES = ("core", "aggregation", "access", "cpe", "passive", "other")
PASSIVE = "passive"

_Sums = dict[int, tuple[int, int]]  # tier number -> (subscribers, revenue units)
RELOAD_CHILD_FROM = 64 << 10  # bytes (any file): reload_inventory loads in another process
_ID_CHUNK = 1 << 16  # ids split at a time when an inventory comes from another process
# the columns of a SubscriberTable sent as packed text, and as arrays (same typecodes)
_TEXT_COLUMNS = ("account", "name", "onu_id", "modem_mac", "cpe_mac", "email", "phone")
_ARRAY_COLUMNS = ("device_of", "port_of", "revenue", "units", "tier", "contract_end", "churn",
                  "plan")


def _parent(value: Any) -> Any:
    return {"device": value} if isinstance(value, str) else value


class ParentLink(Strict):
    """An upstream link: the parent device and, optionally, the ports at either end."""

    device: str
    port: str | None = Field(default=None, description="the parent's port facing this device")
    local_port: str | None = Field(default=None, description="this device's uplink port")


class DeviceModel(Strict):
    role: str = Field(default="access", pattern="^(" + "|".join(ROLES) + ")$")
    site: str | None = None
    description: str | None = None
    parents: list[Annotated[ParentLink, BeforeValidator(_parent)]] = Field(default_factory=list)
    ports: list[str] | None = Field(
        default=None, description="when given, subscriber bindings must name one of these"
    )


class InventoryFile(Strict):
    devices: dict[str, DeviceModel] = Field(default_factory=dict)
    subscribers: list[SubscriberModel] = Field(default_factory=list)
    subscriber_files: list[str] = Field(
        default_factory=list, description="CSV files, relative to this file"
    )


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    role: str
    site: str | None
    parents: tuple[ParentLink, ...]
    ports: frozenset[str] | None

    @property
    def passive(self) -> bool:
        return self.role == PASSIVE


class Totals(NamedTuple):
    """Subscribers (sorted ids) and what they pay per month, by SLA tier."""

    subscribers: tuple[str, ...]
    revenue_by_tier: dict[str, float]
    subscribers_by_tier: dict[str, int]


class ChurnInputs(NamedTuple):
    """Parallel lists: subscriber ids, their churn risk and contract end (a date ordinal;
    0: none)."""

    ids: Sequence[str]
    churn_risk: list[float]
    contract_end: list[int]


class _Subscribers(Mapping[str, SubscriberRecord]):
    """id -> the subscriber (a ``SubscriberRecord``: read from the inventory's columns
    when an attribute is asked); read-only; iteration in id order."""

    def __init__(self, inv: Inventory) -> None:
        self._inv = inv

    def __getitem__(self, sid: str) -> SubscriberRecord:
        rank = self._inv._rank_of(sid)
        if rank is None:
            raise KeyError(sid)
        return SubscriberRecord(self._inv._table, self._inv._order[rank], sid)

    def values(self) -> ValuesView[SubscriberRecord]:
        return _Records(self)

    def items(self) -> ItemsView[str, SubscriberRecord]:
        return _Items(self)

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and self._inv._rank_of(sid) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._inv._sorted_ids)

    def __len__(self) -> int:
        return len(self._inv._sorted_ids)


class _Records(ValuesView[SubscriberRecord]):
    """The subscribers in id order, without a lookup each."""

    _mapping: _Subscribers

    def __iter__(self) -> Iterator[SubscriberRecord]:
        inv = self._mapping._inv
        return map(SubscriberRecord, repeat(inv._table), inv._order, inv._sorted_ids)


class _Items(ItemsView[str, SubscriberRecord]):
    _mapping: _Subscribers

    def __iter__(self) -> Iterator[tuple[str, SubscriberRecord]]:
        inv = self._mapping._inv
        return zip(inv._sorted_ids, map(SubscriberRecord, repeat(inv._table), inv._order,
                                        inv._sorted_ids), strict=True)


class _ByPort(Mapping[tuple[str, str], list[str]]):
    """(device, port) -> ids of the subscribers bound there, sorted."""

    def __init__(self, inv: Inventory) -> None:
        self._inv = inv

    def __getitem__(self, key: tuple[str, str]) -> list[str]:
        device, port = key
        if device not in self._inv._dev_range:
            raise KeyError(key)
        return self._inv._ids_of(self._inv._device_ports(device)[port])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for device in self._inv._dev_range:
            for port in self._inv._device_ports(device):
                yield device, port

    def __len__(self) -> int:
        return sum(len(self._inv._device_ports(d)) for d in self._inv._dev_range)


class _ByDevice(Mapping[str, list[str]]):
    """device -> ids of the subscribers bound to any of its ports, sorted."""

    def __init__(self, inv: Inventory) -> None:
        self._inv = inv

    def __getitem__(self, device: str) -> list[str]:
        if device not in self._inv._dev_range:
            raise KeyError(device)
        return self._inv._ids_of(sorted(self._inv._device_ranks(device)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._inv._dev_range)

    def __len__(self) -> int:
        return len(self._inv._dev_range)


class Inventory:
    """Devices, their upstream links and subscribers, indexed for impact queries.

    ``subscribers`` maps id → ``SubscriberRecord`` (the attributes of a ``Subscriber``,
    read when asked; iteration in id order);
    ``by_port``, ``by_device`` and ``subscribers_on`` give subscriber ids sorted; ``totals``
    and ``totals_on`` sum revenue by tier. Immutable once built: swap a new one in
    rather than changing it (see ``reload_inventory``).
    """

    def __init__(self, devices: Mapping[str, Device], subscribers: Iterable[Subscriber]) -> None:
        table = SubscriberTable()
        for sub in subscribers:
            table.append(sub, "", None)
        self._build(devices, table)

    @classmethod
    def _from_table(cls, devices: Mapping[str, Device], table: SubscriberTable) -> Inventory:
        inv = cls.__new__(cls)
        inv._build(devices, table)
        return inv

    def _build(self, devices: Mapping[str, Device], table: SubscriberTable,
               index: Index | None = None) -> None:
        self.devices = dict(devices)
        self.children: dict[str, list[tuple[str, ParentLink]]] = defaultdict(list)
        # (device, port) -> the devices at the far end of the link on that port, to tell
        # an uplink or downlink port from a customer port
        self.edge_ports: dict[tuple[str, str], list[str]] = defaultdict(list)
        for dev in self.devices.values():
            for link in dev.parents:
                self.children[link.device].append((dev.id, link))
                if link.port:
                    self.edge_ports[(link.device, link.port)].append(dev.id)
                if link.local_port:
                    self.edge_ports[(dev.id, link.local_port)].append(link.device)
        self._roots = [d.id for d in self.devices.values() if not d.parents]

        # rank: position in id order. Lookups by id bisect the sorted ids; impacts list
        # subscribers sorted, which ranks turn into a sort of integers. By device: a
        # device's subscribers, their tiers and revenue are slices.
        if index is None:
            index = merge_index(table, table.parts)
        self._order = index.order  # rank -> row
        self._sorted_ids = index.sorted_ids
        self._dev_ranks = index.dev_ranks
        self._dev_range = index.dev_range
        self._dev_tiers = index.dev_tiers
        self._dev_units = index.dev_units
        # device -> its subscribers and revenue by tier, worked out when first asked
        self._dev_sums: dict[str, _Sums] = dict(index.dev_sums or {})
        table.ids, table.parts, table.bindings = [], [], set()  # ids: in _sorted_ids
        table.freeze()
        self._table = table
        # worked out when first asked: sums of each port; device -> port -> ranks
        self._port_sums: dict[tuple[str, str], _Sums] = {}
        self._ports: dict[str, dict[str, array[int]]] = {}
        self.subscribers: Mapping[str, SubscriberRecord] = _Subscribers(self)
        self.by_port: Mapping[tuple[str, str], list[str]] = _ByPort(self)
        self.by_device: Mapping[str, list[str]] = _ByDevice(self)

    def _pack(self) -> dict[str, Any] | None:
        """The inventory as a few large strings, byte strings and small objects, for the
        process that asked for it (see ``reload_inventory``); None if an id holds a line
        break."""
        ids = self._sorted_ids
        chunks = ["\n".join(ids[i:i + _ID_CHUNK]) for i in range(0, len(ids), _ID_CHUNK)]
        if sum(c.count("\n") for c in chunks) != len(ids) - len(chunks):
            return None
        table = self._table
        text = {name: [(packed, ends.tobytes()) for packed, ends in getattr(table, name).runs()]
                for name in _TEXT_COLUMNS}
        return {
            "devices": self.devices, "ids": chunks, "order": self._order.tobytes(),
            "dev_ranks": self._dev_ranks.tobytes(), "dev_range": self._dev_range,
            "dev_tiers": self._dev_tiers, "dev_units": self._dev_units.tobytes(),
            "text": text, "arrays": {k: getattr(table, k).tobytes() for k in _ARRAY_COLUMNS},
            "names": (table.devices, table.ports, table.tiers), "consent": bytes(table.consent),
        }

    @classmethod
    def _unpack(cls, got: dict[str, Any]) -> Inventory:
        """An inventory from ``_pack``: no per-subscriber work but splitting the ids, a
        chunk at a time (another thread gets the GIL in between)."""
        # each part let go of once copied: less memory at the peak, with the old inventory
        table = SubscriberTable()
        text = got.pop("text")
        for name in list(text):
            for packed, ends in text.pop(name):
                getattr(table, name).extend_packed(packed, ints_from(ends, "q"))
        arrays = got.pop("arrays")
        for name in list(arrays):
            getattr(table, name).frombytes(arrays.pop(name))
        table.devices, table.ports, table.tiers = got["names"]
        table.consent = bytearray(got.pop("consent"))
        ids: list[str] = []
        for chunk in got.pop("ids"):
            ids.extend(chunk.split("\n"))
        index = Index(ints_from(got.pop("order")), tuple(ids),
                      ints_from(got.pop("dev_ranks")), got["dev_range"], got["dev_tiers"],
                      ints_from(got.pop("dev_units"), "q"))
        inv = cls.__new__(cls)
        inv._build(got["devices"], table, index)
        return inv

    def _device_ranks(self, device: str) -> array[int]:
        """The ranks of a device's subscribers (ascending runs, one per part read)."""
        start, end = self._dev_range.get(device, (0, 0))
        return self._dev_ranks[start:end]

    def _sums_of(self, ranks: Iterable[int]) -> _Sums:
        """Subscribers and revenue units by tier number of these ranks."""
        table = self._table
        rows = list(map(self._order.__getitem__, ranks))
        return _sums(list(map(table.tier.__getitem__, rows)),
                     list(map(table.units.__getitem__, rows)))

    def _device_sums(self, device: str) -> _Sums:
        sums = self._dev_sums.get(device)
        if sums is None:
            start, end = self._dev_range[device]
            sums = self._dev_sums[device] = _sums(self._dev_tiers[start:end],
                                                  self._dev_units[start:end])
        return sums

    def _device_ports(self, device: str) -> dict[str, array[int]]:
        ports = self._ports.get(device)
        if ports is None:
            table, order = self._table, self._order
            ranks: dict[str, list[int]] = defaultdict(list)
            for rank in self._device_ranks(device):
                ranks[table.ports[table.port_of[order[rank]]]].append(rank)
            ports = self._ports[device] = {p: array("i", sorted(r)) for p, r in ranks.items()}
        return ports

    def _rank_of(self, sid: str) -> int | None:
        i = bisect_left(self._sorted_ids, sid)
        return i if i < len(self._sorted_ids) and self._sorted_ids[i] == sid else None

    def _ids_of(self, ranks: Iterable[int]) -> list[str]:
        return list(map(self._sorted_ids.__getitem__, ranks))

    def subscribers_on(self, device: str, port: str | None = None) -> list[str]:
        if device not in self._dev_range:
            return []
        if port is None:
            return self.by_device[device]
        ranks = self._device_ports(device).get(port)
        return [] if ranks is None else self._ids_of(ranks)

    @property
    def roots(self) -> list[str]:
        return list(self._roots)

    def churn_inputs(self, subscriber_ids: Sequence[str]) -> ChurnInputs:
        """The churn risk and contract end of many subscribers at once (C loops: an
        incident's judgement reads them for every subscriber it hits); ids not in the
        inventory are left out, the others keep their order."""
        found, n = self._sorted_ids, len(self._sorted_ids)
        ranks = list(map(bisect_left, repeat(found), subscriber_ids))
        ids: Sequence[str] = subscriber_ids
        if n == 0 or not all(map(operator.eq, map(found.__getitem__, map(
                min, ranks, repeat(n - 1))), subscriber_ids)):
            keep = [r < n and found[r] == s for r, s in zip(ranks, subscriber_ids, strict=True)]
            ids, ranks = list(compress(subscriber_ids, keep)), list(compress(ranks, keep))
        table = self._table
        rows = list(map(self._order.__getitem__, ranks))
        return ChurnInputs(ids, list(map(table.churn.__getitem__, rows)),
                           list(map(table.contract_end.__getitem__, rows)))

    @property
    def sla_tiers(self) -> set[str]:
        """The SLA tiers that some subscriber has."""
        return {self._table.tiers[t] for t in set(self._table.tier)}

    # --- impact sums ---------------------------------------------------------------------

    def totals(self, subscriber_ids: Iterable[str]) -> Totals:
        """Sorted ids (duplicates dropped) and money by tier of these subscribers; an id
        not in the inventory is a KeyError."""
        wanted = set(subscriber_ids)
        found, n = self._sorted_ids, len(self._sorted_ids)
        ranks = sorted(set(map(bisect_left, repeat(found), wanted)))
        # a missing id bisects to another id's rank (or to n): the ids found differ
        if len(ranks) != len(wanted) or (ranks and ranks[-1] == n) or \
                not wanted.issuperset(map(found.__getitem__, ranks)):
            raise KeyError(min(wanted.difference(found[r] for r in ranks if r < n)))
        return self._totals(ranks, [self._sums_of(ranks)])

    def totals_on(self, devices: Iterable[str], ports: Iterable[tuple[str, str]] = ()) -> Totals:
        """Totals of every subscriber on ``devices`` (any port) and on ``ports``."""
        whole = {d for d in devices if d in self._dev_range}
        groups = [self._device_ranks(d) for d in whole]
        sums = [self._device_sums(d) for d in whole]
        for d, p in set(ports):
            ranks = self._device_ports(d).get(p) if d in self._dev_range else None
            if ranks is not None and d not in whole:
                if (d, p) not in self._port_sums:
                    self._port_sums[(d, p)] = self._sums_of(ranks)
                groups.append(ranks)
                sums.append(self._port_sums[(d, p)])
        return self._totals(list(chain.from_iterable(groups)), sums)

    def _totals(self, ranks: list[int], sums: Iterable[_Sums]) -> Totals:
        """Totals from ranks (no two alike) and sums by tier number."""
        tiers = self._table.tiers
        units: dict[str, int] = defaultdict(int)
        count: dict[str, int] = defaultdict(int)
        for part in sums:
            for t, (c, u) in part.items():
                units[tiers[t]] += u
                count[tiers[t]] += c
        return Totals(_pick_sorted(self._sorted_ids, ranks),
                      {t: round(u / UNITS, 2) for t, u in sorted(units.items())},
                      dict(sorted(count.items())))


def _pick_sorted(items: Sequence[str], indexes: list[int]) -> tuple[str, ...]:
    """``tuple(items[i] for i in sorted(indexes))`` (no two indexes alike), in C loops. Many
    indexes (an aggregation node's 100,000 subscribers): a mask over all items, which
    costs less than sorting them; a few: sorted, then one itemgetter."""
    if len(indexes) * 16 >= len(items):
        mask = bytearray(len(items))
        deque(map(mask.__setitem__, indexes, repeat(1)), maxlen=0)
        return tuple(compress(items, mask))
    indexes = sorted(indexes)
    if len(indexes) > 1:
        return operator.itemgetter(*indexes)(items)  # type: ignore[no-any-return]
    return tuple(items[i] for i in indexes)


def _sums(tiers: Sequence[int], units: Sequence[int]) -> _Sums:
    """Subscribers and revenue units by tier number, from parallel columns (C loops)."""
    if not tiers:
        return {}
    if tiers.count(tiers[0]) == len(tiers):  # one tier (often)
        return {tiers[0]: (len(tiers), sum(units))}
    return {t: (c, sum(compress(units, map(operator.eq, tiers, repeat(t)))))
            for t, c in Counter(tiers).items()}


# --- loading ---------------------------------------------------------------------------


_thread = threading.local()  # .off_loop: load_inventory here as reload_inventory does


@contextlib.contextmanager
def off_the_loop() -> Iterator[None]:
    """Within it, ``load_inventory`` in this thread works as ``reload_inventory``: for
    code that loads the inventory in a worker thread through other code (the daemon's
    reload: ``collector.config.load_config``)."""
    before = getattr(_thread, "off_loop", False)
    _thread.off_loop = True
    try:
        yield
    finally:
        _thread.off_loop = before


def load_inventory(paths: Iterable[str | os.PathLike[str]]) -> Inventory:
    """Load and check inventory files; any problem in any file → SourceError listing all.

    A large CSV file is read by Arrow (see ``subscriber_arrow``), or by two processes if
    Arrow's path does not take it (see ``subscriber_csv``). The cyclic garbage collector is
    off meanwhile (for the whole process: also in a ``reload_inventory``)."""
    if getattr(_thread, "off_loop", False):
        return _reload(list(paths))
    return _load_here(paths)


def _load_here(paths: Iterable[str | os.PathLike[str]]) -> Inventory:
    # a million subscribers are a few million objects, none of them in a reference cycle:
    # the cyclic collector would walk them again and again while they are created
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(paths)
    finally:
        if collecting:
            gc.enable()


def _size(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _load(paths: Iterable[str | os.PathLike[str]]) -> Inventory:
    from probes.source import validation_problems

    problems: list[Problem] = []
    devices: dict[str, tuple[Device, Located, tuple[str | int, ...]]] = {}
    table = SubscriberTable()
    for path in paths:
        if str(path).endswith(".csv"):
            problems.extend(load_csv(Path(path), table))
            continue
        try:
            src = _read_yaml(path)
        except SourceError as exc:
            problems.extend(exc.problems)
            continue
        try:
            model = InventoryFile.model_validate(src.data)
        except ValidationError as exc:
            problems.extend(validation_problems(src, exc))
            continue
        for dev_id, dm in model.devices.items():
            if dev_id in devices:
                other = devices[dev_id][1]
                problems.append(src.problem(("devices", dev_id),
                                            f"duplicate device id (also in {other.file})"))
                continue
            devices[dev_id] = (
                Device(dev_id, dm.role, dm.site, tuple(dm.parents),
                       frozenset(dm.ports) if dm.ports is not None else None),
                src, ("devices", dev_id),
            )
        for i, sm in enumerate(model.subscribers):
            table.append(subscriber(sm), src.file, src.line_of(("subscribers", i)))
        for rel in model.subscriber_files:
            problems.extend(load_csv(Path(src.file).parent / rel, table))

    # references and cycles
    for dev, src, loc in devices.values():
        for i, link in enumerate(dev.parents):
            if link.device not in devices:
                problems.append(src.problem((*loc, "parents", i),
                                            "unknown parent device (not in the inventory)",
                                            link.device))
            elif link.device == dev.id:
                problems.append(src.problem((*loc, "parents", i),
                                            "a device cannot be its own parent"))
    problems.extend(_cycles(devices))
    found = {k: v[0] for k, v in devices.items()}
    if not problems and not _unknown_bindings(table, found):
        try:
            inv = Inventory._from_table(found, table)
        except ValueError:  # duplicate ids
            pass
        else:
            table.lines, table.files = array("l"), []  # only for problems
            return inv
    problems.extend(_binding_problems(table, found))
    raise SourceError(problems)


async def reload_inventory(paths: Iterable[str | os.PathLike[str]]) -> Inventory:
    """Load and check the inventory off the event loop, so that it keeps running. Raises
    SourceError like ``load_inventory``; then nothing is to change. A large inventory (a
    file of ``RELOAD_CHILD_FROM`` bytes or more) is loaded by another Python process and
    handed back packed (text columns as one string each, numbers as arrays): a worker
    thread here only unpacks it, holding the GIL for a few short spells; a small one is
    loaded in that thread (also if the other process cannot do it).

    Swapping it in: an ``Inventory`` is immutable, so the new one is handed over whole,
    in one synchronous step on the event loop between two ``Correlator.observe`` calls
    (``correlator.inventory = new``, as ``collector.reload.apply`` does). The correlator
    rebuilds its topology state and impact cache when it sees a different inventory
    object; open incidents keep the impact computed with the old one until their scope
    changes. Both inventories are resident until the old one is dropped.
    """
    paths = list(paths)
    return await asyncio.to_thread(_reload, paths)


def _reload(paths: list[str | os.PathLike[str]]) -> Inventory:
    """A large inventory is loaded in another process: most of the load is pure Python
    (the GIL) and some single calls (sorting a million ids) take half a second, which this
    thread would hold the event loop up for. Here it only unpacks the result."""
    if any(_size(p) >= RELOAD_CHILD_FROM for p in paths):
        inv = _load_in_child(paths)
        if inv is not None:
            return inv
    return _load_here(paths)


def _load_in_child(paths: list[str | os.PathLike[str]]) -> Inventory | None:
    """``load_inventory`` in another process (SourceError as it raises it); None: that
    process could not do it (it could not start, died, or the ids cannot be packed)."""
    proc = python_child(__name__, "_child_main")
    if proc is None:
        return None
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with proc.stdin:
            proc.stdin.write(pickle.dumps([os.fspath(p) for p in paths]))
        with proc.stdout:  # read as it comes: no copy of it all, the GIL let go between reads
            got = pickle.load(proc.stdout)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError):
        proc.kill()
        got = None
    if proc.wait() != 0 or not isinstance(got, tuple) or len(got) != 2:
        return None
    kind, data = got
    if kind == "problems":
        raise SourceError(data)
    if kind != "inventory" or data is None:
        return None
    collecting = gc.isenabled()
    gc.disable()  # as in load_inventory
    try:
        return Inventory._unpack(data)
    finally:
        if collecting:
            gc.enable()


def _child_main() -> None:
    """The entry point of ``_load_in_child``'s process: paths on stdin, the inventory
    (``Inventory._pack``) or the problems found on stdout."""
    paths = pickle.loads(sys.stdin.buffer.read())
    try:
        out: tuple[str, Any] = ("inventory", _load_here(paths)._pack())
    except SourceError as exc:
        out = ("problems", exc.problems)
    pickle.dump(out, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)  # no copy of it all
    sys.stdout.buffer.flush()


def _read_yaml(path: str | os.PathLike[str]) -> Located:
    """``load_yaml``, faster on a valid file (libyaml's parser, strings taken as they are:
    a topology of thousands of devices reads in a fraction of the time); any problem at all
    and ``load_yaml`` reads the file again, to report it as it always has."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return load_yaml(path)
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=loader)
        if node is None:
            return Located(file, {}, {(): 1})
        lines: dict[source.Loc, int] = {}
        return Located(file, _walk(node, (), lines), lines)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, _Irregular, RecursionError):
        return load_yaml(path)


class _Irregular(Exception):
    """Something ``probes.source`` reports (a duplicate key, a key that is not a scalar)."""


_STR = "tag:yaml.org,2002:str"
_SCALARS = yaml.SafeLoader("")  # constructs the scalars that are not strings


def _walk(node: yaml.Node, loc: source.Loc, lines: dict[source.Loc, int]) -> Any:
    """``probes.source``'s walk over composed YAML (values, and the line of every mapping
    key and sequence item), for valid files only."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Irregular
            key = key_node.value if key_node.tag == _STR else \
                _SCALARS.construct_object(key_node)
            if key in out:
                raise _Irregular
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*loc, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return node.value if node.tag == _STR else _SCALARS.construct_object(node)


def _unknown_bindings(table: SubscriberTable, devices: Mapping[str, Device]) -> bool:
    """A quick look (each binding port once) for unknown devices or ports."""
    for device, port in table.bindings:
        dev = devices.get(table.devices[device])
        if dev is None or (dev.ports is not None and table.ports[port] not in dev.ports):
            return True
    return False


def _binding_problems(table: SubscriberTable, devices: Mapping[str, Device]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row, sid in enumerate(table.ids):
        file, line = table.where(row)
        if sid in seen:
            f0, l0 = table.where(seen[sid])
            problems.append(Problem(file, line, f"subscriber {sid}",
                                    f"duplicate subscriber id (first at {f0}:{l0})"))
            continue
        seen[sid] = row
        device, port = table.binding(row)
        dev = devices.get(device)
        if dev is None:
            problems.append(Problem(file, line, f"subscriber {sid}.device",
                                    "unknown device (not in the inventory)", short(device)))
        elif dev.ports is not None and port not in dev.ports:
            problems.append(Problem(file, line, f"subscriber {sid}.port",
                                    f"device {device} has no such port (listed ports: "
                                    f"{', '.join(sorted(dev.ports)[:5])}...)",
                                    short(port)))
    return problems


def _cycles(devices: Mapping[str, tuple[Device, Located, tuple[str | int, ...]]]) -> list[Problem]:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(devices, WHITE)
    problems: list[Problem] = []
    for start in devices:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        colour[start] = GREY
        path.append(start)
        while stack:
            node, i = stack.pop()
            parents = [p.device for p in devices[node][0].parents if p.device in devices]
            if i < len(parents):
                stack.append((node, i + 1))
                nxt = parents[i]
                if colour[nxt] == GREY:
                    cycle = [*path[path.index(nxt):], nxt]
                    _, src, loc = devices[node]
                    problems.append(src.problem((*loc, "parents"),
                                                "parent links form a cycle: " + " -> ".join(cycle)))
                elif colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    path.append(nxt)
                    stack.append((nxt, 0))
            else:
                colour[node] = BLACK
                path.pop()
    return problems
