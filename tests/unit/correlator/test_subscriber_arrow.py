"""Reading subscriber CSV files with Arrow changes nothing: it is an accelerator only.

``subscriber_arrow.read`` takes a file (or declines it, leaving the table untouched) and
the pure-Python reader (``subscriber_csv``) reads whatever it declines. For any file, a read
with Arrow forced (``subscriber_csv.ARROW_FROM = 0``) must give what the pure-Python read
gives: the same subscribers and problems (compared with the old reader, ``reference``), the
same table internals (ids, text columns, device/port/tier numbering, numbers, lines,
files, bindings) and, once loaded, the same ``Inventory`` internals (order, ranks, device
ranges, tiers and units per device; where the table is indexed in parts, each device's
entries as a set, since ``subscriber_index.merge`` lists them part by part).
``subscriber_arrow.BLOCK`` is made small in most tests, so that every column comes in many
Arrow chunks: their offsets are where bugs would hide.
Each test checks (with a spy on ``read``) that the Arrow path was really taken, or not.
"""

from __future__ import annotations

import re
import tempfile
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from correlator import subscriber_arrow, subscriber_csv, subscribers
from correlator.inventory import Inventory, load_inventory
from correlator.subscriber_csv import load_csv
from correlator.subscribers import CSV_COLUMNS, CSV_REQUIRED, SubscriberTable
from probes.source import SourceError
from tests.unit.correlator.test_inventory_scale import (
    GOOD,
    VALUES,
    big_file,
    csv_files,
    fast,
    reference,
)

TEXT_COLUMNS = ("account", "name", "onu_id", "modem_mac", "cpe_mac", "email", "phone")
DEVICES = "".join(f"  olt{i}: {{}}\n" for i in range(7))
NEVER = 1 << 40

# --- helpers ----------------------------------------------------------------------------


@contextmanager
def arrow(on: bool, block: int = 1 << 20) -> Iterator[list[bool]]:
    """Arrow forced (``on``) or never used; the list: what each ``read`` returned."""
    calls: list[bool] = []
    real = subscriber_arrow.read

    def spy(raw: BinaryIO, file: str, header: list[str], line: int, start: int,
            out: SubscriberTable) -> bool:
        got = real(raw, file, header, line, start, out)
        calls.append(got)
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subscriber_csv, "ARROW_FROM", 0 if on else NEVER)
        mp.setattr(subscriber_csv, "PARALLEL_FROM", NEVER)
        mp.setattr(subscriber_arrow, "BLOCK", block)
        mp.setattr(subscriber_arrow, "read", spy)
        yield calls


def internals(t: SubscriberTable) -> dict[str, Any]:
    """Everything a table holds, as plain values."""
    got: dict[str, Any] = {name: [getattr(t, name)[i] for i in range(len(getattr(t, name)))]
                           for name in TEXT_COLUMNS}
    got.update(
        n=len(t), ids=list(t.ids), device_of=list(t.device_of), devices=list(t.devices),
        port_of=list(t.port_of), ports=list(t.ports), tier=list(t.tier), tiers=list(t.tiers),
        revenue=list(t.revenue), units=list(t.units), contract_end=list(t.contract_end),
        churn=list(t.churn), consent=bytes(t.consent), plan=list(t.plan), lines=list(t.lines),
        files=list(t.files), bindings=set(t.bindings),
    )
    return got


def table_read(path: Path, on: bool, block: int = 256) -> tuple[dict[str, Any], list[str],
                                                                 list[bool]]:
    """The table ``load_csv`` makes of ``path`` (Arrow forced or never), its problems and
    what ``subscriber_arrow.read`` returned."""
    table = SubscriberTable()
    with arrow(on, block) as calls:
        problems = [str(p) for p in load_csv(path, table, parallel=False)]
    return internals(table), problems, calls


def inventory_internals(inv: Inventory, *, parts: bool = False) -> dict[str, Any]:
    """An inventory's index and what it answers. ``parts``: the table was indexed in
    parts (an Arrow part and rows indexed otherwise), whose merged index lists each
    device's subscribers part by part (``subscriber_index.merge``: ranks ascending within
    each part), so each device's (rank, tier, units) are compared as a set."""
    subs = list(inv.subscribers)
    tiers = list(inv._dev_tiers)
    got: dict[str, Any] = {
        "order": list(inv._order), "sorted_ids": list(inv._sorted_ids),
        "dev_range": list(inv._dev_range.items()),
        "dev_ranks": list(inv._dev_ranks), "dev_tiers": tiers,
        "dev_units": list(inv._dev_units), "subscribers": subs,
        "by_device": dict(inv.by_device), "by_port": dict(inv.by_port),
        "totals": {d: inv.totals_on([d]) for d in inv.by_device},
        "all": inv.totals_on(list(inv.by_device)),
        "records": [inv.subscribers[s].subscriber() for s in subs[::37]],
    }
    if parts:
        for key in ("dev_ranks", "dev_tiers", "dev_units"):
            del got[key]
        got["per_device"] = {
            d: sorted(zip(inv._dev_ranks[b:e], tiers[b:e], inv._dev_units[b:e], strict=True))
            for d, (b, e) in inv._dev_range.items()}
    return got


def same_inventory(yaml: Path, block: int = 512, *, parts: bool = False) -> list[bool]:
    """Load ``yaml`` with Arrow forced and never: the same inventory; the Arrow calls."""
    with arrow(False):
        want = inventory_internals(load_inventory([yaml]), parts=parts)
    with arrow(True, block) as calls:
        got = inventory_internals(load_inventory([yaml]), parts=parts)
    assert got == want
    return calls


def clean(text: str) -> bool:
    """A file Arrow must take whenever all its values are good: rows, no quotes, no blank
    lines, as many fields on every line as in the header."""
    if '"' in text:
        return False
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the end of the last line
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if len(lines) < 2 or "\r" in "".join(lines):
        return False
    width = lines[0].count(",")
    return all(line != "" and line.count(",") == width for line in lines[1:])


def converters_take(text: str) -> bool:
    """The values of a ``clean`` file are all taken by the pure-Python reader's converters
    (``subscribers._Columns``), which Arrow's path uses: Arrow must read it."""
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    cols = [list(col) for col in zip(*rows, strict=True)]
    columns = subscribers._Columns({c: i for i, c in enumerate(header)}, SubscriberTable())
    return columns.convert(cols, len(rows)) is not None


# --- 1. any file ------------------------------------------------------------------------

PLAIN = {c: [v for v in VALUES[c] if not set(v) & set('",\r\n')] for c in VALUES}


@st.composite
def plain_files(draw: st.DrawFn) -> str:
    """Files Arrow takes if their values are good: no quotes, one field per column."""
    optional = [c for c in CSV_COLUMNS if c not in CSV_REQUIRED]
    header = draw(st.permutations(
        [*CSV_REQUIRED, *draw(st.lists(st.sampled_from(optional), unique=True))]))
    good = draw(st.booleans())
    rows = []
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        row = {c: GOOD[c] if good and c in GOOD else draw(st.sampled_from(PLAIN[c]))
               for c in header}
        row["id"] = f"{row['id']}-{i}" if row["id"] else ""
        rows.append(",".join(row[c] for c in header))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    end = draw(st.sampled_from([newline, ""]))
    return newline.join([",".join(header), *rows]) + end



@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(csv_files(), plain_files()),
       st.sampled_from([160, 256, 1024, 1 << 20]))  # blocks any header fits in
@example("id,device,port,monthly_revenue\nS-1,olt1,p1,30\n\nS-2,olt1,p1,-1\n", 64)
@example("id,device,port,monthly_revenue\nS-1,olt1,p1,30", 64)  # no newline at the end
@example("id,device,port,monthly_revenue\r\nS-1,olt1,p1,30\r\nS-2,olt2,p1,1\r\n", 64)
@example("id,device,port,monthly_revenue\nS-1,olt1,p1,30\rS-2,olt1,p1,30\n", 64)
@example("id,device,port,monthly_revenue\n", 64)  # no rows
def test_arrow_reads_any_file_as_the_pure_python_reader(text: str, block: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subs.csv"
        path.write_bytes(text.encode())
        want = reference(path)
        with arrow(True, block) as calls:
            assert fast(path) == want
        got, problems, calls = table_read(path, True, block)
        expected, pure_problems, none = table_read(path, False)
        assert none == []
        assert (got, problems) == (expected, pure_problems)
        assert pure_problems == want[1]
        assert len(calls) == 1
        # Arrow takes exactly the files without quotes, blank lines or odd field counts
        # whose values the converters take (the others: the same result, read by Python)
        assert calls == [clean(text) and converters_take(text)], text


def test_a_header_longer_than_a_block_is_left_to_python(tmp_path: Path) -> None:
    """Arrow skips the header within its first block: a longer one is declined (the same
    result, read by Python); a real header is far shorter than the 1 MiB block."""
    path = tmp_path / "subs.csv"
    path.write_text("id,device,port,monthly_revenue,account,name,modem_mac,contract_end\n"
                    + "".join(f"S-{i},olt1,p{i % 3},30,,,,\n" for i in range(50)))
    for block, taken in ((48, False), (128, True)):
        got, problems, calls = table_read(path, True, block)
        assert calls == [taken]
        assert (got, problems) == table_read(path, False)[:2]


# --- 2. large clean files, table and inventory ------------------------------------------


def unicode_file(path: Path, rows: int, newline: str) -> None:
    """A clean file with non-ASCII text here and there, ``newline`` line ends and no line
    end after the last row."""
    lines = ["id,name,device,port,monthly_revenue,sla_tier,email,phone,plan_mbps,onu_id,"
             "consent_sms"]
    for i in range(rows):
        name = ["Müller", "Zoë Ångström", "", "R. Silva", "日本語"][i % 5]
        email = ["ü@b.cz", "", f"x{i}@mail.example", "ž@ž.ž"][i % 4]
        phone = ["", "+1 555 0100", "(12) 345-67"][i % 3]
        lines.append(f"S-{i % 97:02d}-{i:05d}-é,{name},olt{i % 7},pon0/{i % 5}ü,"
                     f"{i % 90}.{i % 10},{['gold', '', 'business'][i % 3]},{email},{phone},"
                     f"{['', '100', '0.25'][i % 3]},{i % 64 if i % 2 else ''},"
                     f"{['', 'true', 'false', '1'][i % 4]}")
    path.write_bytes(newline.join(lines).encode())


@pytest.mark.parametrize("kind", ["big", "unicode-lf", "unicode-crlf"])
def test_a_large_clean_file_is_read_by_arrow_the_same(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "subs.csv"
    if kind == "big":
        big_file(path, 5_000, {})
    else:
        unicode_file(path, 4_000, "\r\n" if kind == "unicode-crlf" else "\n")
    got, problems, calls = table_read(path, True, 1024)
    assert calls == [True] and problems == []
    want, _, _ = table_read(path, False)
    assert got == want
    assert got["n"] == (5_000 if kind == "big" else 4_000)
    if kind != "big":
        assert got["name"][:2] == ["Müller", "Zoë Ångström"]
        assert got["lines"][-1] == 4_001
    yaml = tmp_path / "inv.yaml"
    yaml.write_text(f"devices:\n{DEVICES}subscriber_files: [subs.csv]\n")
    assert same_inventory(yaml, 1024) == [True]


def test_an_arrow_read_comes_with_every_devices_sums(tmp_path: Path) -> None:
    """Arrow adds up each device's subscribers and revenue by tier while reading (an
    impact reads them); they are what the pure-Python inventory works out when asked."""
    big_file(tmp_path / "subs.csv", 5_000, {})
    yaml = tmp_path / "inv.yaml"
    yaml.write_text(f"devices:\n{DEVICES}subscriber_files: [subs.csv]\n")
    with arrow(True, 2048) as calls:
        fast_inv = load_inventory([yaml])
    assert calls == [True]
    ready = dict(fast_inv._dev_sums)  # before anything was asked
    with arrow(False):
        slow_inv = load_inventory([yaml])
    assert slow_inv._dev_sums == {}
    assert set(ready) == set(slow_inv._dev_range) and len(ready) == 7
    assert ready == {d: slow_inv._device_sums(d) for d in slow_inv._dev_range}
    assert sum(c for sums in ready.values() for c, _ in sums.values()) == 5_000


def test_a_table_read_in_python_is_indexed_whole_in_arrow_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large table the pure-Python reader read (here: quotes, so Arrow's reader declines
    it; and inline YAML rows before it) is indexed whole in Arrow (index_rows): the same
    inventory as ``index_part`` gives, and each device's sums come with it."""
    from correlator import subscriber_index

    big_file(tmp_path / "subs.csv", 4_000, {})
    text = (tmp_path / "subs.csv").read_text().replace("A-7,", '"A-7",', 1)
    (tmp_path / "subs.csv").write_text(text)
    yaml = tmp_path / "inv.yaml"
    yaml.write_text(
        f"devices:\n{DEVICES}subscribers:\n"
        "  - {id: S-zz, device: olt3, port: y, monthly_revenue: 1, sla_tier: gold}\n"
        "  - {id: A-0, device: olt1, port: y, monthly_revenue: 2}\n"
        "subscriber_files: [subs.csv]\n")
    monkeypatch.setattr(subscriber_index, "ARROW_FROM", 1 << 40)
    want = load_inventory([yaml])
    monkeypatch.setattr(subscriber_index, "ARROW_FROM", 0)
    calls: list[int] = []
    real = subscriber_arrow.index_rows

    def spy(table: SubscriberTable, start: int, end: int) -> Any:
        calls.append(end - start)
        return real(table, start, end)

    monkeypatch.setattr(subscriber_arrow, "index_rows", spy)
    with arrow(True, 1024) as read_calls:
        got = load_inventory([yaml])
    assert read_calls == [False] and calls == [4_002]  # quotes: read in Python, then indexed
    assert inventory_internals(got) == inventory_internals(want)
    assert got._dev_sums == {d: want._device_sums(d) for d in want._dev_range}


# --- 3. an Arrow part merged with other rows ---------------------------------------------


def test_an_arrow_part_merges_with_inline_and_other_files(tmp_path: Path) -> None:
    big_file(tmp_path / "a.csv", 3_000, {})
    unicode_file(tmp_path / "b.csv", 1_500, "\r\n")
    (tmp_path / "inv.yaml").write_text(
        f"devices:\n{DEVICES}subscribers:\n"
        "  - {id: S-zz, device: olt3, port: y, monthly_revenue: 1, sla_tier: gold}\n"
        "  - {id: S-000100x, device: olt6, port: pon0/1, monthly_revenue: 2.5,"
        " name: 'Zoë', plan_mbps: 300, contract_end: 2027-02-01}\n"
        "  - {id: A, device: olt0, port: new, monthly_revenue: 3, sla_tier: platinum}\n"
        "subscriber_files: [a.csv, b.csv]\n")
    calls = same_inventory(tmp_path / "inv.yaml", 700, parts=True)
    assert calls == [True, True]


def test_an_arrow_file_after_a_pure_python_file(tmp_path: Path) -> None:
    """The second file is declined (a quote): pure-Python rows after an Arrow part."""
    big_file(tmp_path / "a.csv", 2_000, {})
    (tmp_path / "b.csv").write_text(
        'id,device,port,monthly_revenue,name\nS-q,olt1,new,5,"a ""b"""\nS-000001b,olt9x,p,1,\n')
    (tmp_path / "inv.yaml").write_text(
        f"devices:\n{DEVICES}  olt9x: {{}}\nsubscribers:\n"
        "  - {id: S-zz, device: olt3, port: y, monthly_revenue: 1, sla_tier: gold}\n"
        "subscriber_files: [b.csv, a.csv]\n")
    assert same_inventory(tmp_path / "inv.yaml", 300, parts=True) == [False, True]


# --- 4. declined files leave the table untouched -----------------------------------------


def declined(path: Path) -> None:
    """A file that Arrow must decline; the pure-Python reader reports as before."""
    table = SubscriberTable()
    with path.open("rb") as raw:
        header, line, start = subscriber_csv._header(raw)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(subscriber_arrow, "BLOCK", 512)
            assert subscriber_arrow.read(raw, str(path), header, line, start, table) is False
    assert len(table) == 0 and table.ids == [] and table.lines == array("l")
    assert table.devices == [] and table.ports == [] and table.tiers == []
    assert table.parts == [] and table.files == [] and table.bindings == set()
    assert all(len(getattr(table, c)) == 0 for c in TEXT_COLUMNS)
    with arrow(True, 512) as calls:
        got = fast(path)
    assert calls == [False]
    with arrow(False):
        assert got == fast(path)


def rewrite_last(path: Path, change: Callable[[list[str]], None]) -> None:
    lines = path.read_text().split("\n")
    change(lines)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("case", ["revenue", "device", "port", "id", "quote", "blank",
                                  "extra", "short", "email", "phone", "date", "lone-cr",
                                  "utf8"])
def test_a_declined_file_leaves_the_table_unchanged(tmp_path: Path, case: str) -> None:
    path = tmp_path / "subs.csv"
    big_file(path, 3_000, {2_999: "-1"} if case == "revenue" else {})
    last = -2  # the last row (the file ends with a line end)

    def change(lines: list[str]) -> None:
        f = lines[last].split(",")
        if case == "device":
            f[2] = ""
        elif case == "port":
            f[3] = ""
        elif case == "id":
            f[0] = ""
        elif case == "quote":
            f[1] = 'A "q"'
        elif case == "extra":
            f.append("x")
        elif case == "short":
            f.pop()
        elif case == "email":
            f[8] = "a b@c.d"
        elif case == "date":
            f[6] = "2026-02-30"
        elif case == "lone-cr":
            f[1] = "a\rb"
        lines[last] = ",".join(f)
        if case == "blank":
            lines.insert(last, "")

    if case == "phone":
        text = path.read_text().replace("consent_email\n", "consent_email,phone\n", 1)
        lines = text.split("\n")
        lines[1:-1] = [line + ",+1 555" for line in lines[1:-1]]
        lines[last] += "x"
        path.write_text("\n".join(lines))
    elif case == "utf8":
        path.write_bytes(path.read_bytes()[:-3] + b"\xff\n")
    elif case != "revenue":
        rewrite_last(path, change)
    declined(path)
    if case == "utf8":
        problems = fast(path)[1]
        assert len(problems) == 1 and problems[0].startswith(f"{path}: cannot read: ")
        return
    assert fast(path) == reference(path)
    _, problems = reference(path)
    if case not in ("quote", "blank", "lone-cr", "short"):  # the others: read, no problem
        assert problems and all(p.startswith(f"{path}:3001: ") for p in problems)


# --- 5. problems found after an Arrow read name the right line ---------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("quoted_header", [False, True])
def test_problems_after_an_arrow_read_name_the_line(tmp_path: Path, newline: str,
                                                    quoted_header: bool) -> None:
    csv_file = tmp_path / "subs.csv"
    big_file(csv_file, 4_000, {})
    text = csv_file.read_text().splitlines()
    text[3_901] = text[3_901].replace("S-003900", "S-000010")  # a duplicate, far apart
    text[3_951] = text[3_951].replace(",olt", ",xolt", 1)  # an unknown device
    if quoted_header:  # quotes before the rows Arrow reads are no reason to decline
        text[0] = ",".join(f'"{c}"' for c in text[0].split(","))
    csv_file.write_bytes((newline.join(text) + newline).encode())
    (tmp_path / "inv.yaml").write_text(f"devices:\n{DEVICES}subscriber_files: [subs.csv]\n")
    with arrow(True, 2048) as calls, pytest.raises(SourceError) as err:
        load_inventory([tmp_path / "inv.yaml"])
    assert calls == [True]
    assert str(err.value).splitlines() == [
        f"{csv_file}:3902: subscriber S-000010: duplicate subscriber id (first at "
        f"{csv_file}:12)",
        f"{csv_file}:3952: subscriber S-003950.device: unknown device (not in the "
        "inventory) (got 'xolt2')",
    ]
    with arrow(False), pytest.raises(SourceError) as pure:
        load_inventory([tmp_path / "inv.yaml"])
    assert str(pure.value) == str(err.value)


# --- 6. the patterns RE2 runs on ASCII text ----------------------------------------------


def re2(pattern: str, texts: list[str]) -> list[bool]:
    got: list[bool] = pc.match_substring_regex(pa.array(texts, pa.string()),
                                               pattern).to_pylist()
    return got


def python_email(x: str) -> bool:
    return x == "" or bool(subscribers._EMAIL.fullmatch(x))


def python_phone(x: str) -> bool:
    return x == "" or bool(subscribers._PHONE.fullmatch(x))


ASCII = [chr(c) for c in range(128)]
EMAIL_TEMPLATES = ["a{c}b@c.d", "a@b{c}c.d", "a@b.c{c}d", "{c}@b.c", "a@{c}.c", "a@b.{c}",
                   "{c}", "a@b.c{c}", "{c}a@b.c", "a{c}@b.c", "a@b{c}.c"]
PHONE_TEMPLATES = ["{c}12345", "12345{c}", "12{c}345", "+{c}1234", "{c}", "1234{c}", "123{c}",
                   "1234567890123456789{c}", "{c}1234567890123456789",
                   "12345678901234567890{c}", "+1234567890123456789{c}"]


@pytest.mark.parametrize(("pattern", "python", "templates"), [
    (subscriber_arrow._EMAIL_ASCII, python_email, EMAIL_TEMPLATES),
    (subscriber_arrow._PHONE, python_phone, PHONE_TEMPLATES),
], ids=["email", "phone"])
def test_re2_patterns_agree_on_every_ascii_character(
        pattern: str, python: Callable[[str], bool], templates: list[str]) -> None:
    texts = [t.format(c=c) for t in templates for c in ASCII]
    texts += [c * k for c in ASCII for k in (1, 2, 4, 5, 20, 21)]
    texts += [p + "1" * k for p in ("", "+", "++", " ") for k in range(25)]
    got = re2(pattern, texts)
    assert [t for t, g in zip(texts, got, strict=True) if g != python(t)] == []


weighted = st.text(alphabet=st.sampled_from("@@@...   \t\x1c\x1f\x0b\x0c\x85ab+-()0123456789"),
                   max_size=24)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
                          weighted), min_size=1, max_size=30))
def test_re2_patterns_agree_on_ascii_text(texts: list[str]) -> None:
    texts = [t for t in texts if t.isascii()]
    assert re2(subscriber_arrow._EMAIL_ASCII, texts) == list(map(python_email, texts))
    assert re2(subscriber_arrow._PHONE, texts) == list(map(python_phone, texts))


def test_the_email_pattern_is_only_trusted_on_ascii(tmp_path: Path) -> None:
    """Python's \\s also matches non-ASCII spaces: those rows go to Python's ``re``."""
    path = tmp_path / "subs.csv"
    rows = "".join(f"S-{i},olt1,p,1,x{i}@b.c\n" for i in range(300))
    for bad in ["a@b.c\u3000", "a\u00a0@b.c", "a@b\u2028.c", "a@b.c\x85"]:
        path.write_text("id,device,port,monthly_revenue,email\n" + rows
                        + f"S-z,olt1,p,1,{bad}\n", newline="")
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", bad) is None
        with arrow(True, 256) as calls:
            got = fast(path)
        assert calls == [False] and got == reference(path) and got[1]


# --- the pieces: chunks that do not start at the beginning of their buffers --------------


def test_ints_reads_sliced_chunks_from_their_offset() -> None:
    numbers = pa.chunked_array([pa.array(range(10), pa.int32()).slice(3, 4),
                                pa.array([], pa.int32()),
                                pa.array(range(100, 110), pa.int32()).slice(7)])
    assert list(subscriber_arrow._ints(numbers, "i")) == [3, 4, 5, 6, 107, 108, 109]
    floats = pa.array([0.5, 1.5, 2.5, 3.5]).slice(1, 2)
    assert list(subscriber_arrow._ints(floats, "d")) == [1.5, 2.5]
    wide = pa.array(range(1 << 40, (1 << 40) + 5), pa.int64()).slice(2)
    assert list(subscriber_arrow._ints(wide, "q")) == [(1 << 40) + i for i in (2, 3, 4)]
    texts = pa.array(["a", "bb", "ccc", "dddd"]).slice(1, 2)
    assert list(subscriber_arrow._ints(texts, "i", extra=1)) == [1, 3, 6]


def test_text_columns_from_sliced_chunks() -> None:
    names = ["Müller", "", "a,b", "日本語", "x", "Zoë", "", "end"]
    column = pa.chunked_array([pa.array(names[:5]).slice(2), pa.array(names[3:]).slice(2)])
    table = pa.table({"name": column})
    out = SubscriberTable()
    subscriber_arrow._Read(table, out, pa, pc)._text("name")
    assert [out.name[i] for i in range(len(out.name))] == names[2:]


def test_reading_again_and_again_never_fails(tmp_path: Path) -> None:
    """Arrow reads with threads: whatever it holds must be let go before the file is."""
    clean_file, blank = tmp_path / "clean.csv", tmp_path / "blank.csv"
    clean_file.write_text("id,device,port,monthly_revenue\nS-1,olt1,p1,30\nS-2,olt2,p1,1\n")
    blank.write_text("id,device,port,monthly_revenue\nS-1,olt1,p1,30\n\nS-2,olt1,p1,1\n")
    for path, want in ((clean_file, True), (blank, False)):
        for block in (64, 1 << 20):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(subscriber_arrow, "BLOCK", block)
                for _ in range(150):
                    out = SubscriberTable()
                    with path.open("rb") as raw:
                        header, line, start = subscriber_csv._header(raw)
                        got = subscriber_arrow.read(raw, str(path), header, line, start, out)
                    assert got is want and len(out) == (2 if want else 0)
