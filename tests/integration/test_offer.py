"""Upsell offers under the guardrails: policy -> Dispatcher + Journal + guardrails -> the
crm_offer executor -> a real CRM receiver on loopback (tests/support/crm_server.py),
with a fake clock. A `plan_saturation` incident is one offer for its subscriber alone;
quiet hours queue it (across a restart) until they end; the per-subscriber message cap
stops a second offer within its window, and lets one through after it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.journal import JournalRow
from actions.policy import Policy
from correlator.incidents import Incident, compute_impact
from correlator.inventory import Device, Inventory, Subscriber
from tests.integration.test_notify import Clock, Rig
from tests.support.crm_server import CrmServer

pytestmark = pytest.mark.integration

# 23:00 in Lisbon (winter time = UTC), inside quiet hours 21:00-08:00; they end at 08:00
NIGHT = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC).timestamp()
MORNING = dt.datetime(2026, 3, 11, 8, 0, tzinfo=dt.UTC).timestamp()
NOON = dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC).timestamp()
QUIET = {"start": "21:00", "end": "08:00", "timezone": "Europe/Lisbon"}


def sub(sid: str, port: str, plan_mbps: float) -> Subscriber:
    return Subscriber(sid, f"A-{sid}", None, "acc1", port, None, None, None, 40.0,
                      "residential", None, 0.1, None, None, False, False, plan_mbps)


INVENTORY = Inventory({"acc1": Device("acc1", "access", "north", (), None)},
                      [sub("S-1", "ge-0/0/1", 100), sub("S-2", "ge-0/0/2", 50)])


def saturated(inc_id: str, sid: str, port: str, at: float, plan_mbps: float) -> Incident:
    """A plan_saturation incident as the correlator opens it (detection's evidence)."""
    rate = 0.95 * plan_mbps * 1e6
    return Incident(
        id=inc_id, root=f"cond:plan_saturation:{sid}", kind="plan_saturation",
        device="acc1", port=port, role="access", site="north", severity="minor",
        state="open", opened_at=at, updated_at=at,
        impact=compute_impact(INVENTORY, [sid], ()),
        summary=f"{sid} uses 95% of a {plan_mbps:g} Mb/s plan on {port} for 30 min",
        subscriber=sid,
        evidence={"utilization_pct": 95.0, "rate_bps": round(rate),
                  "plan_bps": round(plan_mbps * 1e6), "direction": "out", "samples": 31,
                  "window_s": 1800.0, "threshold_pct": 85.0},
    )


def policy(url: str, guardrails: dict[str, Any]) -> Policy:
    return Policy.model_validate({
        "targets": {"upsell": {"kind": "crm_offer", "url": url, "offer_code": "PLAN-UPGRADE",
                               "reason": "{incident.summary}", "timeout": 2,
                               "backoff_max": 1}},
        "rules": [{"name": "upsell-on-saturation",
                   "when": {"events": ["opened"], "kind": ["plan_saturation"]},
                   "do": [{"target": "upsell"}]}],
        "guardrails": {"customer_facing": ["crm_offer"], **guardrails},
    })


@pytest.fixture
def crm() -> Iterator[CrmServer]:
    with CrmServer() as srv:
        yield srv


def rig(rigs: list[Rig], state: Path, pol: Policy, clock: Clock) -> Rig:
    """test_notify's dispatcher, journal and executors on ``state`` (a restart is a new
    one on the same state)."""
    r = Rig(state, pol, clock, inv=INVENTORY)
    rigs.append(r)
    return r


def journaled(r: Rig, key: str) -> JournalRow:
    got = r.journal.get(key)
    assert got is not None
    return got


def verdict(row: JournalRow, guardrail: str) -> dict[str, Any]:
    [v] = [dict(v) for v in row.verdicts if v["guardrail"] == guardrail]
    return v


async def test_quiet_hours_queue_the_offer_until_morning_across_a_restart(
        tmp_path: Path, crm: CrmServer, rigs: list[Rig]) -> None:
    pol = policy(crm.url, {"quiet_hours": QUIET})
    clock = Clock(NIGHT)
    r = rig(rigs, tmp_path / "st", pol, clock)
    [plan] = r.event("opened", saturated("INC-000001", "S-1", "ge-0/0/1", NIGHT, 100))
    assert plan.recipient == "S-1" and plan.executor == "crm_offer"

    assert await r.dispatcher.run_once() == 1  # tried: the guardrail defers it
    row = journaled(r, plan.key)
    assert row.state == "planned" and row.attempts == 0 and row.next_at == MORNING
    v = verdict(row, "quiet_hours")
    assert v["outcome"] == "deferred" and "queued until 2026-03-11 08:00" in v["reason"]
    clock.t = MORNING - 60
    assert await r.dispatcher.run_once() == 0  # still night: not even tried
    assert crm.snapshot() == []

    # a restart in the night: the offer is still queued, not dropped, not sent
    await r.close()
    rigs.remove(r)
    r = rig(rigs, tmp_path / "st", pol, clock)
    assert await r.dispatcher.run_once() == 0 and crm.snapshot() == []

    clock.t = MORNING + 1
    assert await r.dispatcher.run_once() == 1
    [post] = crm.snapshot()
    assert post.status == 201 and post.headers["Idempotency-Key"] == plan.key
    assert post.body["subscriber"] == "S-1" and post.body["recommendation_id"] == plan.key
    ev = post.body["evidence"]
    assert ev["plan_mbps"] == 100 and ev["detection"]["utilization_pct"] == 95.0
    assert ev["detection"]["window_s"] == 1800.0 and ev["detection"]["rate_bps"] == 95_000_000
    row = journaled(r, plan.key)
    assert row.state == "succeeded" and row.attempts == 1
    assert verdict(row, "quiet_hours")["outcome"] == "allowed"
    clock.t += 3600
    assert await r.dispatcher.run_once() == 0 and len(crm.snapshot()) == 1


async def test_message_cap_stops_a_second_offer_to_the_same_subscriber(
        tmp_path: Path, crm: CrmServer, rigs: list[Rig]) -> None:
    pol = policy(crm.url, {"message_caps": {"max": 1, "window": "1d"}})
    clock = Clock(NOON)
    r = rig(rigs, tmp_path / "st", pol, clock)
    [first] = r.event("opened", saturated("INC-000001", "S-1", "ge-0/0/1", NOON, 100))
    assert await r.dispatcher.run_once() == 1
    assert journaled(r, first.key).state == "succeeded"

    # saturated again two hours later (a new incident): the cap of 1 a day holds it back
    clock.t = NOON + 7200
    [second] = r.event("opened", saturated("INC-000002", "S-1", "ge-0/0/1", clock.t, 100))
    # another subscriber's offer in the same hour is theirs to have
    [other] = r.event("opened", saturated("INC-000003", "S-2", "ge-0/0/2", clock.t, 50))
    assert await r.dispatcher.run_once() == 2
    row = journaled(r, second.key)
    assert row.state == "blocked"
    assert "S-1 already got 1 message(s) in the last 1d (cap 1)" in (row.last_error or "")
    assert journaled(r, other.key).state == "succeeded"
    got = [(q.body["subscriber"], q.body["evidence"]["incident_id"]) for q in crm.snapshot()]
    assert got == [("S-1", "INC-000001"), ("S-2", "INC-000003")]
    assert crm.snapshot()[1].body["evidence"]["plan_mbps"] == 50

    # a day after the first offer, the next saturation gets one again
    clock.t = NOON + 86_400 + 60
    [third] = r.event("opened", saturated("INC-000004", "S-1", "ge-0/0/1", clock.t, 100))
    assert await r.dispatcher.run_once() == 1
    assert journaled(r, third.key).state == "succeeded"
    assert [q.body["evidence"]["incident_id"] for q in crm.snapshot()][-1] == "INC-000004"
    assert len(crm.snapshot()) == 3


async def test_only_the_incidents_subscriber_gets_it_other_kinds_go_to_everyone(
        tmp_path: Path, crm: CrmServer, rigs: list[Rig]) -> None:
    pol = Policy.model_validate({
        "targets": {"offers": {"kind": "crm_offer", "url": crm.url, "offer_code": "X-1",
                               "timeout": 2, "backoff_max": 1}},
        "rules": [{"name": "offers", "do": [{"target": "offers"}]}],
        "guardrails": {"customer_facing": ["crm_offer"]},
    })
    r = rig(rigs, tmp_path / "st", pol, Clock(NOON))
    # about S-1, though its impact names S-2 too (a port both share, say)
    both = compute_impact(INVENTORY, ["S-1", "S-2"], ())
    inc = replace(saturated("INC-000001", "S-1", "ge-0/0/1", NOON, 100), impact=both)
    [mine] = r.event("opened", inc)
    outage = replace(inc, id="INC-000002", root="link:acc1:ge-0/0/1", kind="link_down",
                     subscriber=None, evidence={}, summary="")
    [everyone] = r.event("opened", outage)
    assert mine.recipient == "S-1" and everyone.recipient is None
    assert await r.dispatcher.run_once() == 2
    got = sorted((q.body["evidence"]["incident_id"], q.body["subscriber"])
                 for q in crm.snapshot())
    assert got == [("INC-000001", "S-1"), ("INC-000002", "S-1"), ("INC-000002", "S-2")]
    link = [q.body["evidence"] for q in crm.snapshot()
            if q.body["evidence"]["incident_id"] == "INC-000002"]
    assert all("detection" not in e and "plan_mbps" not in e for e in link)
