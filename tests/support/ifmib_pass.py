"""net-snmp ``pass_persist`` script serving scripted IF-MIB rows from a JSON file.

snmpd runs it as ``pass_persist ROOT PYTHON ifmib_pass.py ROOT DATA.json``; it answers
``get`` / ``getnext`` under ROOT (ifTable ``.1.3.6.1.2.1.2.2``, ifXTable
``.1.3.6.1.2.1.31.1.1`` or ifTableLastChange ``.1.3.6.1.2.1.31.1.5``) and re-reads
DATA.json whenever the file is replaced, so a test flips a port by rewriting the file
(atomically: write a temporary file, then ``os.replace``).

DATA.json::

    {"interfaces": [{"if_index": 1, "name": "ge-0/0/1", "descr": "...", "alias": "...",
                     "admin": 1, "oper": 1, "speed_mbps": 1000, "in_octets": 0,
                     "out_octets": 0, "in_errors": 0, "out_errors": 0}, ...],
     "if_table_last_change": 0,
     "overrides": {"1.3.6.1.2.1.2.2.1.8.2": ["string", "up"]}}

``overrides`` replaces (or adds) single rows with any pass_persist type, to script
malformed replies; a ``null`` value removes the row.

``set`` is answered ``not-writable`` except for ifAdminStatus (ifTable column 7) when
snmpd lets the manager write (``rwcommunity`` / ``rwuser``): the script then records
the SET in DATA.json (``"sets": [{"oid": ..., "value": 2}, ...]``), changes ``admin``
and moves ``oper`` with it -- down(2) on a down SET, ``oper_after_up`` (default up(1))
on an up SET: an interface with ``"oper_after_up": 2`` stays down (a cut fibre).

Standard library only: snmpd runs this outside the test's virtualenv path set-up.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

Oid = tuple[int, ...]
Row = tuple[str, str]  # (pass_persist type, value)

IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF_TABLE_LAST_CHANGE = (1, 3, 6, 1, 2, 1, 31, 1, 5, 0)


def _oid(text: str) -> Oid:
    return tuple(int(p) for p in text.strip().strip(".").split(".") if p)


def _dotted(oid: Oid) -> str:
    return "." + ".".join(str(p) for p in oid)


def build(data: dict[str, Any]) -> dict[Oid, Row]:
    """All rows the agent would have for ``data``."""
    rows: dict[Oid, Row] = {}
    for itf in data.get("interfaces", []):
        i = int(itf["if_index"])
        descr = str(itf.get("descr", itf.get("name", f"if{i}")))
        speed = int(itf.get("speed_mbps", 1000))
        ift = {
            1: ("integer", str(i)),
            2: ("string", descr),
            3: ("integer", "6"),
            5: ("gauge", str(min(speed * 1_000_000, 4_294_967_295))),
            7: ("integer", str(itf.get("admin", 1))),
            8: ("integer", str(itf.get("oper", 1))),
            10: ("counter", str(int(itf.get("in_octets", 0)) % 2**32)),
            14: ("counter", str(itf.get("in_errors", 0))),
            16: ("counter", str(int(itf.get("out_octets", 0)) % 2**32)),
            20: ("counter", str(itf.get("out_errors", 0))),
        }
        for col, row in ift.items():
            rows[(*IF_ENTRY, col, i)] = row
        ifx = {
            1: ("string", str(itf.get("name", descr))),
            6: ("counter64", str(itf.get("in_octets", 0))),
            10: ("counter64", str(itf.get("out_octets", 0))),
            15: ("gauge", str(speed)),
            18: ("string", str(itf.get("alias", ""))),
        }
        for col, row in ifx.items():
            rows[(*IFX_ENTRY, col, i)] = row
    if "if_table_last_change" in data:
        rows[IF_TABLE_LAST_CHANGE] = ("timeticks", str(data["if_table_last_change"]))
    for text, row in data.get("overrides", {}).items():
        if row is None:
            rows.pop(_oid(text), None)
        else:
            rows[_oid(text)] = (str(row[0]), str(row[1]))
    return rows


class Table:
    def __init__(self, root: Oid, path: str) -> None:
        self.root = root
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.rows: list[tuple[Oid, Row]] = []

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.rows, self.stamp = [], None
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self.stamp:
            return
        with open(self.path, encoding="utf-8") as fh:
            data = json.load(fh)
        n = len(self.root)
        self.rows = sorted((k, v) for k, v in build(data).items() if k[:n] == self.root)
        self.stamp = stamp

    def get(self, oid: Oid) -> tuple[Oid, Row] | None:
        for key, row in self.rows:
            if key == oid:
                return key, row
        return None

    def getnext(self, oid: Oid) -> tuple[Oid, Row] | None:
        for key, row in self.rows:
            if key > oid:
                return key, row
        return None


def set_admin(path: str, oid: Oid, typed: str) -> str:
    """Apply a SET of ifAdminStatus to DATA.json; the pass_persist answer."""
    if oid[:-1] != (*IF_ENTRY, 7):
        return "not-writable"
    kind, _, value = typed.strip().partition(" ")
    if kind.lower() != "integer" or value.strip() not in ("1", "2"):
        return "wrong-value" if kind.lower() == "integer" else "wrong-type"
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    status = int(value)
    for itf in data.get("interfaces", []):
        if int(itf["if_index"]) == oid[-1]:
            itf["admin"] = status
            itf["oper"] = 2 if status == 2 else int(itf.get("oper_after_up", 1))
            break
    else:
        return "no-such-name"
    data.setdefault("sets", []).append({"oid": _dotted(oid), "value": status})
    tmp = f"{path}.set.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
    return "DONE"


def main() -> None:
    root, path = _oid(sys.argv[1]), sys.argv[2]
    table = Table(root, path)
    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line.strip().lower()
        if cmd == "ping":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = _oid(sys.stdin.readline())
            table.refresh()
            found = table.get(oid) if cmd == "get" else table.getnext(oid)
            if found is None:
                out.write("NONE\n")
            else:
                key, (kind, value) = found
                out.write(f"{_dotted(key)}\n{kind}\n{value}\n")
        elif cmd == "set":
            oid = _oid(sys.stdin.readline())
            typed = sys.stdin.readline()
            out.write(set_admin(path, oid, typed) + "\n")
        elif cmd:
            out.write("NONE\n")
        out.flush()


if __name__ == "__main__":
    main()
