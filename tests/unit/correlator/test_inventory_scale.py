"""The columnar inventory and its fast CSV reader: exactly as strict as the pydantic model.

The reference below is the reader the inventory had before (``csv.DictReader``, one
pydantic model per row): the fast reader must accept the same rows with the same values,
and report the same problems at the same lines, whatever the file looks like.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from correlator import inventory, subscriber_csv
from correlator.incidents import compute_impact
from correlator.inventory import (
    Device,
    Inventory,
    ParentLink,
    Subscriber,
    load_inventory,
    reload_inventory,
)
from correlator.subscriber_csv import load_csv
from correlator.subscribers import (
    CSV_COLUMNS,
    CSV_REQUIRED,
    SubscriberModel,
    SubscriberTable,
    subscriber,
)
from probes.source import Problem, SourceError, short

# --- the reference: the reader as it was ------------------------------------------------


def reference(path: Path) -> tuple[list[Subscriber], list[str]]:
    file = str(path)
    out: list[Subscriber] = []
    problems: list[Problem] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if unknown or missing:
            what = []
            if unknown:
                what.append(f"unknown column(s) {', '.join(unknown)}")
            if missing:
                what.append(f"missing column(s) {', '.join(missing)}")
            return [], [str(Problem(file, 1, "header", "; ".join(what) +
                                    f" (columns are: {', '.join(CSV_COLUMNS)})"))]
        for row in reader:
            line = reader.line_num
            data: dict[str, Any] = {
                k: v for k, v in row.items() if k in CSV_COLUMNS and v not in ("", None)
            }
            if None in row:
                problems.append(Problem(file, line, "", "more fields than header columns"))
                continue
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
                    problems.append(Problem(file, line, col, msg, got))
                continue
            out.append(subscriber(sm))
    return out, [str(p) for p in problems]


def fast(path: Path, *, parallel: bool = False) -> tuple[list[Subscriber], list[str]]:
    table = SubscriberTable()
    problems = load_csv(path, table, parallel=parallel)
    subs = [table.subscriber(row, table.ids[row]) for row in range(len(table))]
    return subs, [str(p) for p in problems]


# --- random files ------------------------------------------------------------------------

VALUES: dict[str, list[str]] = {
    "id": ["S-1", "S-2", "S-10", "", " S-3", "Ž-4", "S,5", 'S"6'],
    "account": ["", "A-1", "Smith, J.", 'the "big" one', "two\nlines"],
    "name": ["", "R. Silva", "Müller", "a,b", "x\r\ny"],
    "device": ["olt1", "olt2", "", "spl 1"],
    "port": ["pon0/1", "p2", "", "ge-0/0/1,2"],
    "onu_id": ["", "1", "64", "abc"],
    "modem_mac": ["", "00:11:22:33:44:55"],
    "cpe_mac": ["", "00:1b:21:aa:10:01"],
    "monthly_revenue": ["30", "30.00", "0", "0.5", "29.99", "00.5", "1e3", " 12", "12 ", "-1",
                        "abc", "", "nan", "inf", "1_000", ".5", "5.", "123456789012345678901",
                        "3000.000000001"],
    "sla_tier": ["", "business", "residential", "enterprise"],
    "contract_end": ["", "2026-02-28", "2026-02-30", "2026-2-3", "2026-02-28T00:00:00",
                     "20260228", "1700000000", "0000-01-01", "2026-13-01"],
    "churn_risk": ["", "0", "0.5", "1", "1.0", "1.01", "-0.1", "0.", "x", "1e-1", "0.1234"],
    "email": ["", "a@b.c", "a b@c.d", "a@b", "@b.c", "ü@b.cz", "a@b.c\u3000", "a@@b.c",
              "a\x1c@b.c", "r.silva@mail.example"],
    "phone": ["", "+1 555 0100", "12345", "1234", "+(1)-2 3", "abc", "+" + "1" * 20,
              "1" * 21],
    "consent_email": ["", "true", "false", "1", "0", "True", "yes", "no", "on", "x"],
    "consent_sms": ["", "true", "false", "1", "0", "FALSE", "n"],
    "plan_mbps": ["", "100", "1000.5", "0.25", "0", "-5", "1e3", "x", "10000001"],
}
GOOD = {"id": "S-1", "device": "olt1", "port": "pon0/1", "monthly_revenue": "30.00"}


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    optional = [c for c in CSV_COLUMNS if c not in CSV_REQUIRED]
    header = [*CSV_REQUIRED, *draw(st.lists(st.sampled_from(optional), unique=True))]
    header = draw(st.permutations(header))
    n = draw(st.integers(min_value=0, max_value=12))
    good_only = draw(st.booleans())
    rows = []
    for i in range(n):
        row = {}
        for c in header:
            if good_only:
                row[c] = GOOD.get(c, draw(st.sampled_from(VALUES[c][:4])))
            else:
                row[c] = draw(st.sampled_from(VALUES[c]))
        row["id"] = row["id"] + f"-{i}" if row["id"] else ""
        rows.append([row[c] for c in header])
    out = io.StringIO()
    w = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    w.writerow(header)
    for fields in rows:
        shape = draw(st.sampled_from(["ok"] * 8 + ["short", "long", "blank"]))
        if shape == "short" and len(fields) > 1:
            fields = fields[:-1]
        elif shape == "long":
            fields = [*fields, "extra"]
        elif shape == "blank":
            out.write("\n")
        w.writerow(fields)
    return out.getvalue()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
@example("id,device,port,monthly_revenue\nS-1,olt1,p1,30\n\nS-2,olt1,p1,-1\n")
@example('id,name,device,port,monthly_revenue\nS-1,"two\nlines",olt1,p1,30\nS-2,x,olt1,p1,x\n')
@example("id,device,port,monthly_revenue\r\nS-1,olt1,p1,30\r\nS-2,olt1,p1\r\nS-3,a,b,1,2\r\n")
@example("id,device,port,monthly_revenue\nS-1,olt1,p1,30")  # no newline at the end
def test_fast_reader_accepts_and_rejects_exactly_as_the_model(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subs.csv"
        path.write_bytes(text.encode())
        assert fast(path) == reference(path)


def test_problems_name_file_line_column_and_value(tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        "id,device,port,monthly_revenue,churn_risk,email,consent_sms\n"
        "S-1,olt1,p1,30.00,0.1,a@b.example,true\n"
        "S-2,olt1,p1,-5,0.1,,\n"
        "S-3,olt1,p1,30,1.5,not-an-email,maybe\n"
        ",olt1,p1,30,,,\n"
        "S-5,olt1,p1,30,,,,\n"
    )
    subs, problems = fast(path)
    assert [s.id for s in subs] == ["S-1"]
    assert problems == [
        f"{path}:3: monthly_revenue: Input should be greater than or equal to 0 (got '-5')",
        f"{path}:4: churn_risk: Input should be less than or equal to 1 (got '1.5')",
        f"{path}:4: email: String should match pattern '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$' "
        "(got 'not-an-email')",
        f"{path}:4: consent_sms: Input should be a valid boolean, unable to interpret input "
        "(got 'maybe')",
        f"{path}:5: id: required column is empty",
        f"{path}:6: more fields than header columns",
    ]


def test_a_column_named_twice_is_a_header_problem(tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text("id,device,port,monthly_revenue,port\nS-1,olt1,p1,30,p2\n")
    _, problems = fast(path)
    assert problems == [f"{path}:1: header: column(s) named twice: port (columns are: "
                        f"{', '.join(CSV_COLUMNS)})"]


def big_file(path: Path, rows: int, bad: dict[int, str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "account", "device", "port", "monthly_revenue", "sla_tier",
                    "contract_end", "churn_risk", "email", "consent_email"])
        for i in range(rows):
            w.writerow([f"S-{i:06d}", f"A-{i}", f"olt{i % 7}", f"pon0/{i % 16}",
                        bad.get(i, f"{20 + i % 50}.{i % 100:02d}"),
                        ["residential", "business", ""][i % 3],
                        "2027-01-31" if i % 4 == 0 else "", f"0.{i % 10}",
                        f"x{i}@mail.example" if i % 2 else "", "true" if i % 2 else ""])


def test_two_processes_read_a_large_file_as_one_does(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "subs.csv"
    big_file(path, 20_000, {5: "-1", 15_000: "x", 19_999: "1e2"})
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    monkeypatch.setattr(subscriber_csv, "_BLOCK", 1 << 16)
    one = fast(path)
    assert subscriber_csv._split(path.open("rb"), 10, path.stat().st_size) < \
        path.stat().st_size
    two = fast(path, parallel=True)
    assert two == one == reference(path)
    assert len(one[0]) == 19_998 and len(one[1]) == 2
    assert one[1][1].startswith(f"{path}:15002: monthly_revenue: ")


@pytest.mark.parametrize("across", [False, True])
def test_a_file_with_quotes_is_read_by_two_processes_unless_a_field_spans_the_split(
    tmp_path: Path, across: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quoted field may hold line breaks, so the split may fall inside one: then this
    process reads on past it, and the other process's part (begun inside the field) is
    not used. Either way: what one process reads, at the same lines."""
    path = tmp_path / "subs.csv"
    big_file(path, 2_000, {1_500: "x"})
    lines = path.read_text().splitlines(keepends=True)
    lines[999] = lines[999].replace(",A-998,", ',"A-998,\nsecond line\n",', 1)
    lines[1_200] = lines[1_200].replace(",A-1199,", ',"A ""1199""",', 1)
    path.write_text("".join(lines))
    data = path.read_bytes()
    # the split: after the line that opens the quoted field (inside it), or before that line
    at = data.index(b'"A-998,\n') + len(b'"A-998,\n') if across else \
        data.rindex(b"\n", 0, data.index(b'"A-998,')) + 1
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    monkeypatch.setattr(subscriber_csv, "_split", lambda raw, start, size: at)
    stopped: list[bool] = []
    merged: list[bool] = []
    real_stop, real_merge = subscriber_csv.Worker.stop, subscriber_csv.Worker.merge

    def stop(self: subscriber_csv.Worker) -> None:
        stopped.append(True)
        real_stop(self)

    def merge(self: subscriber_csv.Worker, out: SubscriberTable,
              reader: subscriber_csv._Reader) -> bool:
        merged.append(real_merge(self, out, reader))
        return merged[-1]

    monkeypatch.setattr(subscriber_csv.Worker, "stop", stop)
    monkeypatch.setattr(subscriber_csv.Worker, "merge", merge)
    two = fast(path, parallel=True)
    assert two == fast(path) == reference(path)
    assert two[0][998].account == "A-998,\nsecond line\n"
    assert two[1] == [f"{path}:1504: monthly_revenue: Input should be a valid number, "
                      "unable to parse string as a number (got 'x')"]
    assert (stopped, merged) == (([True], []) if across else ([], [True]))


@pytest.mark.parametrize("block", [64, 300, 1 << 16])
def test_quoted_blocks_read_as_line_by_line(tmp_path: Path, block: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A block with quotes is read by one strict csv reader when it can be (every record
    complete and well formed), else line by line: the same subscribers, problems and
    lines either way, also when a quoted field goes on past the end of a block."""
    path = tmp_path / "subs.csv"
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL)
    w.writerow(["id", "name", "device", "port", "monthly_revenue"])
    for i in range(400):
        name = ["Smith, J.", 'the "big" one', "two\nlines", "plain"][i % 4] + "." * (i % 7)
        w.writerow([f"S-{i:04d}", name, "olt1", "p1", "x" if i % 97 == 5 else "30"])
        if i % 50 == 7:
            out.write("\r\n")  # a blank line
    text = out.getvalue().replace('"S-0011","plain', '"S-0011"x,"plain')  # not strict
    path.write_text(text, newline="")
    monkeypatch.setattr(subscriber_csv, "_BLOCK", block)
    calls: list[bool] = []
    real = subscriber_csv._Reader._quoted

    def spy(self: subscriber_csv._Reader, text: str) -> bool:
        calls.append(real(self, text))
        return calls[-1]

    monkeypatch.setattr(subscriber_csv._Reader, "_quoted", spy)
    got = fast(path)
    assert got == reference(path)
    assert len(got[0]) == 400 - 5 and len(got[1]) == 5  # 5 bad revenues
    assert "S-0011x" in {sub.id for sub in got[0]}  # as csv reads a quote out of place
    if block == 1 << 16:
        assert calls == [False]  # the whole file, with a quote out of place: line by line
    else:
        assert True in calls and False in calls


# --- the inventory ----------------------------------------------------------------------


def sub(sid: str, device: str, port: str, revenue: float = 30.0, tier: str = "residential",
        **kw: Any) -> Subscriber:
    fields: dict[str, Any] = dict(
        id=sid, account=None, name=None, device=device, port=port, onu_id=None,
        modem_mac=None, cpe_mac=None, monthly_revenue=revenue, sla_tier=tier,
        contract_end=None, churn_risk=0.0, email=None, phone=None, consent_email=False,
        consent_sms=False)
    fields.update(kw)
    return Subscriber(**fields)


def small() -> tuple[Inventory, list[Subscriber]]:
    subs = [
        sub("s3", "olt1", "p2", 0.1, contract_end=dt.date(2027, 1, 31), churn_risk=0.4,
            email="a@b.c", consent_email=True, name="N", onu_id="7"),
        sub("s1", "olt1", "p1", 0.2, phone="+1 555 0100", consent_sms=True),
        sub("s2", "olt1", "p1", 29.99, "business"),
        sub("s4", "spl1", "out1", 3000, "enterprise"),
    ]
    devices = {
        "olt1": Device("olt1", "access", None, (), None),
        "spl1": Device("spl1", "passive", None, (ParentLink(device="olt1", port="p3"),),
                       frozenset({"out1"})),
    }
    return Inventory(devices, subs), subs


def test_subscribers_are_built_on_access_with_every_attribute() -> None:
    inv, subs = small()
    assert len(inv.subscribers) == 4
    assert list(inv.subscribers) == ["s1", "s2", "s3", "s4"]  # id order
    for s in subs:
        assert inv.subscribers[s.id] == s
        assert s.id in inv.subscribers
    assert "s9" not in inv.subscribers and inv.subscribers.get("s9") is None
    with pytest.raises(KeyError):
        inv.subscribers["s0"]
    assert inv.sla_tiers == {"residential", "business", "enterprise"}


def test_indexes_by_port_and_device() -> None:
    inv, _ = small()
    assert inv.subscribers_on("olt1") == ["s1", "s2", "s3"]
    assert inv.subscribers_on("olt1", "p1") == ["s1", "s2"]
    assert inv.subscribers_on("olt1", "p9") == [] and inv.subscribers_on("nope") == []
    assert dict(inv.by_port) == {("olt1", "p1"): ["s1", "s2"], ("olt1", "p2"): ["s3"],
                                 ("spl1", "out1"): ["s4"]}
    assert dict(inv.by_device) == {"olt1": ["s1", "s2", "s3"], "spl1": ["s4"]}
    assert inv.children["olt1"] == [("spl1", ParentLink(device="olt1", port="p3"))]
    assert inv.edge_ports[("olt1", "p3")] == ["spl1"]
    assert inv.roots == ["olt1"]


def test_revenue_sums_are_exact_whatever_the_order() -> None:
    inv, _ = small()
    t = inv.totals(["s3", "s1", "s1"])
    assert t.subscribers == ("s1", "s3")
    assert t.revenue_by_tier == {"residential": 0.3}  # not 0.30000000000000004
    assert t.subscribers_by_tier == {"residential": 2}
    assert inv.totals_on(["olt1"], [("olt1", "p1"), ("spl1", "out1")]) == inv.totals(
        ["s1", "s2", "s3", "s4"])
    with pytest.raises(KeyError):
        inv.totals(["s1", "s0"])
    imp = compute_impact(inv, ["s4", "s2"], ["spl1"])
    assert imp.revenue_by_tier == {"business": 29.99, "enterprise": 3000.0}


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Inventory({}, [sub("s1", "a", "p"), sub("s1", "b", "p")])


def test_load_and_reload(tmp_path: Path) -> None:
    inv_file = tmp_path / "inv.yaml"
    inv_file.write_text(
        "devices:\n"
        "  olt1: {role: access, ports: [p1, p2]}\n"
        "  spl1: {role: passive, parents: [{device: olt1, port: p2}], ports: [o1, o2]}\n"
        "subscribers:\n"
        "  - {id: s0, device: olt1, port: p1, monthly_revenue: 10, name: ''}\n"
        "subscriber_files: [subs.csv]\n"
    )
    (tmp_path / "subs.csv").write_text(
        "id,device,port,monthly_revenue\ns2,spl1,o1,20\ns1,olt1,p1,5\n")
    inv = load_inventory([inv_file])
    assert inv.devices["spl1"].passive
    assert inv.subscribers_on("spl1", "o1") == ["s2"]
    assert inv.subscribers["s0"].name is None  # empty text is no text
    again = asyncio.run(reload_inventory([inv_file]))
    assert again is not inv and list(again.subscribers) == ["s0", "s1", "s2"]

    (tmp_path / "subs.csv").write_text(
        "id,device,port,monthly_revenue\ns2,spl1,o3,20\ns0,olt9,p1,5\n")
    with pytest.raises(SourceError) as err:
        asyncio.run(reload_inventory([inv_file]))
    assert str(err.value).splitlines() == [
        f"{tmp_path / 'subs.csv'}:2: subscriber s2.port: device spl1 has no such port "
        "(listed ports: o1, o2...) (got 'o3')",
        f"{tmp_path / 'subs.csv'}:3: subscriber s0: duplicate subscriber id (first at "
        f"{inv_file}:5)",
    ]


# --- reading the topology YAML ----------------------------------------------------------

scalars = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                    st.floats(allow_nan=False), st.dates(), st.sampled_from(["yes", "0x1f"]))
documents = st.recursive(
    st.dictionaries(st.text(min_size=1, max_size=6), scalars, max_size=4),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(documents, st.booleans())
@example({"a": 1}, False)
def test_fast_yaml_reads_values_and_lines_as_load_yaml(doc: Any, flow: bool) -> None:
    import tempfile

    import yaml as pyyaml

    from correlator.inventory import _read_yaml
    from probes.source import load_yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.yaml"
        path.write_text(pyyaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True))
        fast_doc, slow = _read_yaml(path), load_yaml(path)
        assert (fast_doc.data, fast_doc.lines) == (slow.data, slow.lines)


@pytest.mark.parametrize("text", [
    "devices:\n  a: {}\n  a: {}\n",  # duplicate key
    "? [a, b]\n: 1\n",  # a key that is not a scalar
    "devices: [unclosed\n",
    "a: &x {b: 1}\nc: *x\n",
])
def test_fast_yaml_leaves_irregular_files_to_load_yaml(tmp_path: Path, text: str) -> None:
    from correlator.inventory import _read_yaml
    from probes.source import load_yaml

    path = tmp_path / "doc.yaml"
    path.write_text(text)
    try:
        want: Any = load_yaml(path)
    except SourceError as exc:
        with pytest.raises(SourceError) as err:
            _read_yaml(path)
        assert str(err.value) == str(exc)
    else:
        got = _read_yaml(path)
        assert (got.data, got.lines) == (want.data, want.lines)


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow-here", "no-arrow"])
def test_an_inventory_indexed_in_two_parts_is_the_same(tmp_path: Path, arrow: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes read the file; without pyarrow each indexes its part (and the parts
    are merged), with it neither does (the table is indexed whole)."""
    big_file(tmp_path / "subs.csv", 6_000, {})
    devices = "".join(f"  olt{i}: {{}}\n" for i in range(7))
    (tmp_path / "inv.yaml").write_text(
        f"devices:\n{devices}subscribers:\n"
        "  - {id: S-zz, device: olt3, port: y, monthly_revenue: 1, sla_tier: gold}\n"
        "subscriber_files: [subs.csv]\n")
    one = load_inventory([tmp_path / "inv.yaml"])
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    monkeypatch.setattr(subscriber_csv, "_BLOCK", 1 << 15)
    monkeypatch.setattr(subscriber_csv, "_ARROW", arrow)
    parts: list[int] = []
    real_merge = inventory.merge_index

    def merge(table: SubscriberTable, got: Any) -> Any:
        parts.append(len(list(table.parts)))
        return real_merge(table, table.parts)

    monkeypatch.setattr(inventory, "merge_index", merge)
    two = load_inventory([tmp_path / "inv.yaml"])
    assert parts == [0 if arrow else 2]
    assert list(two.subscribers) == list(one.subscribers)
    assert [two.subscribers[s] for s in list(two.subscribers)[::97]] == \
        [one.subscribers[s] for s in list(one.subscribers)[::97]]
    assert dict(two.by_device) == dict(one.by_device)
    assert dict(two.by_port) == dict(one.by_port)
    for d in one.by_device:
        assert two.totals_on([d]) == one.totals_on([d])
    assert two.totals_on(list(one.by_device)) == one.totals(list(one.subscribers))


def test_problems_found_across_the_two_parts(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    big_file(tmp_path / "subs.csv", 4_000, {})
    text = (tmp_path / "subs.csv").read_text().splitlines()
    text[3_901] = text[3_901].replace("S-003900", "S-000010")  # a duplicate, far apart
    text[3_951] = text[3_951].replace(",olt", ",xolt", 1)  # an unknown device
    (tmp_path / "subs.csv").write_text("\n".join(text) + "\n")
    devices = "".join(f"  olt{i}: {{}}\n" for i in range(7))
    (tmp_path / "inv.yaml").write_text(f"devices:\n{devices}subscriber_files: [subs.csv]\n")
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    monkeypatch.setattr(subscriber_csv, "_BLOCK", 1 << 14)
    with pytest.raises(SourceError) as err:
        load_inventory([tmp_path / "inv.yaml"])
    csv_file = tmp_path / "subs.csv"
    assert str(err.value).splitlines() == [
        f"{csv_file}:3902: subscriber S-000010: duplicate subscriber id (first at "
        f"{csv_file}:12)",
        f"{csv_file}:3952: subscriber S-003950.device: unknown device (not in the "
        "inventory) (got 'xolt2')",
    ]


def test_a_file_that_cannot_be_read_stops_the_worker(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "subs.csv"
    big_file(path, 3_000, {})
    data = path.read_bytes()
    path.write_bytes(data[:500] + b"\xff" + data[500:])  # not UTF-8, in the first part
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    workers: list[subscriber_csv.Worker] = []
    real = subscriber_csv.Worker.__init__

    def spy(self: subscriber_csv.Worker) -> None:
        real(self)
        workers.append(self)

    monkeypatch.setattr(subscriber_csv.Worker, "__init__", spy)
    (problem,) = load_csv(path, SubscriberTable())
    assert str(problem).startswith(f"{path}: cannot read: 'utf-8' codec can't decode")
    assert len(workers) == 1 and workers[0].proc is None  # stopped and waited for


def loads_in_child(monkeypatch: pytest.MonkeyPatch) -> list[Inventory | None]:
    """Reloads of any size go to another process; the list: what each such load gave."""
    monkeypatch.setattr(inventory, "RELOAD_CHILD_FROM", 0)
    children: list[Inventory | None] = []
    in_child = inventory._load_in_child

    def spy(paths: list[Any]) -> Inventory | None:
        children.append(in_child(paths))
        return children[-1]

    monkeypatch.setattr(inventory, "_load_in_child", spy)
    return children


def test_a_large_reload_is_loaded_in_another_process(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    big_file(tmp_path / "subs.csv", 3_000, {})
    with (tmp_path / "subs.csv").open("a", newline="") as fh:  # text of every kind
        csv.writer(fh).writerow(["S-zz", "A-\"q\"\nnext line, ü", "olt1", "pon0/1", "5",
                                 "", "", "", "", ""])
    inv_file = tmp_path / "inv.yaml"
    devices = "".join(f"  olt{i}: {{}}\n" for i in range(7))
    inv_file.write_text(
        f"devices:\n{devices}subscribers:\n"
        "  - {id: S-a, device: olt3, port: y, monthly_revenue: 1, sla_tier: gold,"
        " name: 'Zoë', plan_mbps: 300, contract_end: 2027-02-01}\n"
        "subscriber_files: [subs.csv]\n")
    children = loads_in_child(monkeypatch)
    want = load_inventory([inv_file])
    got = asyncio.run(reload_inventory([inv_file]))
    assert children and children[-1] is got  # not loaded again here
    assert list(got.subscribers) == list(want.subscribers)
    assert [got.subscribers[s].subscriber() for s in got.subscribers] == \
        [want.subscribers[s].subscriber() for s in want.subscribers]
    assert got.subscribers["S-zz"].account == "A-\"q\"\nnext line, ü"
    assert dict(got.by_device) == dict(want.by_device)
    assert dict(got.by_port) == dict(want.by_port)
    assert got.devices == want.devices and got.sla_tiers == want.sla_tiers
    assert got.totals_on(list(want.by_device)) == want.totals(list(want.subscribers))
    assert got.churn_inputs(["S-a", "nobody", "S-000004"]) == \
        want.churn_inputs(["S-a", "nobody", "S-000004"])

    # problems come back as the child found them
    text = (tmp_path / "subs.csv").read_text().replace(",olt4,", ",olt44,", 1)
    (tmp_path / "subs.csv").write_text(text)
    with pytest.raises(SourceError) as in_thread:
        load_inventory([inv_file])
    with pytest.raises(SourceError) as err:
        asyncio.run(reload_inventory([inv_file]))
    assert "unknown device" in str(err.value) and str(err.value) == str(in_thread.value)

    # an id with a line break cannot be packed: loaded here instead
    inv_file.write_text(inv_file.read_text().replace("id: S-a,", 'id: "S-a\\nb",')
                        .replace("subscriber_files: [subs.csv]\n", ""))
    again = asyncio.run(reload_inventory([inv_file]))
    assert children[-1] is None and list(again.subscribers) == ["S-a\nb"]


def test_off_the_loop_makes_load_inventory_load_as_a_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's reload loads the inventory through load_config: within off_the_loop,
    a large one is loaded in another process there too (and only there)."""
    big_file(tmp_path / "subs.csv", 500, {})
    inv_file = tmp_path / "inv.yaml"
    devices = "".join(f"  olt{i}: {{}}\n" for i in range(7))
    inv_file.write_text(f"devices:\n{devices}subscriber_files: [subs.csv]\n")
    children = loads_in_child(monkeypatch)
    here = load_inventory([inv_file])
    assert children == []
    with inventory.off_the_loop():
        there = load_inventory([inv_file])
    assert children == [there]
    assert list(there.subscribers) == list(here.subscribers)
    assert [there.subscribers[s] for s in list(here.subscribers)[::7]] == \
        [here.subscribers[s] for s in list(here.subscribers)[::7]]
    load_inventory([inv_file])
    assert len(children) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, max(n - 1, 0)), unique=True,
                                             max_size=n))))
def test_picking_sorted_ids_by_mask_or_by_sort(case: tuple[int, list[int]]) -> None:
    """Impacts list their subscribers in id order: a mask over all ids for many of them, a
    sort of their ranks for a few; both give the ids at those ranks, in rank order."""
    n, ranks = case
    items = tuple(f"S-{i:04d}" for i in range(n))
    want = tuple(items[r] for r in sorted(ranks))
    assert inventory._pick_sorted(items, ranks) == want

