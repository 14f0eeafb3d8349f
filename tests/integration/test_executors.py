"""Every executor against a fake-but-real service on loopback (and MQTT against a real
mosquitto): the documented request shapes, the idempotency key, 4xx not retried, 5xx and
timeouts retried, and the TMF621 ticket lifecycle across a restart."""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from actions.dispatcher import Dispatcher, build_payload
from actions.executors import FACTORIES, build_executor
from actions.executors.crm import recommendation_id
from actions.journal import Journal
from actions.policy import Policy
from actions.targets import Target
from actions.types import ActionPlan, ActionResult, Executor, idempotency_key
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.source import Strict
from tests.support import mosquitto as mq
from tests.support.crm_server import CrmServer
from tests.support.opsgenie_server import OpsgenieServer
from tests.support.pagerduty_server import PagerDutyServer
from tests.support.tmf621_server import Tmf621Server

pytestmark = pytest.mark.integration

PD_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like a real integration key
GENIE_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"


class _Holder(Strict):
    target: Target


def target(**kw: Any) -> Any:
    return _Holder.model_validate({"target": kw}).target


def incident(*, revision: int = 1, subs: int = 2, state: str = "open", site: str = "north",
             inc_id: str = "INC-000042") -> Incident:
    ids = tuple(f"s{i}" for i in range(1, subs + 1))
    biz = ids[:1]
    return Incident(
        id=inc_id, root="device:olt1", kind="device_unreachable", device="olt1", port=None,
        role="access", site=site, severity="major", state=state,  # type: ignore[arg-type]
        opened_at=1_700_000_000.0, updated_at=1_700_000_000.0 + revision, revision=revision,
        resolved_at=1_700_000_900.0 if state == "resolved" else None,
        impact=Impact(subscribers=ids, devices=("olt1", "onu7"),
                      revenue_by_tier={"business": 120.0, "residential": 37.5 * (subs - 1)},
                      subscribers_by_tier={"business": len(biz), "residential": subs - 1},
                      contracts_near_renewal=ids[-1:]),
        priority=150.0,
    )


def plan_for(event: str, inc: Incident, *, tgt: str = "t", rule: str = "r") -> ActionPlan:
    what = f"updated#{inc.revision}" if event == "updated" else event
    key = idempotency_key(inc.id, what, rule, tgt)
    ev = IncidentEvent(event, inc, inc.updated_at)  # type: ignore[arg-type]
    return ActionPlan(key=key, incident_id=inc.id, event=event, rule=rule, target=tgt,
                      executor="x", payload=json.loads(json.dumps(build_payload(ev, rule, key))))


@pytest.fixture
async def closing() -> AsyncIterator[list[Executor]]:
    made: list[Executor] = []
    yield made
    for ex in made:
        await ex.aclose()


def make(closing: list[Executor], tgt: Any, state_dir: Path | None = None,
         name: str = "t") -> Any:
    ex = build_executor(name, tgt, state_dir=state_dir)
    closing.append(ex)
    return ex


def test_every_target_kind_has_an_executor() -> None:
    models = typing.get_args(typing.get_args(Target)[0])
    kinds = {typing.get_args(m.model_fields["kind"].annotation)[0] for m in models}
    assert kinds == set(FACTORIES)


# --- TMF621 trouble ticket ----------------------------------------------------------------


def ticket_target(srv: Tmf621Server, **kw: Any) -> Any:
    return target(**{"kind": "tmf621_ticket", "url": srv.base_url, "token": "tt-token",
                     "timeout": 1, **kw})


async def test_ticket_lifecycle_uses_the_id_from_creation_across_a_restart(
        tmp_path: Path, closing: list[Executor]) -> None:
    with Tmf621Server(token="tt-token") as srv:
        tgt = ticket_target(srv)
        first = make(closing, tgt, tmp_path)
        opened = plan_for("opened", incident())
        r = await first.execute(opened, dry_run=False)
        assert (r.outcome, r.status_code) == ("succeeded", 201), r.detail
        post = srv.snapshot()[0]
        assert (post.method, post.path) == ("POST", "/tmf-api/troubleTicket/v4/troubleTicket")
        assert post.headers["Idempotency-Key"] == idempotency_key("INC-000042", "create",
                                                                  "tmf621_ticket", "t")
        assert post.headers["Authorization"] == "Bearer tt-token"
        body = post.body
        assert body["ticketType"] == "incident" and body["severity"] == "Major"
        assert body["priority"] == "2"  # score 150 >= 100
        assert body["name"] == "access device olt1 unreachable"
        assert body["externalId"] == "INC-000042"
        roles = {(e["role"], e["id"], e["@referredType"]) for e in body["relatedEntity"]}
        assert roles == {("incident", "INC-000042", "Incident"),
                         ("rootCauseResource", "olt1", "Resource"),
                         ("affectedResource", "onu7", "Resource")}
        assert body["relatedParty"] == [{"id": "netreflex", "name": "netreflex",
                                         "role": "reporter", "@referredType": "Organization"}]
        assert "2 subscriber(s) (business 1, residential 1)" in body["note"][0]["text"]
        assert "revenue at risk 157.50/month (business 120.00, residential 37.50)" in \
            body["note"][0]["text"]
        await first.aclose()

        # a new executor (the daemon restarted) finds the ticket created before
        second = make(closing, tgt, tmp_path)
        grown = incident(revision=2, subs=4)
        r = await second.execute(plan_for("updated", grown), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        get, patch = srv.snapshot()[1:3]
        assert (get.method, get.path) == ("GET", "/tmf-api/troubleTicket/v4/troubleTicket/TT-0001")
        assert (patch.method, patch.path) == ("PATCH", get.path)
        assert patch.headers["Content-Type"] == "application/merge-patch+json"
        assert patch.headers["Idempotency-Key"] == plan_for("updated", grown).key
        ticket = srv.ticket("TT-0001")
        assert [n["text"][:30] for n in ticket["note"]] == ["Impact: 2 subscriber(s) (busin",
                                                             "Impact: 4 subscriber(s) (busin"]
        assert "4 subscriber(s)" in ticket["description"]

        r = await second.execute(plan_for("resolved", incident(state="resolved", revision=2)),
                                 dry_run=False)
        assert r.outcome == "succeeded", r.detail
        ticket = srv.ticket("TT-0001")
        assert ticket["status"] == "resolved"
        assert ticket["statusChangeReason"] == "incident resolved"
        assert ticket["resolutionDate"].startswith("2023-11-14T22:28:20")
        assert len(ticket["note"]) == 3
        assert len(srv.tickets) == 1


async def test_replayed_update_adds_no_second_note(tmp_path: Path,
                                                  closing: list[Executor]) -> None:
    with Tmf621Server(token="tt-token") as srv:
        ex = make(closing, ticket_target(srv), tmp_path)
        await ex.execute(plan_for("opened", incident()), dry_run=False)
        update = plan_for("updated", incident(revision=2, subs=3))
        for _ in range(2):  # a crash after the PATCH: the action runs again
            r = await ex.execute(update, dry_run=False)
            assert r.outcome == "succeeded", r.detail
        assert len(srv.ticket("TT-0001")["note"]) == 2
        assert len(srv.patches) == 2


async def test_create_whose_answer_was_lost_gives_one_ticket(
        tmp_path: Path, closing: list[Executor]) -> None:
    # the first POST times out after the server made the ticket; an update then creates
    # "again" with the same per-incident key, and the retried open finds the ticket
    with Tmf621Server(token="tt-token", delay=0.6) as srv:
        ex = make(closing, ticket_target(srv, timeout=0.2), tmp_path)
        opened = plan_for("opened", incident())
        r = await ex.execute(opened, dry_run=False)
        assert r.outcome == "retry" and "timed out" in r.detail
        srv.wait_for(lambda _: len(srv.tickets) == 1)
        srv.delay = 0
        r = await ex.execute(plan_for("updated", incident(revision=2, subs=3)), dry_run=False)
        assert r.outcome == "succeeded" and "TT-0001" in r.detail, r.detail
        r = await ex.execute(opened, dry_run=False)
        assert r.outcome == "succeeded" and "already exists" in r.detail
        assert list(srv.tickets) == ["TT-0001"]


async def test_resolve_before_the_ticket_exists_is_retried(tmp_path: Path,
                                                          closing: list[Executor]) -> None:
    with Tmf621Server(token="tt-token") as srv:
        ex = make(closing, ticket_target(srv), tmp_path)
        r = await ex.execute(plan_for("resolved", incident(state="resolved")), dry_run=False)
        assert r.outcome == "retry" and "no ticket recorded" in r.detail
        assert srv.snapshot() == []


async def test_ticket_closed_by_hand_is_left_alone(tmp_path: Path,
                                                   closing: list[Executor]) -> None:
    with Tmf621Server(token="tt-token") as srv:
        ex = make(closing, ticket_target(srv), tmp_path)
        await ex.execute(plan_for("opened", incident()), dry_run=False)
        srv.close_by_hand("TT-0001")
        r = await ex.execute(plan_for("resolved", incident(state="resolved")), dry_run=False)
        assert r.outcome == "succeeded" and "already closed" in r.detail
        assert [q.method for q in srv.snapshot()] == ["POST", "GET"]


@pytest.mark.parametrize(("statuses", "token", "outcome", "code"), [
    ([503], "tt-token", "retry", 503),
    ([429], "tt-token", "retry", 429),
    ([], "wrong-token", "failed", 401),
    ([422], "tt-token", "failed", 422),
])
async def test_ticket_answers_are_classified(tmp_path: Path, closing: list[Executor],
                                             statuses: list[int], token: str, outcome: str,
                                             code: int) -> None:
    with Tmf621Server(token="tt-token", statuses=statuses) as srv:
        tgt = target(kind="tmf621_ticket", url=srv.base_url, token=token)
        ex = make(closing, tgt, tmp_path)
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert (r.outcome, r.status_code) == (outcome, code), r.detail
        assert ex.store.get("t", "INC-000042") is None


async def test_ticket_timeout_is_retried(tmp_path: Path, closing: list[Executor]) -> None:
    with Tmf621Server(delay=1.0) as srv:
        ex = make(closing, target(kind="tmf621_ticket", url=srv.base_url, timeout=0.2),
                  tmp_path)
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "retry" and "timed out after 0.2s" in r.detail


async def test_ticket_through_dispatcher_and_journal(tmp_path: Path) -> None:
    with Tmf621Server() as srv:
        pol = Policy.model_validate({
            "targets": {"tt": {"kind": "tmf621_ticket", "url": srv.base_url,
                               "backoff_max": 0.05}},
            "rules": [{"name": "tickets", "when": {"events": ["opened", "updated", "resolved"]},
                       "do": [{"target": "tt"}]}],
        })
        results: list[ActionResult] = []
        ex = {"tt": build_executor("tt", pol.targets["tt"], state_dir=tmp_path)}
        d = Dispatcher(pol, Journal(tmp_path / "journal.db"), ex, on_result=results.append)
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        try:
            for n, ev in enumerate([IncidentEvent("opened", incident(), 1.0),
                                    IncidentEvent("updated", incident(revision=2, subs=5), 2.0),
                                    IncidentEvent("resolved", incident(revision=2,
                                                                       state="resolved"), 3.0)]):
                d.submit(ev)
                async with asyncio.timeout(10):
                    while len([r for r in results if r.outcome == "succeeded"]) <= n:
                        await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            await ex["tt"].aclose()
        assert (tmp_path / "tickets.db").exists()
        assert srv.ticket("TT-0001")["status"] == "resolved"
        assert [q.method for q in srv.snapshot()] == ["POST", "GET", "PATCH", "GET", "PATCH"]


# --- TMF621 field dispatch --------------------------------------------------------------


async def test_dispatch_work_order_carries_site_and_services_on_opened_only(
        tmp_path: Path, closing: list[Executor]) -> None:
    with Tmf621Server() as srv:
        ex = make(closing, target(kind="tmf621_dispatch", url=srv.base_url), tmp_path)
        r = await ex.execute(plan_for("opened", incident(subs=3)), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        body = srv.snapshot()[0].body
        assert body["ticketType"] == "dispatch"
        assert body["name"] == "Field dispatch: access device olt1 unreachable"
        assert "Dispatch to site north" in body["description"]
        ents = [(e["role"], e["id"], e["@referredType"]) for e in body["relatedEntity"]]
        assert ("site", "north", "GeographicSite") in ents
        assert [e[1] for e in ents if e[0] == "affectedService"] == ["s1", "s2", "s3"]
        assert srv.snapshot()[0].headers["Idempotency-Key"] == idempotency_key(
            "INC-000042", "create", "tmf621_dispatch", "t")
        for ev in ("updated", "resolved"):
            r = await ex.execute(plan_for(ev, incident(revision=2)), dry_run=False)
            assert r.outcome == "succeeded" and "skipped" in r.detail
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert "already exists" in r.detail
        assert len(srv.snapshot()) == 1


# --- PagerDuty ----------------------------------------------------------------------------


def pd_target(srv: PagerDutyServer, key: str = PD_KEY, **kw: Any) -> Any:
    return target(**{"kind": "pagerduty", "base_url": srv.base_url, "routing_key": key,
                     "timeout": 1, **kw})


async def test_pagerduty_trigger_update_resolve(closing: list[Executor]) -> None:
    with PagerDutyServer(routing_keys={PD_KEY}) as srv:
        ex = make(closing, pd_target(srv))
        opened = plan_for("opened", incident())
        for p in (opened, plan_for("updated", incident(revision=2, subs=3))):
            r = await ex.execute(p, dry_run=False)
            assert (r.outcome, r.status_code) == ("succeeded", 202), r.detail
        first = srv.snapshot()[0]
        assert first.path == "/v2/enqueue"
        assert first.body["routing_key"] == PD_KEY
        assert first.body["event_action"] == "trigger"
        assert first.body["dedup_key"] == "INC-000042"
        payload = first.body["payload"]
        assert payload["summary"] == ("access device olt1 unreachable: 2 subscriber(s), "
                                      "157.50/month at risk")
        assert payload["severity"] == "error" and payload["source"] == "olt1"
        assert payload["group"] == "north" and payload["class"] == "device_unreachable"
        assert "component" not in payload  # no port: left out rather than empty
        assert payload["custom_details"]["action_key"] == opened.key
        assert payload["custom_details"]["revenue_by_tier"] == {"business": 120.0,
                                                                "residential": 37.5}
        assert srv.alerts["INC-000042"]["triggers"] == 2  # one alert, updated
        r = await ex.execute(plan_for("resolved", incident(state="resolved")), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        assert srv.snapshot()[-1].body == {"routing_key": PD_KEY, "event_action": "resolve",
                                           "dedup_key": "INC-000042"}
        assert srv.alerts["INC-000042"]["status"] == "resolved" and len(srv.alerts) == 1


@pytest.mark.parametrize(("statuses", "key", "outcome", "code"), [
    ([], "X" * 32, "failed", 400),  # an unknown routing key is an invalid event
    ([429], PD_KEY, "retry", 429),
    ([500], PD_KEY, "retry", 500),
])
async def test_pagerduty_answers_are_classified(closing: list[Executor], statuses: list[int],
                                                key: str, outcome: str, code: int) -> None:
    with PagerDutyServer(routing_keys={PD_KEY}, statuses=statuses) as srv:
        ex = make(closing, pd_target(srv, key))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert (r.outcome, r.status_code) == (outcome, code), r.detail


async def test_pagerduty_timeout_is_retried(closing: list[Executor]) -> None:
    with PagerDutyServer(routing_keys={PD_KEY}, delay=1.0) as srv:
        ex = make(closing, pd_target(srv, timeout=0.2))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "retry" and "timed out" in r.detail


# --- Opsgenie -----------------------------------------------------------------------------


def og_target(srv: OpsgenieServer, key: str = GENIE_KEY, **kw: Any) -> Any:
    return target(**{"kind": "opsgenie", "base_url": srv.base_url, "api_key": key,
                     "timeout": 1, **kw})


async def test_opsgenie_create_note_close(closing: list[Executor]) -> None:
    with OpsgenieServer(api_keys={GENIE_KEY}) as srv:
        ex = make(closing, og_target(srv, responders=[{"type": "team", "name": "NOC"}]))
        opened = plan_for("opened", incident())
        r = await ex.execute(opened, dry_run=False)
        assert (r.outcome, r.status_code) == ("succeeded", 202), r.detail
        req = srv.snapshot()[0]
        assert req.path == "/v2/alerts"
        assert req.headers["Authorization"] == f"GenieKey {GENIE_KEY}"
        assert req.body["alias"] == "INC-000042"
        assert req.body["message"] == "access device olt1 unreachable"
        assert req.body["priority"] == "P3"  # score 150: >= 50, < 200
        assert req.body["responders"] == [{"type": "team", "name": "NOC"}]
        assert req.body["details"]["action_key"] == opened.key
        assert req.body["details"]["revenue_at_risk"] == "157.50"
        r = await ex.execute(opened, dry_run=False)  # a replay: de-duplicated on the alias
        assert r.outcome == "succeeded"
        assert len(srv.alerts) == 1 and srv.alerts["INC-000042"]["count"] == 2

        r = await ex.execute(plan_for("updated", incident(revision=2, subs=4)), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        note = srv.snapshot()[-1]
        assert (note.path, note.query) == ("/v2/alerts/INC-000042/notes",
                                           {"identifierType": "alias"})
        assert srv.alerts["INC-000042"]["notes"][0].startswith("Impact: 4 subscriber(s)")

        r = await ex.execute(plan_for("resolved", incident(state="resolved")), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        close = srv.snapshot()[-1]
        assert (close.path, close.query) == ("/v2/alerts/INC-000042/close",
                                             {"identifierType": "alias"})
        assert srv.alerts["INC-000042"]["status"] == "closed"


@pytest.mark.parametrize(("statuses", "key", "outcome", "code"), [
    ([], "not-the-key", "failed", 401),
    ([503], GENIE_KEY, "retry", 503),
    ([422], GENIE_KEY, "failed", 422),
])
async def test_opsgenie_answers_are_classified(closing: list[Executor], statuses: list[int],
                                               key: str, outcome: str, code: int) -> None:
    with OpsgenieServer(api_keys={GENIE_KEY}, statuses=statuses) as srv:
        ex = make(closing, og_target(srv, key))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert (r.outcome, r.status_code) == (outcome, code), r.detail


async def test_opsgenie_timeout_is_retried(closing: list[Executor]) -> None:
    with OpsgenieServer(api_keys={GENIE_KEY}, delay=1.0) as srv:
        ex = make(closing, og_target(srv, timeout=0.2))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "retry" and "timed out" in r.detail


# --- CRM offer ----------------------------------------------------------------------------


def crm_target(srv: CrmServer, **kw: Any) -> Any:
    return target(**{"kind": "crm_offer", "url": srv.url, "offer_code": "SPEED-BOOST-3M",
                     "token": "crm", "timeout": 1, **kw})


async def test_crm_offer_one_recommendation_per_subscriber(closing: list[Executor]) -> None:
    with CrmServer() as srv:
        ex = make(closing, crm_target(srv, reason="Hit by {incident.title}"))
        p = plan_for("opened", incident(subs=3))
        r = await ex.execute(p, dry_run=False)
        assert r.outcome == "succeeded" and "3 recommendation(s)" in r.detail, r.detail
        got = srv.snapshot()
        assert [q.body["subscriber"] for q in got] == ["s1", "s2", "s3"]
        for q in got:
            assert q.headers["Idempotency-Key"] == recommendation_id(p.key, q.body["subscriber"])
            assert q.headers["Authorization"] == "Bearer crm"
            assert q.body["offer_code"] == "SPEED-BOOST-3M"
            assert q.body["reason"] == "Hit by access device olt1 unreachable"
            assert q.body["evidence"]["incident_id"] == "INC-000042"
        assert [q.body["evidence"]["contract_near_renewal"] for q in got] == [False, False, True]
        r = await ex.execute(p, dry_run=False)  # replayed: the CRM drops the duplicates
        assert r.outcome == "succeeded"
        assert len(srv.accepted) == 3 and [q.status for q in srv.snapshot()[3:]] == [200] * 3


async def test_crm_offer_caps_and_classifies(closing: list[Executor]) -> None:
    with CrmServer(unknown={"s2"}) as srv:
        ex = make(closing, crm_target(srv, max_subscribers=2))
        r = await ex.execute(plan_for("opened", incident(subs=5)), dry_run=False)
        assert (r.outcome, r.status_code) == ("failed", 404) and "1 of 2 rejected" in r.detail
        assert len(srv.snapshot()) == 2
    with CrmServer(statuses=[201, 500]) as srv:
        ex = make(closing, crm_target(srv))
        r = await ex.execute(plan_for("opened", incident(subs=3)), dry_run=False)
        assert (r.outcome, r.status_code) == ("retry", 500)
        assert len(srv.snapshot()) == 2  # stopped at the first retryable answer
    with CrmServer(delay=1.0) as srv:
        ex = make(closing, crm_target(srv, timeout=0.2))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "retry" and "timed out" in r.detail


# --- dry run ------------------------------------------------------------------------------


async def test_dry_run_sends_nothing(tmp_path: Path, closing: list[Executor]) -> None:
    with Tmf621Server() as tt, PagerDutyServer(routing_keys={PD_KEY}) as pd, \
            OpsgenieServer(api_keys={GENIE_KEY}) as og, CrmServer() as crm:
        for tgt in (target(kind="tmf621_ticket", url=tt.base_url),
                    target(kind="tmf621_dispatch", url=tt.base_url), pd_target(pd),
                    og_target(og), crm_target(crm),
                    target(kind="mqtt", host="127.0.0.1", port=mq.free_tcp_port())):
            ex = make(closing, tgt, tmp_path, name=tgt.kind)
            r = await ex.execute(plan_for("opened", incident()), dry_run=True)
            assert r.outcome == "dry_run" and r.detail.startswith("would"), (tgt.kind, r)
        assert tt.snapshot() == pd.snapshot() == og.snapshot() == crm.snapshot() == []


# --- MQTT against mosquitto ---------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[mq.Mosquitto]:
    with mq.Mosquitto() as b:
        yield b


async def collect(client: aiomqtt.Client, n: int, timeout: float = 5.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for m in client.messages:
            got.append(m)
            if len(got) == n:
                break
    return got


def body(m: aiomqtt.Message) -> Any:
    assert isinstance(m.payload, bytes)
    return json.loads(m.payload)


async def test_mqtt_publishes_tmf688_events_with_qos1(broker: mq.Mosquitto,
                                                      closing: list[Executor]) -> None:
    ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.port, timeout=2))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="t-sub-1") as sub:
        await sub.subscribe("netreflex/#", qos=1)
        plans = [plan_for("opened", incident()),
                 plan_for("updated", incident(revision=2, subs=3)),
                 plan_for("resolved", incident(state="resolved", revision=2))]
        for p in plans:
            r = await ex.execute(p, dry_run=False)
            assert r.outcome == "succeeded", r.detail
        got = await collect(sub, 3)
    assert [str(m.topic) for m in got] == ["netreflex/north/incidents/INC-000042"] * 3
    assert [m.qos for m in got] == [1, 1, 1]
    events = [body(m) for m in got]
    assert [e["eventType"] for e in events] == ["IncidentCreateEvent",
                                                "IncidentAttributeValueChangeEvent",
                                                "IncidentStateChangeEvent"]
    assert [e["eventId"] for e in events] == [p.key for p in plans]
    assert events[1]["event"]["incident"]["impact"]["subscriber_count"] == 3
    assert events[2]["event"]["incident"]["state"] == "resolved"
    assert events[0]["correlationId"] == "INC-000042"
    assert events[0]["eventTime"].endswith("Z")


async def test_mqtt_topic_values_cannot_add_levels_or_wildcards(
        broker: mq.Mosquitto, closing: list[Executor]) -> None:
    ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.port))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="t-sub-2") as sub:
        await sub.subscribe("netreflex/#", qos=1)
        r = await ex.execute(plan_for("opened", incident(site="a/+/#", inc_id="INC-9")),
                             dry_run=False)
        assert r.outcome == "succeeded", r.detail
        (m,) = await collect(sub, 1)
    assert str(m.topic) == "netreflex/a____/incidents/INC-9"


async def test_mqtt_action_results_go_to_the_result_topic(broker: mq.Mosquitto,
                                                          closing: list[Executor]) -> None:
    ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.port))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="t-sub-3") as sub:
        await sub.subscribe("netreflex/actions/#", qos=1)
        res = ActionResult("nrx-1", "noc-webhook", "webhook", "failed", "HTTP 422", 422)
        r = await ex.publish_result(res, "INC-000042")
        assert r.outcome == "succeeded", r.detail
        (m,) = await collect(sub, 1)
    assert str(m.topic) == "netreflex/actions/INC-000042/noc-webhook"
    e = body(m)
    assert e["eventType"] == "ActionStateChangeEvent"
    assert e["event"]["action"] == {"key": "nrx-1", "incidentId": "INC-000042",
                                    "target": "noc-webhook", "executor": "webhook",
                                    "outcome": "failed", "detail": "HTTP 422",
                                    "statusCode": 422, "retryAfter": None}


async def test_mqtt_username_password(broker: mq.Mosquitto, closing: list[Executor]) -> None:
    good = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.auth_port,
                                username=mq.USER, password=mq.PASSWORD), name="good")
    bad = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.auth_port,
                               username=mq.USER, password="wrong"), name="bad")
    async with aiomqtt.Client("127.0.0.1", broker.auth_port, username=mq.USER,
                              password=mq.PASSWORD, identifier="t-sub-4") as sub:
        await sub.subscribe("netreflex/#", qos=1)
        r = await good.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        (m,) = await collect(sub, 1)
    assert body(m)["eventType"] == "IncidentCreateEvent"
    r = await bad.execute(plan_for("opened", incident()), dry_run=False)
    assert r.outcome == "failed" and "refused the credentials" in r.detail, r.detail


async def test_mqtt_over_tls(broker: mq.Mosquitto, closing: list[Executor],
                             tmp_path: Path) -> None:
    ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.tls_port,
                              tls={"ca_file": str(broker.ca)}))
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="t-sub-5") as sub:
        await sub.subscribe("netreflex/#", qos=1)
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        (m,) = await collect(sub, 1)
    assert body(m)["eventId"] == plan_for("opened", incident()).key
    # without the CA the broker's certificate is not trusted: nothing is sent
    untrusted = make(closing, target(kind="mqtt", host="127.0.0.1", port=broker.tls_port,
                                     tls={}, timeout=2), name="untrusted")
    r = await untrusted.execute(plan_for("opened", incident()), dry_run=False)
    assert r.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in r.detail, r.detail


async def test_mqtt_broker_down_is_retried_and_reconnects(closing: list[Executor]) -> None:
    with mq.Mosquitto() as b:
        ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=b.port, timeout=2))
        r = await ex.execute(plan_for("opened", incident()), dry_run=False)
        assert r.outcome == "succeeded", r.detail
        b.stop()
        r = await ex.execute(plan_for("updated", incident(revision=2)), dry_run=False)
        assert r.outcome == "retry", r.detail
        b.start()  # same port: the executor reconnects on its next publish
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="t-sub-6") as sub:
            await sub.subscribe("netreflex/#", qos=1)
            r = await ex.execute(plan_for("updated", incident(revision=2)), dry_run=False)
            assert r.outcome == "succeeded", r.detail
            (m,) = await collect(sub, 1)
        assert body(m)["eventType"] == "IncidentAttributeValueChangeEvent"


async def test_mqtt_connection_broken_under_a_live_client_is_reopened_once(
        closing: list[Executor], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="actions.executors.mqtt")
    with mq.Mosquitto() as b:
        ex = make(closing, target(kind="mqtt", host="127.0.0.1", port=b.port, timeout=2))
        assert (await ex.execute(plan_for("opened", incident()), dry_run=False)).outcome \
            == "succeeded"
        b.stop()
        b.start()
        await asyncio.sleep(0.2)  # let the client notice the closed socket
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="t-sub-7") as sub:
            await sub.subscribe("netreflex/#", qos=1)
            r = await ex.execute(replace(plan_for("opened", incident()), key="nrx-again"),
                                 dry_run=False)
            assert r.outcome == "succeeded", r.detail
            (m,) = await collect(sub, 1)
        assert body(m)["eventId"] == "nrx-again"
    assert "was broken; reconnecting" in caplog.text
