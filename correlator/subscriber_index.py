"""The orders an inventory needs over its subscribers, worked out part by part.

Two orders: by id (impacts list subscribers sorted; lookups bisect) and by device (the
subscribers behind a device, and their revenue by tier, are slices). Each part of the
table -- the rows one process read -- is indexed on its own, so that two processes index
their halves at the same time; ``merge`` then puts the parts together (merging sorted
runs), which costs far less than indexing the whole table at once in Python. With pyarrow
here, a large table is indexed whole in Arrow instead (``subscriber_arrow.index_rows``;
a file Arrow read comes indexed already).
"""

from __future__ import annotations

import operator
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, islice, repeat
from typing import Any

from correlator.subscribers import SubscriberTable

ARROW_FROM = 1 << 16  # rows: a larger table is indexed whole in Arrow (if pyarrow is here)


@dataclass(slots=True)
class PartIndex:
    """Rows ``start`` to ``start + len(order)`` of a table, indexed."""

    start: int
    order: array[int]  # the part's rows (counted from start) in id order
    sorted_ids: list[str]  # their ids, in that order
    dev_rows: array[int]  # the part's rows (counted from start) by device, then by id
    dev_range: dict[str, tuple[int, int]]  # device -> its slice of dev_rows
    dev_tiers: Sequence[int]  # the rows' tier numbers, in dev_rows order
    dev_units: array[int]  # their revenue units, in dev_rows order
    # the ranks (counted in this part) of dev_rows, if worked out already; for a part that
    # is the whole table they are the index's dev_ranks
    dev_ranks: array[int] | None = None
    # device -> tier number -> (subscribers, revenue units), if worked out already
    dev_sums: dict[str, dict[int, tuple[int, int]]] | None = None

    def to_wire(self) -> dict[str, Any]:
        """For another process (the ids joined by "\\n": see subscriber_csv)."""
        return {"order": self.order.tobytes(), "sorted_ids": "\n".join(self.sorted_ids),
                "dev_rows": self.dev_rows.tobytes(), "dev_range": self.dev_range,
                "dev_tiers": self.dev_tiers if isinstance(self.dev_tiers, bytes)
                else list(self.dev_tiers), "dev_units": self.dev_units.tobytes()}

    @classmethod
    def from_wire(cls, got: dict[str, Any], start: int, tiers: list[int]) -> PartIndex:
        """A part indexed by another process; ``tiers``: its tier numbers -> ours."""
        dev_tiers: Sequence[int] = got["dev_tiers"]
        if isinstance(dev_tiers, bytes) and max(tiers, default=0) < 256:
            dev_tiers = dev_tiers.translate(bytes(tiers) + bytes(256 - len(tiers)))
        else:
            dev_tiers = list(map(tiers.__getitem__, dev_tiers))
        order = ints_from(got["order"])
        sorted_ids = got["sorted_ids"].split("\n") if order else []
        if len(sorted_ids) != len(order):
            raise ValueError("ids and rows differ in number")
        return cls(start, order, sorted_ids, ints_from(got["dev_rows"]), got["dev_range"],
                   dev_tiers, ints_from(got["dev_units"], "q"))


def ints_from(data: bytes, typecode: str = "i") -> array[int]:
    out: array[int] = array(typecode)
    out.frombytes(data)
    return out


def index_part(table: SubscriberTable, start: int, end: int) -> PartIndex:
    ids = table.ids[start:end]
    n = len(ids)
    order = array("i", sorted(range(n), key=ids.__getitem__))
    sorted_ids = list(map(ids.__getitem__, order))
    del ids
    # the part's rows by device, in id order within each: one bucket a device, filled
    # in id order (a C loop: far cheaper than sorting by device)
    devices = table.device_of[start:end]
    buckets: list[list[int]] = [[] for _ in table.devices]
    deque(map(list.append, map(buckets.__getitem__, map(devices.__getitem__, order)), order),
          maxlen=0)
    dev_rows = array("i", chain.from_iterable(buckets))
    ends = list(accumulate(map(len, buckets)))
    dev_range = {table.devices[code]: (stop - len(rows), stop)
                 for code, (rows, stop) in enumerate(zip(buckets, ends, strict=True)) if rows}
    del buckets
    rows = list(map(operator.add, dev_rows, repeat(start)))
    tiers = map(table.tier.__getitem__, rows)
    return PartIndex(start, order, sorted_ids, dev_rows, dev_range,
                     bytes(tiers) if len(table.tiers) <= 256 else list(tiers),
                     array("q", map(table.units.__getitem__, rows)))


@dataclass(slots=True)
class Index:
    order: array[int]  # rank -> row
    sorted_ids: tuple[str, ...]  # rank -> id
    dev_ranks: array[int]  # ranks grouped by device (ascending in each part of the table)
    dev_range: dict[str, tuple[int, int]]  # device -> its slice of the dev_ arrays
    dev_tiers: Sequence[int]  # tier numbers, in dev_rows order
    dev_units: array[int]  # revenue units, in dev_rows order
    # device -> tier number -> (subscribers, revenue units), where worked out already
    dev_sums: dict[str, dict[int, tuple[int, int]]] | None = None


def merge(table: SubscriberTable, parts: Iterable[PartIndex]) -> Index:
    """The index of the whole table from the indexes of its parts (in row order, each
    beginning where the one before ends); rows no part covers are indexed here. Raises
    ValueError on duplicate ids."""
    n = len(table.ids)
    parts = sorted(parts, key=lambda p: p.start)
    if n >= ARROW_FROM and not (len(parts) == 1 and parts[0].dev_ranks is not None
                                and len(parts[0].order) == n):
        from correlator import subscriber_arrow  # (it imports this module)

        whole = subscriber_arrow.index_rows(table, 0, n)
        if whole is not None:  # the whole table at once, in Arrow: faster than merging
            parts = [whole]
    covered: list[PartIndex] = []
    at = 0
    for part in parts:
        if part.start > at:
            covered.append(index_part(table, at, part.start))
        covered.append(part)
        at = part.start + len(part.order)
    if at < n or not covered:
        covered.append(index_part(table, at, n))
    sorted_ids: tuple[str, ...]  # a tuple of strings: the garbage collector skips it
    if len(covered) == 1:
        order, sorted_ids = covered[0].order, tuple(covered[0].sorted_ids)
    else:  # the parts' sorted ids one after the other: sorted runs, which a sort merges
        runs = list(chain.from_iterable(p.sorted_ids for p in covered))
        merged = sorted(range(n), key=runs.__getitem__)
        sorted_ids = tuple(map(runs.__getitem__, merged))
        rows = array("i", chain.from_iterable(map(operator.add, p.order, repeat(p.start))
                                              for p in covered))
        order = array("i", map(rows.__getitem__, merged))
        del runs, merged, rows
    if any(map(operator.eq, sorted_ids, islice(sorted_ids, 1, None))):
        raise ValueError("duplicate subscriber ids")
    whole = covered[0]
    if len(covered) == 1 and whole.start == 0 and whole.dev_ranks is not None:
        return Index(order, sorted_ids, whole.dev_ranks, whole.dev_range,
                     whole.dev_tiers, whole.dev_units, whole.dev_sums)
    row_rank = array("i", bytes(4 * n))
    deque(map(row_rank.__setitem__, order, range(n)), maxlen=0)  # the inverse of order
    dev_rows: array[int] = array("i")
    dev_units: array[int] = array("q")
    tiers: list[Sequence[int]] = []
    dev_range: dict[str, tuple[int, int]] = {}
    for name in dict.fromkeys(chain.from_iterable(p.dev_range for p in covered)):
        begin = len(dev_rows)
        for p in covered:
            span = p.dev_range.get(name)
            if span is not None:
                s, e = span
                dev_rows.extend(map(operator.add, p.dev_rows[s:e], repeat(p.start))
                                if p.start else p.dev_rows[s:e])
                dev_units.extend(p.dev_units[s:e])
                tiers.append(p.dev_tiers[s:e])
        dev_range[name] = (begin, len(dev_rows))
    dev_tiers: Sequence[int] = b"".join(tiers) if all(  # type: ignore[arg-type]
        isinstance(t, bytes) for t in tiers) else list(chain.from_iterable(tiers))
    return Index(order, sorted_ids, array("i", map(row_rank.__getitem__, dev_rows)),
                 dev_range, dev_tiers, dev_units)
