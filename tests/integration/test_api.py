"""The supervisor API served on loopback by a real Daemon built from a real config: auth,
filters, 404s and 400s, the decision record, and a schemathesis run against the served
OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector.api
from actions.policy import Rule, explain, matches
from collector.api import build_api
from collector.cli import main
from collector.config import load_config
from collector.daemon import Daemon
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.types import IF_OPER_STATUS, REACHABLE, STATUS_DOWN, STATUS_UP, Observation

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-the-api-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier,email,consent_email
S-1,acc1,p1,30,residential,a@x.example,true
S-2,acc1,p2,45,residential,b@x.example,true
S-3,acc1,p2,250,business,c@x.example,false
S-4,acc2,q1,3000,enterprise,d@x.example,true
"""

RULES: list[dict[str, Any]] = [
    {"name": "page-business", "when": {"sla_tier": ["business", "enterprise"],
                                       "min_revenue": 100},
     "do": [{"target": "noc"}]},
    {"name": "core-only", "when": {"role": ["core"]}, "do": [{"target": "log"}]},
    {"name": "access-quiet", "when": {"role": ["access"], "kind": ["link_down"]},
     "do": [{"target": "log"}], "stop": True},
    {"name": "everything-else", "when": {}, "do": [{"target": "log"}]},
]


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


# the core only: the incidents populate() opens (acc1, acc2) stay unplanned
WINDOWS: list[dict[str, Any]] = [
    {"id": "core-upgrade", "reason": "JunOS upgrade (CHG-1)", "owner": "core-team",
     "start": _utc(time.time() - 3600), "end": _utc(time.time() + 3600),
     "match": {"devices": ["core"]}},
    {"id": "hq-nightly", "reason": "nightly backups", "timezone": "Europe/Lisbon",
     "every": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "12:00",
               "duration": "30m"},
     "match": {"sites": ["hq"]}},
]


def write_config(tmp: Path, **daemon: Any) -> Path:
    (tmp / "secrets").mkdir(exist_ok=True)
    (tmp / "secrets" / "api.token").write_text(TOKEN + "\n")
    (tmp / "subscribers.csv").write_text(SUBSCRIBERS)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core", "site": "hq"},
                    "acc1": {"role": "access", "site": "north", "parents": ["core"],
                             "ports": ["p1", "p2", "p3"]},
                    "acc2": {"role": "access", "parents": ["core"], "ports": ["q1"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": "http://127.0.0.1:9/never"},
                    "log": {"kind": "log"}},
        "rules": RULES,
    }, sort_keys=False))
    (tmp / "maintenance.yaml").write_text(yaml.safe_dump({"windows": WINDOWS}))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": None,
                   "api_listen": "127.0.0.1:0", "api_token": {"file": "secrets/api.token"},
                   **daemon},
        "correlation": {"unreachable_hold_down": 0, "maintenance_file": "maintenance.yaml"},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def obs(device: str, name: str, value: int, instance: str = "") -> Observation:
    return Observation(device=device, source="snmp", name=name, instance=instance,
                       value=value, ts=time.time(), labels={"admin": "up"})


def populate(d: Daemon) -> None:
    """Through the real correlator and dispatcher: acc1 p2 goes down (S-2, S-3), acc2 stops
    answering (S-4), then p2 comes back. One webhook action fails for good."""
    def feed(batch: list[Observation]) -> None:
        for ev in d.correlator.observe(batch):
            d.dispatcher.submit(ev)

    feed([obs("acc1", IF_OPER_STATUS, STATUS_UP, p) for p in ("p1", "p2", "p3")])
    feed([obs("acc1", IF_OPER_STATUS, STATUS_DOWN, "p2")])
    feed([obs("acc2", REACHABLE, 0)])
    feed([obs("acc1", IF_OPER_STATUS, STATUS_UP, "p2")])
    j = d.journal
    now = time.time()
    for row in j.query(states=("planned",), limit=1000):
        j.start(row.key, now)
        if row.target == "noc" and row.event == "opened" and row.incident_id == "INC-000002":
            j.finish(row.key, "failed", now, error="HTTP 500 from the receiver",
                     status_code=500)
        elif row.event != "resolved":
            j.finish(row.key, "succeeded", now)
        # resolved actions stay running: a backlog to look at


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(load_config(write_config(tmp_path)))
    populate(d)
    yield d
    d._close_stores()


@pytest.fixture
async def base(daemon: Daemon) -> AsyncIterator[str]:
    runner = web.AppRunner(build_api(daemon), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/api/v1"
    await runner.cleanup()


async def get(url: str, headers: dict[str, str] | None = None
              ) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, \
            s.get(url, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json(content_type=None), r.headers


# --- auth -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/incidents", "/incidents/INC-000001",
                                  "/incidents/INC-000001/explain", "/actions",
                                  "/silences", "/maintenance", "/maintenance/events",
                                  "/openapi.json", "/no-such-thing"])
@pytest.mark.parametrize(("headers", "challenge"), [
    ({}, 'Bearer realm="netreflex"'),
    ({"Authorization": "Bearer wrong-token-0123456789"},
     'Bearer realm="netreflex", error="invalid_token"'),
    ({"Authorization": f"Basic {TOKEN}"}, 'Bearer realm="netreflex", error="invalid_token"'),
    ({"Authorization": f"Bearer {TOKEN}x"}, 'Bearer realm="netreflex", error="invalid_token"'),
    ({"Authorization": "Bearer"}, 'Bearer realm="netreflex", error="invalid_token"'),
])
async def test_every_path_needs_the_token(base: str, path: str, headers: dict[str, str],
                                          challenge: str) -> None:
    status, body, h = await get(base + path, headers)
    assert status == 401
    assert h["WWW-Authenticate"] == challenge
    assert body["field"] == "Authorization"
    assert "bearer token" in body["error"]


async def test_right_token_any_scheme_case(base: str) -> None:
    status, body, _ = await get(base + "/health", {"Authorization": f"bearer {TOKEN}"})
    assert status == 200 and body["status"] == "ok"


async def test_token_compare_is_constant_time(base: str, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Both sides are hashed before hmac.compare_digest: equal length whatever is sent, so
    neither the token's content nor its length shows in the timing."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(collector.api.hmac, "compare_digest", spy)
    for guess in ("x", TOKEN[:-1], TOKEN * 50, TOKEN):
        await get(base + "/health", {"Authorization": f"Bearer {guess}"})
    assert len(seen) == 4
    assert {(len(a), len(b)) for a, b in seen} == {(32, 32)}
    assert [a == b for a, b in seen] == [False, False, False, True]


# --- reads ----------------------------------------------------------------------------


async def test_health(base: str) -> None:
    status, h, _ = await get(base + "/health")
    assert status == 200
    assert h["status"] == "ok" and h["devices"] == 0
    assert h["open_incidents"] == 1  # acc2; acc1 p2 resolved
    assert h["incidents_by_state"] == {"open": 1, "resolved": 1}
    assert h["action_backlog"] == h["actions_by_state"]["running"] > 0
    assert h["actions_by_state"]["failed"] == 1
    assert h["policy_rules"] == 4 and h["policy_dry_run"] is False


async def test_incident_list_and_filters(base: str) -> None:
    async def ids(query: str) -> list[str]:
        status, body, _ = await get(base + "/incidents" + query)
        assert status == 200, body
        assert body["count"] == len(body["incidents"])
        return [i["id"] for i in body["incidents"]]

    assert await ids("") == ["INC-000002"]  # open by default
    assert await ids("?state=all") == ["INC-000002", "INC-000001"]  # newest first
    assert await ids("?state=resolved") == ["INC-000001"]
    assert await ids("?state=merged") == []
    assert await ids("?state=all&kind=link_down") == ["INC-000001"]
    assert await ids("?state=all&device=acc2") == ["INC-000002"]
    assert await ids("?state=all&severity=major") == ["INC-000002"]
    assert await ids("?state=all&severity=critical") == []
    _, body, _ = await get(base + "/incidents?state=all&limit=1")
    assert body["count"] == 1 and body["more"] is True
    inc = body["incidents"][0]
    assert inc["impact"] == {"subscriber_count": 1, "revenue_at_risk": 3000.0,
                             "revenue_by_tier": {"enterprise": 3000.0},
                             "subscribers_by_tier": {"enterprise": 1}}
    assert "subscribers" not in inc["impact"] and "timeline" not in inc


async def test_one_incident_with_and_without_subscribers(base: str) -> None:
    status, inc, _ = await get(base + "/incidents/INC-000001")
    assert status == 200
    assert inc["title"] == "link down on acc1 p2" and inc["state"] == "resolved"
    assert inc["impact"]["subscribers"] == ["S-2", "S-3"]
    assert inc["impact"]["revenue_by_tier"] == {"business": 250.0, "residential": 45.0}
    assert [t["text"] for t in inc["timeline"]][-1] == "resolved"
    _, lean, _ = await get(base + "/incidents/INC-000001?subscribers=false")
    assert lean["impact"]["subscribers"] is None
    assert lean["impact"]["subscriber_count"] == 2


@pytest.mark.parametrize("path", ["/incidents/INC-999999", "/incidents/INC-999999/explain",
                                  "/actions/nrx-nope/explain"])
async def test_unknown_ids_are_404(base: str, path: str) -> None:
    status, body, _ = await get(base + path)
    assert status == 404
    assert body["field"] in ("id", "key") and "no " in body["error"]


@pytest.mark.parametrize(("query", "field"), [
    ("/incidents?limit=0", "limit"),
    ("/incidents?limit=1001", "limit"),
    ("/incidents?limit=ten", "limit"),
    ("/incidents?limit=-1", "limit"),
    ("/incidents?state=closed", "state"),
    ("/incidents?severity=high", "severity"),
    ("/incidents?kind=bgp", "kind"),
    ("/incidents?device=", "device"),
    ("/incidents?stat=open", "stat"),
    ("/incidents?state=open&state=all", "state"),
    ("/incidents/INC-000001?subscribers=yes", "subscribers"),
    ("/actions?state=done", "state"),
    ("/actions?incident=" + "x" * 201, "incident"),
    ("/health?verbose=1", "verbose"),
    ("/silences?state=expired", "state"),
    ("/maintenance?within=soon", "within"),
    ("/maintenance?within=367d", "within"),
    ("/maintenance?within=0", "within"),
    ("/maintenance/events?limit=0", "limit"),
])
async def test_malformed_queries_are_400_naming_the_field(base: str, query: str,
                                                          field: str) -> None:
    status, body, _ = await get(base + query)
    assert status == 400
    assert body["field"] == field
    assert field in body["error"]


async def test_wrong_method_is_405_json(base: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(base + "/incidents", headers=AUTH) as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET"
        assert "POST" in (await r.json())["error"]


async def test_actions_and_filters(base: str, daemon: Daemon) -> None:
    _, body, _ = await get(base + "/actions")
    rows = body["actions"]
    assert body["count"] == len(rows) == len(daemon.journal.rows())
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows),
                                                     reverse=True)
    _, failed, _ = await get(base + "/actions?state=failed")
    (f,) = failed["actions"]
    assert f["incident_id"] == "INC-000002" and f["target"] == "noc"
    assert f["last_error"] == "HTTP 500 from the receiver" and f["status_code"] == 500
    assert f["attempts"] == 1
    _, pending, _ = await get(base + "/actions?state=pending")
    assert pending["actions"] and {r["state"] for r in pending["actions"]} == {"running"}
    assert {r["event"] for r in pending["actions"]} == {"resolved"}
    _, one, _ = await get(base + "/actions?incident=INC-000001")
    assert {r["incident_id"] for r in one["actions"]} == {"INC-000001"}
    _, lim, _ = await get(base + "/actions?limit=1")
    assert lim["count"] == 1 and lim["more"] is True


# --- the decision record ------------------------------------------------------------------


async def test_explain_incident_says_why_each_rule_did_or_did_not_fire(base: str) -> None:
    status, x, _ = await get(base + "/incidents/INC-000001/explain")
    assert status == 200
    assert [d["event"] for d in x["decisions"]] == ["opened", "resolved"]
    opened = {r["rule"]: r for r in x["decisions"][0]["rules"]}
    assert x["decisions"][0]["basis"] == "journal"
    assert opened["page-business"]["fired"] is True
    assert opened["page-business"]["targets"] == ["noc"]
    assert opened["core-only"] == {
        "rule": "core-only", "matched": False, "fired": False, "stopped_by": None,
        "reasons": ["role access is not in role [core]"], "targets": ["log"],
        "dry_run": False,
    }
    assert opened["access-quiet"]["fired"] is True
    # matched, but the rule before it says stop: true
    assert opened["everything-else"]["matched"] is True
    assert opened["everything-else"]["fired"] is False
    assert opened["everything-else"]["stopped_by"] == "access-quiet"
    fired = {(r["rule"], t) for d in x["decisions"] for r in d["rules"] if r["fired"]
             for t in r["targets"]}
    journaled = {(a["rule"], a["target"]) for a in x["actions"]}
    assert fired == journaled


async def test_explain_incident_reasons_for_a_device_incident(base: str) -> None:
    _, x, _ = await get(base + "/incidents/INC-000002/explain")
    (opened,) = x["decisions"]
    rules = {r["rule"]: r for r in opened["rules"]}
    assert rules["access-quiet"]["reasons"] == [
        "kind device_unreachable is not in kind [link_down]"]
    assert rules["everything-else"]["fired"] is True
    assert rules["page-business"]["fired"] is True


async def test_explain_action(base: str, daemon: Daemon) -> None:
    (row,) = daemon.journal.query(states=("failed",))
    status, x, _ = await get(base + f"/actions/{row.key}/explain")
    assert status == 200
    assert x["action"]["key"] == row.key and x["action"]["state"] == "failed"
    assert x["action"]["attempts"] == 1
    assert x["action"]["last_error"] == "HTTP 500 from the receiver"
    assert x["incident"]["id"] == "INC-000002"
    assert x["rule"]["name"] == "page-business" and x["rule"]["in_policy"] is True
    assert x["rule"]["when"]["sla_tier"] == ["business", "enterprise"]
    assert x["target"] == {"name": "noc", "in_policy": True, "kind": "webhook"}
    assert x["decision"]["basis"] == "journal"
    assert x["decision"]["matches_now"] is True and x["decision"]["reasons"] == []


# --- approvals ------------------------------------------------------------------------------


async def post(url: str, body: Any, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, \
            s.post(url, data=raw if raw is not None else json.dumps(body).encode(),
                   headers={**(AUTH if headers is None else headers),
                            "Content-Type": "application/json"}) as r:
        return r.status, await r.json(content_type=None)


def waiting(daemon: Daemon, n: int = 1) -> list[str]:
    """Put ``n`` of the running (resolved) actions into waiting_approval, as the
    guardrails would."""
    rows = daemon.journal.query(states=("running",))[:n]
    for row in rows:
        daemon.journal.hold(row.key, time.time() + 3600, time.time(), [
            {"guardrail": "approval", "outcome": "waiting",
             "reason": "needs a person's approval: gate core (role core)",
             "until": time.time() + 3600}])
    return [r.key for r in rows]


async def test_approve_moves_a_waiting_action_on_and_records_who(base: str,
                                                                 daemon: Daemon) -> None:
    (key,) = waiting(daemon)
    _, listed, _ = await get(base + "/actions?state=waiting_approval")
    assert [a["key"] for a in listed["actions"]] == [key]
    assert listed["actions"][0]["verdicts"][0]["outcome"] == "waiting"
    assert listed["actions"][0]["expires_at"] > time.time()
    status, a = await post(base + f"/actions/{key}/approve", {"by": "alice",
                                                             "reason": "change CHG-1"})
    assert status == 200, a
    assert a["key"] == key and a["state"] == "planned"
    assert a["approval"]["decision"] == "approved" and a["approval"]["by"] == "alice"
    assert a["approval"]["reason"] == "change CHG-1"
    row = daemon.journal.get(key)
    assert row is not None and row.state == "planned"
    status, again = await post(base + f"/actions/{key}/approve", {"by": "alice"})
    assert status == 409 and again["field"] == "key"
    assert "is planned, not waiting_approval" in again["error"]


async def test_deny_blocks_with_the_reason(base: str, daemon: Daemon) -> None:
    (key,) = waiting(daemon)
    status, a = await post(base + f"/actions/{key}/deny", {"by": "bob", "reason": "freeze"})
    assert status == 200, a
    assert a["state"] == "blocked" and a["last_error"] == "denied by bob: freeze"
    _, x, _ = await get(base + f"/actions/{key}/explain")
    assert x["action"]["approval"]["decision"] == "denied"
    assert x["action"]["verdicts"][0]["guardrail"] == "approval"
    assert isinstance(x["decision"]["inputs"], dict)


@pytest.mark.parametrize("verb", ["approve", "deny"])
async def test_approve_and_deny_need_the_token(base: str, daemon: Daemon, verb: str) -> None:
    (key,) = waiting(daemon)
    status, body = await post(base + f"/actions/{key}/{verb}", {"by": "x", "reason": "y"},
                              headers={})
    assert status == 401 and body["field"] == "Authorization"
    row = daemon.journal.get(key)
    assert row is not None and row.state == "waiting_approval"


@pytest.mark.parametrize(("verb", "body", "raw", "field", "message"), [
    ("approve", {}, None, "by", "by is required"),
    ("approve", {"by": ""}, None, "by", "by: String should have at least 1 character"),
    ("approve", {"by": "   "}, None, "by", "by: String should match pattern"),
    ("approve", {"by": 42}, None, "by", "by: Input should be a valid string"),
    ("approve", {"by": "a" * 101}, None, "by", "by: String should have at most 100"),
    ("approve", {"by": "a", "reason": 1}, None, "reason", "reason: Input should be a valid"),
    ("approve", {"by": "a", "why": "x"}, None, "why", "unknown field why (accepted: by, reason)"),
    ("approve", None, b"not json", "body", "the body must be a JSON object"),
    ("approve", None, b"[1, 2]", "body", "the body must be a JSON object"),
    ("approve", None, b"", "body", "the body must be a JSON object"),
    ("deny", {"by": "a"}, None, "reason", "reason is required"),
    ("deny", {"by": "a", "reason": ""}, None, "reason", "reason: String should have at least"),
])
async def test_bad_bodies_are_400_naming_the_field(base: str, daemon: Daemon, verb: str,
                                                   body: Any, raw: bytes | None, field: str,
                                                   message: str) -> None:
    (key,) = waiting(daemon)
    status, err = await post(base + f"/actions/{key}/{verb}", body, raw=raw)
    assert status == 400, err
    assert err["field"] == field and err["error"].startswith(message), err
    row = daemon.journal.get(key)
    assert row is not None and row.state == "waiting_approval"


@pytest.mark.parametrize("verb", ["approve", "deny"])
async def test_unknown_action_is_404_and_wrong_method_405(base: str, verb: str) -> None:
    status, body = await post(base + f"/actions/nrx-nope/{verb}", {"by": "a", "reason": "b"})
    assert status == 404 and body == {"error": "no action nrx-nope", "field": "key"}
    status, body, headers = await get(base + f"/actions/nrx-nope/{verb}")
    assert status == 405 and headers["Allow"] == "POST"


def incident(**kw: Any) -> Incident:
    tiers = kw.pop("tiers", {"residential": 2})
    impact = Impact(subscribers=tuple(f"s{i}" for i in range(sum(tiers.values()))),
                    revenue_by_tier={t: 10.0 * n for t, n in tiers.items()},
                    subscribers_by_tier=tiers)
    base_kw: dict[str, Any] = dict(id="INC-000009", root="link:acc1:p1", kind="link_down",
                                   device="acc1", port="p1", role="access", site="north",
                                   severity="minor", state="open", opened_at=0.0,
                                   updated_at=0.0, impact=impact)
    return Incident(**{**base_kw, **kw})


@settings(max_examples=300, deadline=None)
@given(
    when=st.fixed_dictionaries({}, optional={
        "events": st.lists(st.sampled_from(["opened", "updated", "resolved", "merged"]),
                           min_size=1, unique=True),
        "kind": st.lists(st.sampled_from(["device_unreachable", "link_down"]), unique=True),
        "severity": st.lists(st.sampled_from(["critical", "major", "minor"]), unique=True),
        "role": st.lists(st.sampled_from(["core", "access"]), unique=True),
        "site": st.lists(st.sampled_from(["north", "south"]), unique=True),
        "min_subscribers": st.integers(0, 6),
        "min_revenue": st.floats(0, 80),
        "sla_tier": st.lists(st.sampled_from(["residential", "business"]), unique=True),
        "planned": st.booleans(),
    }),
    event=st.sampled_from(["opened", "updated", "resolved", "merged"]),
    kind=st.sampled_from(["device_unreachable", "link_down"]),
    role=st.sampled_from(["core", "access"]),
    site=st.sampled_from(["north", "south", None]),
    tiers=st.dictionaries(st.sampled_from(["residential", "business"]), st.integers(1, 3)),
    planned=st.booleans(),
)
def test_explain_agrees_with_matches(when: dict[str, Any], event: str, kind: str, role: str,
                                     site: str | None, tiers: dict[str, int],
                                     planned: bool) -> None:
    """explain is add-only next to matches: they must never disagree (belongs with the
    policy unit tests; kept here next to its only caller's tests)."""
    rule = Rule.model_validate({"name": "r", "when": when, "do": [{"target": "t"}]})
    ev = IncidentEvent(event, incident(kind=kind, role=role, site=site, tiers=tiers,
                                   planned=planned), 0.0)  # type: ignore[arg-type]
    reasons = explain(rule, ev)
    assert matches(rule, ev) == (not reasons)


# --- silences and maintenance windows -------------------------------------------------------

SILENCE = {"match": {"devices": ["acc1"]}, "reason": "replacing the optics (CHG-7)",
           "created_by": "alice@noc1", "duration": "2h"}


def port(d: Daemon, p: str, status: int) -> list[IncidentEvent]:
    events = d.correlator.observe([obs("acc1", IF_OPER_STATUS, status, p)])
    for ev in events:
        d.dispatcher.submit(ev)
    return events


async def test_silence_lifecycle_marks_new_incidents_planned_until_it_ends(
        base: str, daemon: Daemon) -> None:
    before = time.time()
    status, sil = await post(base + "/silences", SILENCE)
    assert status == 201, sil
    assert sil["id"] == "SIL-000001" and sil["state"] == "active"
    assert sil["match"] == {"devices": ["acc1"]} and sil["created_by"] == "alice@noc1"
    assert sil["reason"] == "replacing the optics (CHG-7)"
    assert 7200 <= sil["expires_at"] - before <= 7200 + (time.time() - before)
    assert sil["expired_at"] is None and sil["expired_by"] is None
    _, listed, _ = await get(base + "/silences")
    assert listed == {"silences": [sil], "count": 1}

    (opened,) = port(daemon, "p1", STATUS_DOWN)
    _, inc, _ = await get(base + f"/incidents/{opened.incident.id}")
    assert inc["planned"] is True and inc["planned_by"] == [sil["id"]]
    assert inc["planned_until"] == sil["expires_at"]

    status, ended = await post(base + f"/silences/{sil['id']}/expire", {"by": "bob"})
    assert status == 200, ended
    assert ended["state"] == "expired" and ended["expired_by"] == "bob"
    assert before <= ended["expired_at"] <= time.time()
    status, again = await post(base + f"/silences/{sil['id']}/expire", {"by": "bob"})
    assert status == 409 and again["field"] == "id"
    assert again["error"].startswith(f"silence {sil['id']} has already expired (ended by bob")
    _, active, _ = await get(base + "/silences")
    assert active == {"silences": [], "count": 0}
    _, everything, _ = await get(base + "/silences?state=all")
    assert everything == {"silences": [ended], "count": 1}
    # the incident it covered is no longer planned: customers can now be told
    replanned = [e for e in daemon.correlator.tick() if e.incident.id == opened.incident.id]
    assert [(e.type, e.incident.planned) for e in replanned] == [("updated", False)]

    (later,) = port(daemon, "p3", STATUS_DOWN)
    _, inc3, _ = await get(base + f"/incidents/{later.incident.id}")
    assert inc3["planned"] is False and inc3["planned_by"] == []
    _, ev, _ = await get(base + "/maintenance/events")
    assert [(e["type"], e["silence"]["id"]) for e in ev["events"]] == [
        ("silence_expired", sil["id"]), ("silence_created", sil["id"])]
    assert ev["events"][0]["silence"] == ended


async def test_silences_survive_a_restart_and_all_is_newest_first(tmp_path: Path) -> None:
    d = Daemon(load_config(write_config(tmp_path)))
    try:
        first = d.correlator.maintenance.create_silence(
            {"sites": ["north"]}, reason="a", created_by="x", duration=60)
        d.correlator.maintenance.create_silence(
            {"devices": ["acc2"]}, reason="b", created_by="x", duration=30)
        d.correlator.maintenance.expire_silence(first.id, by="y")
    finally:
        d._close_stores()
    d = Daemon(load_config(write_config(tmp_path)))
    runner = web.AppRunner(build_api(d), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port_ = runner.addresses[0][:2]
    try:
        _, active, _ = await get(f"http://{host}:{port_}/api/v1/silences")
        assert [s["id"] for s in active["silences"]] == ["SIL-000002"]
        _, every, _ = await get(f"http://{host}:{port_}/api/v1/silences?state=all")
        assert [(s["id"], s["state"], s["expired_by"]) for s in every["silences"]] == [
            ("SIL-000002", "active", None), ("SIL-000001", "expired", "y")]
    finally:
        await runner.cleanup()
        d._close_stores()


async def test_silence_until_an_instant(base: str) -> None:
    until = time.time() + 5400
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(until))
    body = {**SILENCE, "duration": None, "expires_at": stamp}
    status, sil = await post(base + "/silences", body)
    assert status == 201, sil
    assert sil["expires_at"] == float(int(until))


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"match": {}}, "match", "match: say what it covers"),
    ({"match": {"devices": ["nope"]}}, "match.devices[0]",
     "match.devices[0]: unknown device (not in the inventory) (got 'nope')"),
    ({"match": {"device": ["acc1"]}}, "match.device",
     "unknown field match.device (accepted: devices, sites, subscribers, sla_tiers)"),
    ({"match": {"devices": "acc1"}}, "match.devices", "match.devices: Input should be a valid"),
    ({"duration": "soon"}, "duration", "duration: expected a duration such as 90m"),
    ({"duration": -5}, "duration", "duration: a duration must be longer than zero"),
    ({"duration": True}, "duration", "duration: Input should be a valid number"),
    ({"duration": "30d"}, "duration", "a silence lasts at most 168 h"),
    ({"duration": None}, "duration", "give duration or expires_at (one of them)"),
    ({"expires_at": "2030-01-01T00:00:00Z"}, "expires_at",
     "give duration or expires_at (one of them)"),
    ({"duration": None, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at",
     "the silence would end before it starts"),
    ({"duration": None, "expires_at": "2030-01-01T00:00:00"}, "expires_at",
     "expires_at: give the UTC offset"),
    ({"duration": None, "expires_at": 1900000000}, "expires_at",
     "expires_at: expected an ISO 8601 date and time"),
    ({"reason": "  "}, "reason", "reason: String should match pattern"),
    ({"reason": None}, "reason", "reason: Input should be a valid string"),
    ({"created_by": ""}, "created_by", "created_by: String should have at least 1"),
    ({"by": "x"}, "by", "unknown field by (accepted: match, reason, created_by, duration, "
                        "expires_at)"),
])
async def test_bad_silences_are_400_naming_the_field(base: str, daemon: Daemon,
                                                     change: dict[str, Any], field: str,
                                                     message: str) -> None:
    status, err = await post(base + "/silences", {**SILENCE, **change})
    assert status == 400, err
    assert err["field"] == field and err["error"].startswith(message), err
    assert daemon.correlator.maintenance.silences(include_expired=True) == []


async def test_every_problem_of_a_silence_is_listed_with_its_field(base: str,
                                                                   daemon: Daemon) -> None:
    body = {**SILENCE, "match": {"devices": ["acc1", "gone"], "sites": ["mars"]},
            "duration": "9d"}
    status, err = await post(base + "/silences", body)
    assert status == 400
    assert [p["field"] for p in err["problems"]] == [
        "match.devices[1]", "match.sites[0]", "duration"]
    assert err["field"] == "match.devices[1]"
    assert "unknown site (sites: hq, north) (got 'mars')" in err["problems"][1]["error"]
    status, err = await post(base + "/silences", {"match": {"devices": ["acc1"]}})
    assert status == 400
    assert [(p["field"], p["error"]) for p in err["problems"]] == [
        ("reason", "reason is required"), ("created_by", "created_by is required")]
    assert daemon.correlator.maintenance.silences(include_expired=True) == []


async def test_silences_need_the_token_and_unknown_ones_are_404(base: str,
                                                                daemon: Daemon) -> None:
    status, body = await post(base + "/silences", SILENCE, headers={})
    assert status == 401 and body["field"] == "Authorization"
    assert daemon.correlator.maintenance.silences(include_expired=True) == []
    status, body = await post(base + "/silences/SIL-999999/expire", {"by": "bob"})
    assert status == 404 and body == {"error": "no silence SIL-999999", "field": "id"}
    status, body = await post(base + "/silences/SIL-999999/expire", {})
    assert status == 400 and body["field"] == "by"
    status, body, headers = await get(base + "/silences/SIL-999999/expire")
    assert status == 405 and headers["Allow"] == "POST"


async def test_maintenance_windows_active_and_upcoming(base: str) -> None:
    status, m, _ = await get(base + "/maintenance")
    assert status == 200, m
    assert m["windows"] == 2 and m["within"] == 7 * 86400
    (now,) = [w for w in m["active"] if w["id"] == "core-upgrade"]
    assert now["recurring"] is False and now["match"] == {"devices": ["core"]}
    assert now["reason"] == "JunOS upgrade (CHG-1)" and now["owner"] == "core-team"
    assert now["start"] <= time.time() < now["end"] and now["timezone"] == "UTC"
    assert now["start_local"].endswith("+00:00")
    nightly = [w for w in m["upcoming"] if w["id"] == "hq-nightly"]
    assert 6 <= len(nightly) <= 7
    assert all(w["id"] != "core-upgrade" for w in m["upcoming"])
    assert nightly[0]["schedule"]["days"][0] == "mon"
    assert nightly[0]["schedule"]["start"] == "12:00"
    assert nightly[0]["schedule"]["duration"] == 1800
    assert [w["start"] for w in nightly] == sorted(w["start"] for w in nightly)
    assert all(w["end"] - w["start"] == 1800 for w in nightly)
    assert all("T12:00:00" in w["start_local"] for w in nightly)
    _, soon, _ = await get(base + "/maintenance?within=36h")
    assert soon["within"] == 36 * 3600
    assert 1 <= len([w for w in soon["upcoming"] if w["id"] == "hq-nightly"]) <= 2
    _, secs, _ = await get(base + "/maintenance?within=60")
    assert secs["within"] == 60 and secs["active"] == m["active"]


# --- wiring and config --------------------------------------------------------------------


async def test_daemon_serves_the_api_and_stops_it(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collector.daemon")
    stop = asyncio.Event()
    d = Daemon(load_config(write_config(tmp_path)), shutdown_trigger=stop.wait())
    task = asyncio.create_task(d.run())
    url = None
    for _ in range(200):
        m = re.search(r"api on (http://\S+/api/v1)", caplog.text)
        if m:
            url = m.group(1)
            break
        await asyncio.sleep(0.02)
    assert url is not None, caplog.text
    status, body, _ = await get(url + "/health")
    assert status == 200 and body["status"] == "ok"
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(url + "/health")


def test_api_listen_without_token_is_a_config_error_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    text = path.read_text().replace("  api_token:\n    file: secrets/api.token\n", "")
    path.write_text(text)
    assert main(["check", str(path)]) == 78
    err = capsys.readouterr().err
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "api_listen" in ln)
    assert f"{path}:{line}: daemon.api_listen: the supervisor API needs daemon.api_token" in err


def test_default_api_without_token_is_a_warning_and_the_api_stays_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    del cfg["daemon"]["api_listen"], cfg["daemon"]["api_token"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(path))}:\d+: daemon.api_token: warning: not set", err)


@pytest.mark.parametrize(("token", "message"), [
    ("tiny9", "too short (5 characters)"),
    ("has a space in the token!", "must be printable ASCII without spaces"),
])
def test_weak_tokens_are_refused_without_echoing_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], token: str, message: str) -> None:
    path = write_config(tmp_path)
    (tmp_path / "secrets" / "api.token").write_text(token)
    assert main(["check", str(path)]) == 78
    err = capsys.readouterr().err
    assert "daemon.api_token: " + message in err
    assert token not in err


# --- schemathesis -------------------------------------------------------------------------


@pytest.fixture
def threaded_api(daemon: Daemon) -> Iterator[str]:
    """The API on its own event loop in a thread: schemathesis calls it synchronously."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []
    runner = web.AppRunner(build_api(daemon), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        url.append(f"http://{host}:{port}/api/v1")

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="api-under-test", daemon=True)
    thread.start()
    assert ready.wait(10)
    yield url[0]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_schemathesis_against_the_served_openapi(threaded_api: str, daemon: Daemon) -> None:
    """Positive and negative cases for every operation (at most 50 each, plus 50 positive
    ones on ids that exist): no 5xx, every response conforms to the document (status,
    content type, headers, body schema), malformed input is refused, and requests without
    the token are refused."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # the token through schemathesis' auth config (not forced headers), so that negative
    # cases may also leave it out or mangle it and must then get the documented 401
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": TOKEN}}}})
    schema = schemathesis.openapi.from_url(threaded_api + "/openapi.json", headers=AUTH,
                                           config=config)
    assert set(schema.raw_schema["paths"]) == {
        "/health", "/incidents", "/incidents/{id}", "/incidents/{id}/explain", "/actions",
        "/actions/{key}/explain", "/actions/{key}/approve", "/actions/{key}/deny",
        "/silences", "/silences/{id}/expire", "/maintenance", "/maintenance/events",
        "/openapi.json"}
    # loaded from a URL, schemathesis leaves out the operation serving the document itself
    # (its auth is covered by test_every_path_needs_the_token)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 13
    # two actions waiting for a person: one to approve, one to deny (then 409s)
    running = daemon.journal.query(states=("running",))
    for row in running[:2]:
        daemon.journal.hold(row.key, time.time() + 3600, time.time(), [])
    waiting = {"POST /actions/{key}/approve": running[0].key,
               "POST /actions/{key}/deny": running[1].key}
    existing = {"id": "INC-000001", "key": daemon.journal.query(limit=1)[0].key}
    # an active silence to end (then 409s), and a body that creates one
    silence = daemon.correlator.maintenance.create_silence(
        {"devices": ["acc2"]}, reason="fuzz", created_by="st", duration=3600)
    ids = {"POST /silences/{id}/expire": silence.id}
    good_silence = {"match": {"devices": ["acc1"]}, "reason": "fuzz", "created_by": "st",
                    "duration": "1h"}
    calls: dict[str, set[int]] = {}

    # what the document cannot say: a silence must name devices, sites... the inventory
    # has, and `within` is at most 366 days; schema-valid requests beyond that are a 400
    semantic = {"POST /silences", "GET /maintenance"}

    def fuzz(strategy: Any) -> None:
        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            skip = [positive_data_acceptance] if case.operation.label in semantic else []
            resp = case.call_and_validate(base_url=threaded_api, excluded_checks=skip)
            assert resp.status_code < 500
            calls.setdefault(case.operation.label, set()).add(resp.status_code)

        run()

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op.as_strategy(generation_mode=mode))
        names = {p.name for p in op.path_parameters}
        if names:
            known = {**existing, "key": waiting.get(op.label, existing["key"]),
                     "id": ids.get(op.label, existing["id"])}
            fuzz(op.as_strategy(path_parameters={n: known[n] for n in names}))
        if op.label == "POST /silences":
            fuzz(op.as_strategy(body=good_silence))
    assert set(calls) == {op.label for op in operations}
    for label, statuses in calls.items():
        ok = 201 if label == "POST /silences" else 200
        assert {ok, 401} <= statuses, (label, statuses)
    assert 400 in calls["GET /incidents"] and 404 in calls["GET /incidents/{id}"]
    assert 400 in calls["POST /silences"] and 400 in calls["GET /maintenance"]
    for label in (*waiting, *ids):
        assert {400, 404, 409} <= calls[label], (label, calls[label])
    assert daemon.journal.get(waiting["POST /actions/{key}/approve"]).state == "planned"
    assert daemon.journal.get(waiting["POST /actions/{key}/deny"]).state == "blocked"
    assert silence.id not in {s.id for s in daemon.correlator.maintenance.silences()}
