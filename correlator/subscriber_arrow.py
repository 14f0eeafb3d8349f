"""Reading a large subscriber CSV file with Apache Arrow: the same table, a few times faster.

Arrow's CSV reader (C++, on every core) splits the file into columns of text. The values
are still judged by the pure-Python reader's converters (``subscribers._Columns``), once
for each *distinct* text of a column (dictionary encoding), so what is accepted and what it
converts to cannot differ from the pure-Python reader; the e-mail and phone patterns run
in Arrow (RE2) only where they mean the same as Python's (see ``_EMAIL_ASCII``). The ids
are sorted and the part of the inventory index this file makes (``PartIndex``) is built
in Arrow too; so is the index of a large table read some other way (``index_rows``).

Anything this path does not take, and ``read`` returns False having changed nothing: the
pure-Python reader reads the file and reports its problems as it always has
(``file:line: column: message``). That is: quotes, lone carriage returns, blank lines, a
row with more or fewer fields than the header, bytes that are not UTF-8, and any value a
converter refuses.
"""

from __future__ import annotations

import importlib.util
import mmap
import operator
import re
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate
from typing import TYPE_CHECKING, Any, BinaryIO

from correlator.subscriber_index import PartIndex
from correlator.subscribers import (
    _BOOLS,
    _BOOLS_SMS,
    _EMAIL,
    UNITS,
    SubscriberTable,
    _churn,
    _date,
    _decimal,
    _plan,
)

if TYPE_CHECKING:
    import pyarrow as pa

_TEXT = ("account", "name", "onu_id", "modem_mac", "cpe_mac", "email", "phone")
# Python's \s (str patterns) on ASCII text: \t \n \v \f \r, \x1c-\x1f and the space. On an
# all-ASCII column this RE2 pattern accepts exactly what subscribers._EMAIL accepts.
_NOT_AT_OR_SPACE = r"[^@\t\n\v\f\r\x1c-\x1f ]"
_EMAIL_ASCII = rf"^(?:|{_NOT_AT_OR_SPACE}+@{_NOT_AT_OR_SPACE}+\.{_NOT_AT_OR_SPACE}+)$"
_PHONE = r"^(?:|\+?[0-9 ()-]{5,20})$"  # subscribers._PHONE, or empty (ASCII either way)
BLOCK = 1 << 20  # bytes Arrow parses at a time (a chunk of every column)
_LONE_CR = re.compile(rb"\r(?!\n)")  # csv would end a line there; refused


class _Declined(Exception):
    """Not a file (or a value) this path takes: the pure-Python reader reads the file."""


def read(raw: BinaryIO, file: str, header: list[str], line: int, start: int,
         out: SubscriberTable) -> bool:
    """Append the rows of ``raw`` after byte ``start`` (after a header of ``line`` lines,
    with the columns ``header``) to ``out``, and their ``PartIndex`` to ``out.parts``.
    False: not read (``out`` unchanged); read it the pure-Python way."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
    except ImportError:
        return False
    reader: _Read | None = None
    try:
        table = _parse(raw, start, header, line, file, pa, pcsv)
        if table is None:
            return False
        reader, table = _Read(table, out, pa, pc), None
        try:
            reader.into(file, line)
        except _Declined:
            return False
        return True
    finally:
        table = reader = None
        pa.default_memory_pool().release_unused()  # Arrow's columns are gone: give it back


def _parse(raw: BinaryIO, start: int, header: list[str], line: int, file: str, pa: Any,
           pcsv: Any) -> Any:
    """The file after its header (``line`` lines, ``start`` bytes) as an Arrow table of
    text columns; None: refused."""
    if line != 1:
        return None
    try:
        with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as whole:
            if whole.find(b'"', start) >= 0 or _LONE_CR.search(whole, start):
                return None
    except (OSError, ValueError):
        return None
    try:
        # blank lines would be rows of one empty field (ignore_empty_lines=False): refused
        table = pcsv.read_csv(
            file,
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=line,
                                          use_threads=True, block_size=BLOCK),
            parse_options=pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False,
                                            newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False,
                check_utf8=True),
        )
    except (pa.ArrowException, OSError):
        return None
    return table if table.num_rows else None


class _Read:
    """The columns of one Arrow table, checked and converted, then added to a table."""

    def __init__(self, table: pa.Table, out: SubscriberTable, pa: Any, pc: Any) -> None:
        self.out, self.pa, self.pc = out, pa, pc
        # columns are let go once in the table (see _text): less memory at the peak
        self.columns: dict[str, Any] = dict(zip(table.column_names, table.columns, strict=True))
        self.n: int = table.num_rows
        self.encodings: dict[str, tuple[list[str], Any]] = {}

    def col(self, name: str) -> Any:
        """A column's chunked array (None: the file has no such column)."""
        return self.columns.get(name)

    def encoded(self, name: str) -> tuple[list[str], Any]:
        """A column's distinct texts (in order met) and each row's number into them; a
        column the file does not have is empty text."""
        got = self.encodings.get(name)
        if got is None:
            pa, pc = self.pa, self.pc
            column = self.col(name)
            if column is None:
                got = [""], pa.nulls(self.n, pa.int32()).fill_null(0)
            else:
                chunks = pc.dictionary_encode(column).chunks  # one dictionary for all
                got = chunks[-1].dictionary.to_pylist(), pa.chunked_array(
                    [c.indices for c in chunks], pa.int32())
            self.encodings[name] = got
        return got

    def converted(self, name: str, convert: Callable[[str], Any], kind: Any) -> Any:
        """Each row's value converted (an Arrow array of ``kind``)."""
        return self.by_row(name, self.distinct(name, convert), kind)

    def distinct(self, name: str, convert: Callable[[str], Any]) -> list[Any]:
        """A column's distinct texts converted (``encoded``'s order)."""
        try:
            return list(map(convert, self.encoded(name)[0]))
        except (ValueError, KeyError):
            raise _Declined from None

    def by_row(self, name: str, values: list[Any], kind: Any) -> Any:
        """Each row's value of ``values`` (one per distinct text), an Arrow array."""
        return self.pc.take(self.pa.array(values, kind), self.encoded(name)[1])

    def matches(self, name: str, pattern: str) -> bool:
        column = self.col(name)
        return column is None or bool(
            self.pc.all(self.pc.match_substring_regex(column, pattern)).as_py())

    def into(self, file: str, line: int) -> None:
        pc = self.pc
        ids = self.col("id")
        if pc.any(pc.equal(pc.binary_length(ids), 0)).as_py():
            raise _Declined
        with ThreadPoolExecutor(1) as pool:  # the ids sorted meanwhile (Arrow lets go of the GIL)
            self._into(file, line, ids, pool.submit(self._sort, ids))

    def _sort(self, ids: Any) -> tuple[Any, Any]:
        """The order of the rows by id, and the ids in that order."""
        order = self.pc.cast(self.pc.sort_indices(ids), self.pa.int32())
        return order, self.pc.take(ids, order)

    def _into(self, file: str, line: int, ids: Any, sort: Future[tuple[Any, Any]]) -> None:
        pa, pc, out, n = self.pa, self.pc, self.out, self.n
        # first every check, then the table changes (device, port and tier numbers)
        device_texts, device_ix = self.encoded("device")
        port_texts, port_ix = self.encoded("port")
        if "" in device_texts or "" in port_texts:
            raise _Declined
        money = self.distinct("monthly_revenue", _decimal)
        revenue = self.by_row("monthly_revenue", money, pa.float64())
        units = self.by_row("monthly_revenue", [round(x * UNITS) for x in money], pa.int64())
        churn = self.converted("churn_risk", _churn, pa.float64())
        ends = self.converted("contract_end", _date, pa.int32())
        plan = self.converted("plan_mbps", _plan, pa.float64())
        consent = pc.bit_wise_or(
            self.converted("consent_email", _BOOLS.__getitem__, pa.uint8()),
            self.converted("consent_sms", _BOOLS_SMS.__getitem__, pa.uint8()))
        if not self.matches("phone", _PHONE) or not self._emails_valid():
            raise _Declined
        tier_texts, tier_ix = self.encoded("sla_tier")

        start = len(out)
        devices = pc.take(pa.array(list(map(out.device_number, device_texts)), pa.int32()),
                          device_ix)
        ports = pc.take(pa.array(list(map(out.port_number, port_texts)), pa.int32()), port_ix)
        tiers = pc.take(pa.array(list(map(out.tier_number, tier_texts)), pa.int32()), tier_ix)
        out._file(file)
        out.ids.extend(ids.to_pylist())
        for name in _TEXT:
            self._text(name)
        out.device_of.extend(_ints(devices, "i"))
        out.port_of.extend(_ints(ports, "i"))
        out.revenue.extend(_ints(revenue, "d"))
        out.units.extend(_ints(units, "q"))
        out.tier.extend(_ints(tiers, "i"))
        out.contract_end.extend(_ints(ends, "i"))
        out.churn.extend(_ints(churn, "d"))
        out.consent.extend(_ints(consent, "B"))
        out.plan.extend(_ints(plan, "d"))
        out.lines.extend(array("l", range(line + 1, line + 1 + n)))
        pairs = pa.table({"d": devices, "p": ports}).group_by(["d", "p"]).aggregate([])
        out.bindings.update(zip(pairs.column("d").to_pylist(), pairs.column("p").to_pylist(),
                                strict=True))
        out.parts.append(_part_index(pa, pc, out, start, sort.result(), devices, tiers, units))

    def _emails_valid(self) -> bool:
        """RE2 judges the ASCII addresses, Python's ``re`` the others."""
        pc = self.pc
        column = self.col("email")
        if column is None:
            return True
        other = pc.invert(pc.string_is_ascii(column))
        if not pc.all(pc.or_(other, pc.match_substring_regex(column, _EMAIL_ASCII))).as_py():
            return False
        return all(map(_EMAIL.fullmatch, pc.filter(column, other).to_pylist()))

    def _text(self, name: str) -> None:
        """A text column, a packed run (``TextColumn.extend_packed``) per Arrow chunk."""
        target = getattr(self.out, name)
        column = self.col(name)
        if column is None:
            target.extend_packed("", array("q", bytes(8 * self.n)))
            return
        pc, pa = self.pc, self.pa
        for chunk in column.chunks:
            if not len(chunk):
                continue
            offsets = _ints(chunk, "i", extra=1)
            first, last = offsets[0], offsets[-1]
            text = str(memoryview(chunk.buffers()[2])[first:last], "utf-8") if last > first \
                else ""  # (all empty: there may be no data buffer at all)
            lengths = pc.cumulative_sum(pc.utf8_length(chunk))
            target.extend_packed(text, _ints(pc.cast(lengths, pa.int64()), "q"))
        del column, self.columns[name]
        pa.default_memory_pool().release_unused()


def _part_index(pa: Any, pc: Any, out: SubscriberTable, start: int, sorted_: tuple[Any, Any],
                devices: Any, tiers: Any, units: Any) -> PartIndex:
    """Rows of ``out`` from ``start`` indexed (see ``subscriber_index.index_part``, which
    this matches: Arrow's sorts are stable, and its order of strings is Python's), with
    each device's ranks and sums; ``sorted_``: the rows' order by id, and the ids in it."""
    order, ids_in_order = sorted_
    sorted_ids: list[str] = ids_in_order.to_pylist()
    ranks_by_device = pc.cast(pc.sort_indices(pc.take(devices, order)), pa.int32())
    by_device = pc.take(order, ranks_by_device)
    counts = pc.value_counts(devices)
    codes = counts.field("values").to_pylist()
    sizes = counts.field("counts").to_pylist()
    dev_range: dict[str, tuple[int, int]] = {}
    pairs = sorted(zip(codes, sizes, strict=True))
    for (code, size), stop in zip(pairs, accumulate(map(operator.itemgetter(1), pairs)),
                                  strict=True):
        dev_range[out.devices[code]] = (stop - size, stop)
    dev_tiers = pc.take(tiers, by_device)
    tier_seq: Sequence[int] = _ints(pc.cast(dev_tiers, pa.uint8()), "B").tobytes() \
        if len(out.tiers) <= 256 else dev_tiers.to_pylist()
    # each device's subscribers and revenue by tier (what an impact adds up)
    sums = pa.table({"d": devices, "t": tiers, "u": units}).group_by(["d", "t"]).aggregate(
        [("u", "sum"), ("u", "count")])
    dev_sums: dict[str, dict[int, tuple[int, int]]] = {}
    for code, tier, total, count in zip(*(sums.column(c).to_pylist() for c in (
            "d", "t", "u_sum", "u_count")), strict=True):
        dev_sums.setdefault(out.devices[code], {})[tier] = (count, total)
    return PartIndex(start, _ints(order, "i"), sorted_ids, _ints(by_device, "i"),
                     dev_range, tier_seq, _ints(pc.take(units, by_device), "q"),
                     _ints(ranks_by_device, "i"), dev_sums)


def available() -> bool:
    """Whether pyarrow is installed here (without importing it: that takes a while)."""
    return importlib.util.find_spec("pyarrow") is not None


def index_rows(table: SubscriberTable, start: int, end: int) -> PartIndex | None:
    """Rows ``start`` to ``end`` of a table read some other way (the pure-Python reader,
    inline YAML) indexed in Arrow: the same ``PartIndex`` as ``index_part`` makes, with
    each device's ranks and sums, in a fraction of the time; None: no pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return None
    n = end - start

    def column(values: array[Any], kind: Any) -> Any:
        part = values[start:end]
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(part)])

    try:
        ids = pa.array(table.ids[start:end], pa.string())
        order = pc.cast(pc.sort_indices(ids), pa.int32())
        return _part_index(pa, pc, table, start, (order, pc.take(ids, order)),
                           column(table.device_of, pa.int32()), column(table.tier, pa.int32()),
                           column(table.units, pa.int64()))
    finally:
        pa.default_memory_pool().release_unused()


def _ints(values: Any, typecode: str, *, extra: int = 0) -> array[Any]:
    """An Arrow array (or chunked array) of fixed-width numbers without nulls as a Python
    ``array`` of ``typecode`` (of the same width); of a string array, with ``extra=1``,
    its offsets."""
    out: array[Any] = array(typecode)
    chunks = values.chunks if hasattr(values, "chunks") else [values]
    size = out.itemsize
    for chunk in chunks:
        if len(chunk):
            first = chunk.offset * size
            last = first + (len(chunk) + extra) * size
            out.frombytes(memoryview(chunk.buffers()[1])[first:last])
    return out
