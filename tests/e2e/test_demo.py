"""`netreflex demo` runs, ends by itself, reports the expected incidents and cleans up.

The daemon hears about faults from SNMP polls, traps and a gNMI stream; the demo says
which one saw each fault first."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from collector.demo.topology import subscribers
from tests.e2e.conftest import netreflex_cmd

pytestmark = pytest.mark.e2e


def test_demo_json(tmp_path: Path) -> None:
    res = subprocess.run([*netreflex_cmd(), "demo", "--json"], capture_output=True,
                         timeout=180, cwd=tmp_path)
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr.decode()
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    incidents = [e for e in events if e["type"] == "incident"]
    by = {(e["event"], e["root"]): e for e in incidents}

    port = by[("opened", "link:olt1:pon0/3")]
    expected = sorted(s.id for s in subscribers() if (s.device, s.port) == ("olt1", "pon0/3"))
    assert port["subscribers"] == expected
    assert port["symptoms"] == []
    # the fibre cut reached the daemon as a linkDown trap, before any poll noticed
    assert "(trap)" in port["first_seen"]
    assert port["first_seen"] == port["timeline"][0]
    assert any(t.startswith("olt1 pon0/3 went down (trap)") for t in port["timeline"])

    agg = by[("opened", "device:agg1")]
    assert agg["severity"] == "critical"
    assert set(agg["symptoms"]) == {"device:olt1", "device:olt2", "link:core1:xe-0/0/1",
                                    "link:olt3:uplink1"}
    behind = [s for s in subscribers() if s.device in ("olt1", "olt2")]
    assert agg["subscriber_count"] == len(behind)
    assert agg["revenue_at_risk"] == pytest.approx(sum(s.revenue for s in behind))
    # core1's side of the dead link was streamed over gNMI (core1 sends no traps), olt3's
    # side came as a trap, and the devices behind agg1 fell silent to the SNMP poller
    assert "core1 xe-0/0/1 went down (gnmi)" in agg["timeline"]
    assert "olt3 uplink1 went down (trap)" in agg["timeline"]
    assert any(t.endswith("(gnmi)") for t in agg["timeline"])
    assert any("stopped answering snmp" in t for t in agg["timeline"])
    assert agg["first_seen"] == agg["timeline"][0]
    assert ("resolved", "link:olt1:pon0/3") in by and ("resolved", "device:agg1") in by
    # olt3 is dual-homed: it never shows up as cut off
    assert not any("olt3" in e["devices"] for e in incidents)

    actions = [e for e in events if e["type"] == "action"]
    assert {(a["event"], a["incident"]) for a in actions} >= {
        ("opened", port["incident"]), ("resolved", port["incident"]),
        ("opened", agg["incident"]), ("resolved", agg["incident"])}
    summary = next(e for e in events if e["type"] == "summary")
    assert summary["duplicates"] == 0
    assert all(a["state"] == "succeeded" for a in summary["actions"])
    assert summary["traps_sent"] >= 4  # pon0/3 down/up, olt3 uplink1 down/up

    stopped = next(e for e in events if e["type"] == "daemon" and "exit_code" in e)
    assert stopped["exit_code"] == 0
    with pytest.raises(ProcessLookupError):
        os.kill(stopped["pid"], 0)  # the daemon it started is gone
    setup = next(e for e in events if e["type"] == "setup")
    assert not Path(setup["dir"]).exists()  # and its files are cleaned up


def test_demo_human_output_tells_the_story(tmp_path: Path) -> None:
    res = subprocess.run([*netreflex_cmd(), "demo"], capture_output=True, timeout=180,
                         cwd=tmp_path)
    out = res.stdout.decode()
    assert res.returncode == 0, out + res.stderr.decode()
    for text in ("INCIDENT", "root cause        : device:agg1", "suppressed        : ",
                 "revenue at risk   : $", "ALL-CLEAR", "action fired      : webhook",
                 "first seen        : olt1 pon0/3 went down (trap)", "over gNMI"):
        assert text in out
    assert "(gnmi)" in out
