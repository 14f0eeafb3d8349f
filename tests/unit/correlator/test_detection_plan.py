"""The subscribers' optional ``plan_mbps`` (what plan saturation is judged against):
read from CSV (one process or two) and YAML, checked with file:line, and used on a port
with exactly one subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest

from correlator import subscriber_csv
from correlator.detection import DetectionConfig, Detectors
from correlator.inventory import load_inventory
from correlator.subscriber_csv import load_csv
from correlator.subscribers import SubscriberTable
from probes.source import SourceError
from probes.types import InterfaceCounters


def read(path: Path, *, parallel: bool = False) -> tuple[list[float | None], list[str]]:
    table = SubscriberTable()
    problems = load_csv(path, table, parallel=parallel)
    plans = [table.subscriber(row, table.ids[row]).plan_mbps for row in range(len(table))]
    return plans, [str(p) for p in problems]


def test_plan_column_is_optional_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        "id,device,port,monthly_revenue,plan_mbps\n"
        "S-1,olt1,p1,30,100\n"
        "S-2,olt1,p2,30,\n"
        "S-3,olt1,p3,30,0\n"
        "S-4,olt1,p4,30,fast\n"
        "S-5,olt1,p5,30,2.5\n"
    )
    plans, problems = read(path)
    assert plans == [100.0, None, 2.5]
    assert problems == [
        f"{path}:4: plan_mbps: Input should be greater than 0 (got '0')",
        f"{path}:5: plan_mbps: Input should be a valid number, unable to parse string as a "
        "number (got 'fast')",
    ]


def test_plan_is_read_by_two_processes_as_by_one(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "subs.csv"
    with path.open("w") as fh:
        fh.write("id,device,port,monthly_revenue,plan_mbps\n")
        for i in range(20_000):
            plan = "-1" if i == 17_002 else "" if i % 3 == 0 else f"{50 * (1 + i % 20)}"
            fh.write(f"S-{i:06d},olt{i % 7},pon0/{i % 16},30,{plan}\n")
    monkeypatch.setattr(subscriber_csv, "PARALLEL_FROM", 0)
    monkeypatch.setattr(subscriber_csv, "_BLOCK", 1 << 16)
    one = read(path)
    two = read(path, parallel=True)
    assert one == two
    assert one[0][1] == 100.0 and one[0][0] is None and len(one[0]) == 19_999
    assert one[1] == [f"{path}:17004: plan_mbps: Input should be greater than 0 (got '-1')"]


def inventory_files(tmp_path: Path, yaml_plan: str) -> Path:
    (tmp_path / "subs.csv").write_text("id,device,port,monthly_revenue,plan_mbps\n"
                                       "S-1,sw1,p1,30,200\nS-2,sw1,p2,30,\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "devices:\n  sw1: {role: access}\n"
        "subscriber_files: [subs.csv]\n"
        "subscribers:\n"
        f"  - {{id: Y-1, device: sw1, port: p3, monthly_revenue: 10{yaml_plan}}}\n")
    return path


def test_yaml_plan_and_saturation_from_a_loaded_inventory(tmp_path: Path) -> None:
    inv = load_inventory([inventory_files(tmp_path, ", plan_mbps: 50")])
    assert inv.subscribers["S-1"].plan_mbps == 200.0
    assert inv.subscribers["S-2"].plan_mbps is None
    assert inv.subscribers["Y-1"].plan_mbps == 50.0
    det = Detectors(DetectionConfig.model_validate({"plan_saturation": {"raise_after_s": 60}}),
                    inv)
    names = ["p1", "p2", "p3"]

    def poll(out_octets: list[int | None], ts: float) -> list[str | None]:
        c = InterfaceCounters([1, 2, 3], names, [1, 1, 1], [0, 0, 0], out_octets, [0, 0, 0],
                              [0, 0, 0], [1000, 1000, 1000])
        return [cond.subscriber for cond in det.counters("sw1", c, ts)
                if cond.kind == "plan_saturation"]

    assert poll([0, 0, 0], 0.0) == []
    # 180 Mb/s on each port: 90% of S-1's plan, over Y-1's, S-2 has no plan
    assert poll([1_350_000_000] * 3, 60.0) == ["S-1", "Y-1"]


def test_a_bad_yaml_plan_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as exc:
        load_inventory([inventory_files(tmp_path, ", plan_mbps: -3")])
    assert "inventory.yaml:5: subscribers[0].plan_mbps: Input should be greater than 0" in \
        str(exc.value)
