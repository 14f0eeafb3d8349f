"""Reading subscriber bindings from CSV: fast, and as strict as the pydantic model.

A file is read in blocks. A block of plain lines (no quotes, as many commas on every line)
is split in one go and converted column by column (``subscribers._Columns``); a block or
a row that the converters do not take is read line by line (``csv`` rules) and, down to
the single rows, the pydantic model decides and explains: problems read
``file:line: column: message (got …)`` exactly as they always have.

A large file is read by Arrow (``subscriber_arrow``) when that path takes it: every file
without quotes, odd line ends or a value the converters refuse. Otherwise, a large file
is read by two processes: this one reads the first half while a second Python process
reads the second half and sends its columns back (text packed, arrays as bytes); if
anything goes wrong with it, or a quoted field goes on past the split (the second one
started inside it), this process reads that half itself.
"""

from __future__ import annotations

import csv
import gc
import io
import operator
import os
import pickle
import subprocess
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import chain, repeat
from pathlib import Path
from typing import IO, Any, BinaryIO

from pydantic import ValidationError

from correlator import subscriber_arrow
from correlator.subscriber_index import PartIndex, index_part, ints_from
from correlator.subscribers import (
    CSV_COLUMNS,
    CSV_REQUIRED,
    SubscriberModel,
    SubscriberTable,
    _Columns,
    subscriber,
)
from probes.source import Problem, short

_BLOCK = 1 << 18  # characters read at a time
_CHUNK = 4096  # rows converted at a time on the line-by-line path
PARALLEL_FROM = 32 << 20  # bytes: smaller files are read by this process alone
ARROW_FROM = 8 << 20  # bytes: larger files are read by Arrow first (see subscriber_arrow)
# pyarrow here: the table is indexed whole in Arrow (subscriber_index.merge), so the two
# processes reading a file do not index their parts
_ARROW = subscriber_arrow.available()


def load_csv(path: Path, out: SubscriberTable, *, parallel: bool = True) -> list[Problem]:
    """Append the subscribers of one CSV file to ``out``; the problems found (if any,
    ``out`` is not to be used). A large file is read by Arrow if its path takes it, else
    (``parallel``) by this process and a ``Worker``."""
    file = str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 -- closed below
    except OSError as exc:
        return [Problem(file, None, "", f"cannot read: {exc.strerror}")]
    with raw:
        try:
            header, line, start = _header(raw)
            bad = _header_problem(file, header)
            if bad is not None:
                return [bad]
            size = os.fstat(raw.fileno()).st_size
            if size - start >= ARROW_FROM and subscriber_arrow.read(raw, file, header, line,
                                                                    start, out):
                return []
            split = _split(raw, start, size) if parallel else size
            reader = _Reader(file, header, out, line)
            worker = None
            if split < size:
                worker = Worker()
                worker.start(file, header, split, size)
                reader.after = _text(raw, split, size)  # for a record going on past the split
            first = len(out)
            try:
                reader.read(_text(raw, start, split))
            except BaseException:
                if worker is not None:
                    worker.stop()
                raise
            if worker is not None and reader.crossed:
                # a quoted field went on past the split: the worker started inside it
                worker.stop()
                assert reader.after is not None
                rest, reader.after = reader.after, None
                reader.read(rest)
            elif worker is not None:
                if not _ARROW:  # else the whole table is indexed in Arrow (merge)
                    # index this part while the worker finishes (and indexes) the other
                    out.parts.append(index_part(out, first, len(out)))
                if not worker.merge(out, reader):
                    reader.read(_text(raw, split, size))
            return reader.problems
        except (csv.Error, UnicodeDecodeError) as exc:
            return [Problem(file, None, "", f"cannot read: {exc}")]


def _header(raw: BinaryIO) -> tuple[list[str], int, int]:
    """The header record, the lines it took and the byte offset after it."""
    taken = 0

    def lines() -> Iterator[str]:
        nonlocal taken
        while line := raw.readline():
            taken += 1
            yield line.decode("utf-8")

    header = next(csv.reader(lines()), [])
    return header, taken, raw.tell()


def _header_problem(file: str, header: list[str]) -> Problem | None:
    unknown = [c for c in header if c not in CSV_COLUMNS]
    missing = [c for c in CSV_REQUIRED if c not in header]
    twice = sorted({c for c in header if header.count(c) > 1})
    if not (unknown or missing or twice):
        return None
    what = []
    if unknown:
        what.append(f"unknown column(s) {', '.join(unknown)}")
    if missing:
        what.append(f"missing column(s) {', '.join(missing)}")
    if twice:
        what.append(f"column(s) named twice: {', '.join(twice)}")
    return Problem(file, 1, "header", "; ".join(what) + f" (columns are: {', '.join(CSV_COLUMNS)})")


class _Range(io.RawIOBase):
    """Bytes ``start`` to ``end`` of a file."""

    def __init__(self, raw: BinaryIO, start: int, end: int) -> None:
        self.fd, self.pos, self.end = raw.fileno(), start, end

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        data = os.pread(self.fd, n, self.pos)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def _text(raw: BinaryIO, start: int, end: int) -> IO[str]:
    return io.TextIOWrapper(io.BufferedReader(_Range(raw, start, end), 1 << 20),
                            encoding="utf-8", newline="")


def _split(raw: BinaryIO, start: int, size: int) -> int:
    """Where a second process should start: a line near the middle of a large file;
    ``size``: not worth it. (A quoted field may hold line breaks: if one goes on past
    the split, this process reads on and the second one's part is not used.)"""
    if size - start < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
        return size
    middle = start + (size - start) // 2
    after = os.pread(raw.fileno(), 1 << 16, middle).find(b"\n")
    return size if after < 0 else middle + after + 1


class _Reader:
    """Converts the records of (part of) a file into rows of a table."""

    def __init__(self, file: str, header: list[str], out: SubscriberTable, line: int) -> None:
        self.file = file
        self.header = header
        self.out = out
        self.line = line  # the last line read
        self.columns = _Columns({c: i for i, c in enumerate(header)}, out)
        self.problems: list[Problem] = []
        # the text after this reader's part (another process reads it), and whether a
        # record went on into it
        self.after: IO[str] | None = None
        self.crossed = False

    def read(self, fh: IO[str]) -> None:
        while block := fh.read(_BLOCK):
            if not block.endswith("\n"):
                block += fh.readline()  # whole lines only
            if not self._plain(block) and not self._quoted(block):
                self._by_line(block, fh)

    def _plain(self, block: str) -> bool:
        """A block of lines without quotes (or lone carriage returns), each with one field
        per column: split at once and converted by column. False: not such a block."""
        if '"' in block:
            return False
        newline = "\n"
        if "\r" in block:
            crlf = block.count("\r\n")
            if block.count("\r") != crlf or block.count("\n") != crlf:
                return False  # lone CRs or LFs as well: by line
            newline = "\r\n"  # as csv: CRLF ends a line, like LF
        if not block.endswith("\n"):
            block += newline  # the last line of the file
        n = block.count(newline)
        width = len(self.header)
        # Split on commas only: the field that ends a line and the one that starts the next
        # come out joined by the newline. Every line has width - 1 commas exactly when
        # every (width - 1)th field holds one of the newlines.
        flat = block.split(",")
        ends = flat[width - 1::width - 1]
        if len(flat) != n * (width - 1) + 1 or set(map(str.count, ends, repeat(newline))) != {1}:
            return False
        edges = newline.join(ends).split(newline)  # last, first, last, ..., last, ""
        cols = [[flat[0], *edges[1:-1:2]], *(flat[i::width - 1] for i in range(1, width - 1)),
                edges[0::2]]
        numbers = range(self.line + 1, self.line + 1 + n)
        self.line += n
        chunk = self.columns.convert(cols, n)
        if chunk is not None:
            self.out.extend(chunk, self.file, numbers)
        else:
            self._rows([list(row) for row in zip(*cols, strict=True)], numbers)
        return True

    def _quoted(self, block: str) -> bool:
        """A block with quotes, read by one strict ``csv`` reader: strict only refuses
        input (a quote out of place, a quoted field going on past the block), so what it
        takes it reads as ``_by_line`` would, in a fraction of the time (one reader, not
        one a line). False: refused, nothing read."""
        if '"' not in block:
            return False
        reader = csv.reader(io.StringIO(block, newline=""), strict=True)
        try:
            rows = list(reader)
        except csv.Error:
            return False
        numbers: Sequence[int] = range(self.line + 1, self.line + 1 + len(rows))
        if len(rows) != reader.line_num or not all(rows):
            # a record of several lines, or blank lines (skipped): number them one by one
            reader = csv.reader(io.StringIO(block, newline=""), strict=True)
            rows, numbers = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    numbers.append(self.line + reader.line_num)
        self.line += reader.line_num
        for at in range(0, len(rows), _CHUNK):
            self._rows(rows[at:at + _CHUNK], numbers[at:at + _CHUNK])
        return True

    def _by_line(self, block: str, fh: IO[str]) -> None:
        """Records as ``csv.reader`` reads them; a quoted field may go on past the block."""
        lines = io.StringIO(block, newline="")
        more = chain(lines, fh, self._past())
        rows: list[list[str]] = []
        numbers: list[int] = []
        for line in lines:
            self.line += 1
            if '"' in line:
                row = next(csv.reader(chain((line,), self._counted(more))), [])
            else:
                line = line.rstrip("\r\n")
                row = line.split(",") if line else []
            if row:  # blank lines are skipped
                rows.append(row)
                numbers.append(self.line)
                if len(rows) == _CHUNK:
                    self._rows(rows, numbers)
                    rows, numbers = [], []
        if rows:
            self._rows(rows, numbers)

    def _past(self) -> Iterator[str]:
        """Lines after this reader's part, for a record that goes on into them."""
        if self.after is not None:
            for line in self.after:
                self.crossed = True
                yield line

    def _counted(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            self.line += 1
            yield line

    def _rows(self, rows: list[list[str]], numbers: Sequence[int]) -> None:
        """Rows converted by column; where that fails, halves of them, down to single
        rows, which go to ``_row``."""
        if set(map(len, rows)) == {len(self.header)}:
            chunk = self.columns.convert(list(zip(*rows, strict=True)), len(rows))
            if chunk is not None:
                self.out.extend(chunk, self.file, numbers)
                return
        if len(rows) == 1:
            self._row(rows[0], numbers[0])
            return
        half = len(rows) // 2
        self._rows(rows[:half], numbers[:half])
        self._rows(rows[half:], numbers[half:])

    def _row(self, row: list[str], line: int) -> None:
        """One row the fast path did not take: the pydantic model decides (and explains)."""
        file, header = self.file, self.header
        if len(row) > len(header):
            self.problems.append(Problem(file, line, "", "more fields than header columns"))
            return
        # as csv.DictReader: missing trailing fields are empty
        row = row + [""] * (len(header) - len(row))
        data: dict[str, Any] = {k: v for k, v in zip(header, row, strict=True) if v != ""}
        contact = {k: data.pop(k) for k in ("email", "phone") if k in data}
        consent = {k[len("consent_"):]: data.pop(k) for k in ("consent_email", "consent_sms")
                   if k in data}
        data["contact"] = contact
        data["consent"] = consent
        try:
            sm = SubscriberModel.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                col = loc.replace("contact.", "").replace("consent.", "consent_")
                msg = "required column is empty" if err["type"] == "missing" else err["msg"]
                got = None if err["type"] == "missing" else short(err.get("input"))
                self.problems.append(Problem(file, line, col, msg, got))
            return
        self.out.append(subscriber(sm), file, line)


# --- the second process ----------------------------------------------------------------

# ids are sent as one string (joined by "\n": the file has no quotes, so no field holds
# one); the other text as packed runs (TextColumn); arrays as bytes
_TEXT = ("ids",)
_PACKED = ("account", "name", "onu_id", "modem_mac", "cpe_mac", "email", "phone")
_ARRAYS = ("revenue", "units", "contract_end", "churn", "plan")  # same typecodes both sides


def python_child(module: str, function: str) -> subprocess.Popen[bytes] | None:
    """A Python process running ``module.function()`` with this process's import path
    (and nothing before it: ``-P``, so that its working directory cannot put other code
    first), its stdin and stdout piped; None if it cannot start."""
    path = os.pathsep.join(os.path.abspath(p) for p in sys.path)  # "": the working directory
    env = {**os.environ, "PYTHONPATH": path}
    try:
        return subprocess.Popen([sys.executable, "-P", "-c",
                                 f"import {module} as m; m.{function}()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    except OSError:
        return None


class Worker:
    """A second Python process that reads bytes ``start`` to ``end`` of a CSV file (its
    part, sent on its stdin) and sends its columns back, pickled, on its stdout. It takes
    about half a second to start (imports)."""

    def __init__(self) -> None:
        self.proc = python_child(__name__, "_main")

    def start(self, file: str, header: list[str], start: int, end: int) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        try:
            with self.proc.stdin:
                # its part indexed there too, unless the table is indexed in Arrow
                self.proc.stdin.write(pickle.dumps((file, start, end, header, not _ARROW)))
        except OSError:  # it died: merge() says so
            pass

    def stop(self) -> None:
        """Its part is not wanted any more."""
        if self.proc is not None:
            self.proc.kill()
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc.wait()
            self.proc = None

    def merge(self, out: SubscriberTable, reader: _Reader) -> bool:
        """Append the worker's rows after the reader's; False: read that part here."""
        if self.proc is None:
            return False
        assert self.proc.stdout is not None
        try:
            with self.proc.stdout:
                got = pickle.loads(self.proc.stdout.read())
        except (EOFError, OSError, pickle.UnpicklingError):
            got = None
        if self.proc.wait() != 0 or not got:
            return False
        n, offset = got["n"], reader.line
        text = {k: got[k].split("\n") if n else [] for k in _TEXT}
        if any(len(col) != n for col in text.values()):
            return False
        out._file(reader.file)
        out.ids.extend(text["ids"])
        for name in _PACKED:
            for packed, ends in got[name]:
                getattr(out, name).extend_packed(packed, ints_from(ends, "q"))
        ports = [out.port_number(p) for p in got["ports"]]
        out.port_of.extend(array("i", map(ports.__getitem__, ints_from(got["port_of"]))))
        devices = [out.device_number(d) for d in got["devices"]]
        out.device_of.extend(array("i", map(devices.__getitem__, ints_from(got["device_of"]))))
        tiers = [out.tier_number(t) for t in got["tiers"]]
        out.tier.extend(array("i", map(tiers.__getitem__, ints_from(got["tier"]))))
        for name in _ARRAYS:
            getattr(out, name).frombytes(got[name])
        out.consent.extend(got["consent"])
        out.lines.extend(map(operator.add, ints_from(got["lines"], "l"), repeat(offset)))
        out.bindings.update((devices[d], ports[p]) for d, p in got["bindings"])
        if got["index"] is not None:
            out.parts.append(PartIndex.from_wire(got["index"], len(out) - n, tiers))
        reader.problems.extend(replace(p, line=p.line + offset) if p.line else p
                               for p in got["problems"])
        reader.line += got["last_line"]
        return True


def _work(file: str, start: int, end: int, header: list[str], index: bool,
          out: BinaryIO) -> None:
    """In the worker: read the part, write the columns (pickled) to ``out``."""
    gc.disable()  # as in load_inventory: millions of objects, no cycles
    table = SubscriberTable()
    reader = _Reader(file, header, table, 0)
    with open(file, "rb") as raw:
        reader.read(_text(raw, start, end))
    got: dict[str, Any] = {k: "\n".join(getattr(table, k)) for k in _TEXT}
    for name in _PACKED:
        got[name] = [(packed, ends.tobytes()) for packed, ends in getattr(table, name).runs()]
    got.update({k: getattr(table, k).tobytes() for k in _ARRAYS})
    got.update(
        n=len(table), devices=table.devices, device_of=table.device_of.tobytes(),
        ports=table.ports, port_of=table.port_of.tobytes(),
        tiers=table.tiers, tier=table.tier.tobytes(), consent=bytes(table.consent),
        lines=table.lines.tobytes(), problems=reader.problems, last_line=reader.line,
        bindings=list(table.bindings),
        index=index_part(table, 0, len(table)).to_wire() if index else None,
    )
    out.write(pickle.dumps(got, protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()


def _main() -> None:
    """The worker's entry point (see ``Worker``): its part on stdin, or nothing to do."""
    job = sys.stdin.buffer.read()
    if job:
        file, start, end, header, index = pickle.loads(job)
        _work(file, start, end, header, index, sys.stdout.buffer)
