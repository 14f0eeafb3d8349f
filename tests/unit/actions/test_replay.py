"""`netreflex policy test`: recorded events replayed against a policy, offline, and the
difference from the current policy."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions.dispatcher import build_payload
from actions.policy import Policy
from actions.replay import compare, read_events, replay
from collector.cli import main
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.source import SourceError

NIGHT = dt.datetime(2024, 6, 10, 23, 0, tzinfo=dt.UTC).timestamp()
NOON = dt.datetime(2024, 6, 11, 12, 0, tzinfo=dt.UTC).timestamp()


def inc(n: int, *, role: str = "access", planned: bool = False) -> Incident:
    return Incident(id=f"INC-{n:06d}", root=f"device:d{n}", kind="device_unreachable",
                    device=f"d{n}", port=None, role=role, site="north", severity="major",
                    state="open", opened_at=NOON, updated_at=NOON, planned=planned,
                    impact=Impact(subscribers=("S-1", "S-2"),
                                  revenue_by_tier={"business": 500.0},
                                  subscribers_by_tier={"business": 2}))


TARGETS = {"noc": {"kind": "webhook", "url": "http://127.0.0.1:9/x"},
           "offers": {"kind": "crm_offer", "url": "http://127.0.0.1:9/o", "offer_code": "X"}}


def pol(**guardrails: Any) -> dict[str, Any]:
    return {"targets": TARGETS,
            "rules": [{"name": "page", "do": [{"target": "noc"}]},
                      {"name": "offer", "when": {"sla_tier": ["business"]},
                       "do": [{"target": "offers"}]}],
            "guardrails": {"customer_facing": ["crm_offer"], **guardrails}}


def write_events(path: Path, events: list[IncidentEvent]) -> Path:
    lines = []
    for i, ev in enumerate(events):
        if i % 2:  # both shapes: the webhook payload, and Incident.to_dict() + event
            lines.append(json.dumps(build_payload(ev, "any", "nrx-x")))
        else:
            lines.append(json.dumps({**ev.incident.to_dict(), "event": ev.type, "ts": ev.ts}))
    path.write_text("# recorded from the action log\n" + "\n".join(lines) + "\n")
    return path


def test_both_recorded_shapes_read_back(tmp_path: Path) -> None:
    evs = [IncidentEvent("opened", inc(1), NOON), IncidentEvent("resolved", inc(1), NOON + 5)]
    got = read_events(write_events(tmp_path / "r.jsonl", evs))
    assert [(e.type, e.incident.id, e.ts) for e in got] == [
        ("opened", "INC-000001", NOON), ("resolved", "INC-000001", NOON + 5)]
    assert got[1].incident.impact.subscribers == ("S-1", "S-2")


def test_bad_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    good = json.dumps({**inc(1).to_dict(), "event": "opened"})
    f.write_text(f"{good}\nnot json\n{{\"event\": \"opened\"}}\n"
                 f"{json.dumps({**inc(1).to_dict(), 'event': 'exploded'})}\n")
    with pytest.raises(SourceError) as err:
        read_events(f)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{f}:2: not JSON")
    assert lines[1].startswith(f"{f}:3: not a recorded incident event")
    assert lines[2].startswith(f"{f}:4: not a recorded incident event") and "exploded" in lines[2]


def test_replay_applies_guardrails_at_the_events_time() -> None:
    p = Policy.model_validate(pol(
        quiet_hours={"start": "22:00", "end": "07:00", "timezone": "UTC"},
        approvals=[{"name": "core", "when": {"role": ["core"]}}],
        rate_limits=[{"name": "noc", "per": "target", "rate": 1, "every": "1h"}]))
    events = [IncidentEvent("opened", inc(2, role="core"), NOON),
              IncidentEvent("opened", inc(1), NIGHT),
              IncidentEvent("updated", inc(4), NOON + 1),  # no rule fires on updates
              IncidentEvent("opened", inc(3, planned=True), NIGHT + 1),
              IncidentEvent("opened", inc(1), NIGHT + 2)]  # the same decision again
    # replayed in time order, numbered in that order
    got = {(r.index, r.rule, r.target): r for r in replay(p, events)}
    assert got[(1, "page", "noc")].incident == "INC-000001"
    assert got[(1, "page", "noc")].outcome == "allowed"
    assert got[(1, "offer", "offers")].outcome == "deferred"  # quiet hours
    assert "queued until 2024-06-11 07:00 UTC" in got[(1, "offer", "offers")].reason
    assert got[(2, "offer", "offers")].outcome == "blocked"  # maintenance
    assert got[(2, "page", "noc")].outcome == "deferred"  # the hour's token went to #1
    assert "rate limit noc" in got[(2, "page", "noc")].reason
    assert got[(3, "page", "noc")].outcome == "duplicate"
    assert got[(4, "page", "noc")].outcome == "waiting"  # the core gate
    assert got[(5, None, None)].reason == "no rule fired"


def test_compare_lists_what_the_new_policy_does_differently() -> None:
    events = [IncidentEvent("opened", inc(1), NOON), IncidentEvent("opened", inc(2), NOON)]
    new = Policy.model_validate(pol(approvals=[{"name": "offers",
                                                "when": {"executors": ["crm_offer"]}}]))
    old_doc = pol()
    old_doc["rules"] = old_doc["rules"][:1]  # the current policy sends no offers
    old = Policy.model_validate(old_doc)
    changes = compare(replay(new, events), replay(old, events))
    assert [(c.sign, c.new.rule if c.new else None) for c in changes] == [
        ("+", "offer"), ("+", "offer")]
    same = compare(replay(new, events), replay(new, events))
    assert same == []
    dry = Policy.model_validate({**pol(), "dry_run": True})
    diff = compare(replay(dry, events), replay(Policy.model_validate(pol()), events))
    assert {c.sign for c in diff} == {"~"} and len(diff) == 4


def test_policy_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new, cur = tmp_path / "new.yaml", tmp_path / "cur.yaml"
    new.write_text(yaml.safe_dump(pol(quiet_hours={"start": "22:00", "end": "07:00",
                                                   "timezone": "UTC"})))
    cur.write_text(yaml.safe_dump(pol()))
    rec = write_events(tmp_path / "r.jsonl", [IncidentEvent("opened", inc(1), NIGHT),
                                              IncidentEvent("resolved", inc(1), NOON)])
    assert main(["policy", "test", "--policy", str(new), "--incidents", str(rec),
                 "--against", str(cur)]) == 0
    out = capsys.readouterr().out
    assert f"2 event(s) from {rec} against {new} (offline: nothing is sent)" in out
    assert "#1 INC-000001 opened at 2024-06-10 23:00:00Z" in out
    assert "  page -> noc: allowed\n" in out
    assert "  offer -> offers: deferred -- quiet_hours: quiet hours (22:00-07:00 UTC): " \
           "queued until 2024-06-11 07:00 UTC" in out
    assert "\nactions: allowed 3, deferred 1\n" in out
    assert "not evaluated offline (they need the running daemon): circuit_breaker\n" in out
    assert f"difference from {cur}" in out
    assert "  ~ #1 INC-000001 opened: offer -> offers: allowed -> deferred" in out
    assert main(["policy", "test", "--policy", str(new), "--incidents", str(rec),
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["index"], r["rule"], r["outcome"]) for r in rows} == {
        (1, "page", "allowed"), (1, "offer", "deferred"), (2, "page", "allowed"),
        (2, "offer", "allowed")}


def test_policy_test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    doc = pol(quiet_hours={"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"})
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    rec = write_events(tmp_path / "r.jsonl", [IncidentEvent("opened", inc(1), NOON)])
    assert main(["policy", "test", "-p", str(bad), "-i", str(rec)]) == 78
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "guardrails.quiet_hours.timezone: unknown time zone" in err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(pol()))
    junk = tmp_path / "junk.jsonl"
    junk.write_text("{}\n")
    assert main(["policy", "test", "-p", str(good), "-i", str(junk)]) == 65
    assert f"{junk}:1: not a recorded incident event" in capsys.readouterr().err


def test_check_reports_guardrail_errors_like_any_other(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    etc = Path(__file__).resolve().parents[3] / "etc"
    shutil.copytree(etc, tmp_path / "etc")
    p = tmp_path / "etc" / "policy.yaml"
    doc = yaml.safe_load(p.read_text())
    assert "guardrails" in doc  # the example shows them
    doc["guardrails"]["customer_facing"] = ["carrier_pigeon"]
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["check", str(tmp_path / "etc" / "netreflex.yaml")]) == 78
    err = capsys.readouterr().err
    assert f"{p}:" in err and "guardrails.customer_facing[0]: unknown executor kind" in err
    assert "(got 'carrier_pigeon')" in err
