"""SLA credits end to end: policy -> Dispatcher + Journal + guardrails -> the sla_credit
executor -> a real TMF678 billing endpoint on loopback (tests/support/billing_server.py),
which counts every POST and books each Idempotency-Key once.

Crashes are real: a child process runs the dispatcher and dies with ``os._exit(137)`` at a
``NETREFLEX_FAULT`` point (actions/faults.py), or is SIGKILLed while its credit request is
in flight; a new Dispatcher on the same journal and ledger then finishes the work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actions.credit_ledger import CreditLedger
from actions.dispatcher import Dispatcher, build_executors
from actions.executors.credit import request_id
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionResult, ExecutorContext
from correlator.incidents import Incident, IncidentEvent, compute_impact
from correlator.inventory import Device, Inventory, Subscriber
from correlator.maintenance import MaintenanceWindow, MatchSpec, Scope
from correlator.silences import Maintenance
from correlator.store import IncidentStore
from tests.support.billing_server import BillingServer

REPO = Path(__file__).resolve().parents[2]
OPENED = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()
SCHEDULE = {
    "business": [{"minutes": 60, "percent": 5}, {"minutes": 240, "percent": 10},
                 {"minutes": 1440, "percent": 25}],
    "enterprise": [{"minutes": 30, "percent": 10}, {"minutes": 120, "percent": 20},
                   {"minutes": 480, "percent": 50}],
}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sub(sid: str, revenue: float, tier: str, account: str | None = None) -> Subscriber:
    return Subscriber(sid, account, None, "olt1", "p1", None, None, None, revenue, tier,
                      None, 0.1, None, None, True, False)


def inventory() -> Inventory:
    return Inventory(
        {"core1": Device("core1", "core", "pop", (), None),
         "olt1": Device("olt1", "access", "cab-1", (), None)},
        [sub("s1", 30, "residential"), sub("s2", 120, "business", "BA-2"),
         sub("s3", 3000, "enterprise", "BA-3"), sub("s4", 0, "business", "BA-4")],
    )


def outage(minutes: float, *, inc_id: str = "INC-000007", kind: str = "device_unreachable",
           subs: tuple[str, ...] = ("s1", "s2", "s3", "s4")) -> Incident:
    return Incident(
        id=inc_id, root="device:olt1", kind=kind, device="olt1", port=None, role="access",
        site="cab-1", severity="major", state="resolved", opened_at=OPENED,
        updated_at=OPENED + minutes * 60, resolved_at=OPENED + minutes * 60,
        impact=compute_impact(inventory(), subs, ("olt1",)),
    )


def policy(url: str, *, rules: list[dict[str, Any]] | None = None,
           guardrails: dict[str, Any] | None = None, **target: Any) -> Policy:
    return Policy.model_validate({
        "targets": {"billing": {"kind": "sla_credit", "url": url, "schedule_version": "2026-1",
                               "schedule": SCHEDULE, "cap_percent": 30, "currency": "EUR",
                               "timeout": 2, "backoff_max": 1, **target}},
        "rules": rules or [{"name": "credits", "when": {"events": ["resolved"]},
                            "do": [{"target": "billing"}]}],
        "guardrails": guardrails or {},
    })


class Rig:
    """A dispatcher, journal and executors on ``state`` (a restart is a new Rig)."""

    def __init__(self, state: Path, pol: Policy, clock: Clock, *,
                 maintenance: Maintenance | None = None,
                 faults: FaultInjector | None = None) -> None:
        state.mkdir(exist_ok=True)
        inv = inventory()
        self.context = ExecutorContext(state_dir=state, inventory=lambda: inv, clock=clock)
        if maintenance is not None:
            self.context.maintenance = maintenance
        self.journal = Journal(state / "journal.db")
        self.executors = build_executors(pol, state_dir=state, context=self.context)
        self.results: list[ActionResult] = []
        self.dispatcher = Dispatcher(pol, self.journal, self.executors, clock=clock,
                                     faults=faults or FaultInjector(),
                                     on_result=self.results.append)
        self.clock = clock
        self.ledger = CreditLedger(state)

    async def settle(self, rounds: int = 6, step: float = 5.0) -> None:
        """Run due actions, moving the clock past any backoff, until nothing is due."""
        for _ in range(rounds):
            await self.dispatcher.run_once()
            self.clock.t += step

    async def close(self) -> None:
        for ex in self.executors.values():
            await ex.aclose()
        self.journal.close()
        self.ledger.close()


@pytest.fixture
def billing() -> Iterator[BillingServer]:
    with BillingServer() as srv:
        yield srv


def rig(rigs: list[Rig], state: Path, pol: Policy, **kw: Any) -> Rig:
    r = Rig(state, pol, Clock(OPENED + 86_400), **kw)
    rigs.append(r)
    return r


def resolved(inc: Incident) -> IncidentEvent:
    assert inc.resolved_at is not None
    return IncidentEvent("resolved", inc, inc.resolved_at)


def booked(srv: BillingServer) -> dict[str, float]:
    """billing account -> credited amount, as the billing system booked it."""
    return {c["billingAccount"]["id"]: c["taxExcludedAmount"]["value"]
            for c in srv.credits.values()}


# --- the schedule, end to end ---------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "expected"), [
    (20, {}),                                  # below every first step
    (45, {"BA-3": -300.0}),                    # enterprise 10 %; business not yet
    (150, {"BA-2": -6.0, "BA-3": -600.0}),     # business 5 %, enterprise 20 %
    (300, {"BA-2": -12.0, "BA-3": -600.0}),    # business 10 %
    (500, {"BA-2": -12.0, "BA-3": -900.0}),    # enterprise 50 % capped at 30 %
    (2000, {"BA-2": -30.0, "BA-3": -900.0}),   # business 25 %
])
async def test_schedule_tiers_steps_and_caps(tmp_path: Path, billing: BillingServer,
                                             rigs: list[Rig], minutes: float,
                                             expected: dict[str, float]) -> None:
    r = rig(rigs, tmp_path / "state", policy(billing.base_url))
    plans = r.dispatcher.submit(resolved(outage(minutes)))
    # s1 (residential: no schedule) and s4 (fee 0) never get an action
    assert sorted(p.recipient or "" for p in plans) == sorted(
        {"BA-2": "s2", "BA-3": "s3"}[a] for a in expected)
    await r.settle()
    assert booked(billing) == expected
    assert len(billing.posts()) == len(expected)
    for row in r.ledger.rows():
        assert row.state == "accepted" and row.schedule_version == "2026-1"
        assert row.currency == "EUR" and row.minutes == minutes and row.cap_percent == 30
        assert row.billing_id is not None and row.billing_id.startswith("acbr-")
    body = billing.posts()[0].body if expected else None
    if body is not None:
        assert body["appliedBillingRateType"] == "credit" and body["isBilled"] is False
        assert "INC-000007" in body["description"] and f"{minutes:g} minute" in body["description"]
        assert body["periodCoverage"]["startDateTime"] == "2026-03-10T12:00:00.000Z"
        names = {c["name"]: c["value"] for c in body["characteristic"]}
        assert names["scheduleVersion"] == "2026-1" and names["outageMinutes"] == minutes


async def test_opened_events_and_degraded_kinds_earn_nothing(
        tmp_path: Path, billing: BillingServer, rigs: list[Rig]) -> None:
    pol = policy(billing.base_url, rules=[{"name": "all", "when": {"events": [
        "opened", "resolved"]}, "do": [{"target": "billing"}]}])
    r = rig(rigs, tmp_path / "state", pol)
    inc = outage(600)
    assert r.dispatcher.submit(IncidentEvent("opened", inc, OPENED)) == []
    flap = outage(600, kind="flapping", inc_id="INC-000008")
    assert r.dispatcher.submit(resolved(flap)) == []
    assert len(r.dispatcher.submit(resolved(inc))) == 2


async def test_monthly_cap_counts_earlier_credits_from_the_ledger(
        tmp_path: Path, billing: BillingServer, rigs: list[Rig]) -> None:
    r = rig(rigs, tmp_path / "state", policy(billing.base_url, monthly_cap_percent=40))
    r.dispatcher.submit(resolved(outage(500, inc_id="INC-1", subs=("s3",))))  # 900 of 1200
    await r.settle()
    r.dispatcher.submit(resolved(outage(500, inc_id="INC-2", subs=("s3",))))  # 300 left
    await r.settle()
    r.dispatcher.submit(resolved(outage(500, inc_id="INC-3", subs=("s3",))))  # nothing left
    await r.settle()
    assert sorted(c["taxExcludedAmount"]["value"] for c in billing.credits.values()) == [
        -900.0, -300.0]
    assert [row.amount for row in r.ledger.rows()] == [900.0, 300.0]


# --- planned maintenance ----------------------------------------------------------------------


def window(start: float, end: float) -> MaintenanceWindow:
    match = MatchSpec(devices=["olt1"])
    return MaintenanceWindow("mw-1", "firmware", None, "UTC", match, Scope.of(match),
                             start=start, end=end, duration=end - start)


async def test_maintenance_time_is_left_out(tmp_path: Path, billing: BillingServer,
                                            rigs: list[Rig]) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    # a window over the first 100 of 150 minutes, and a silence set up at minute 120
    # (during the outage: repair work, not planned -- it does not count)
    maint = Maintenance(inventory(), store, windows=[window(OPENED - 600, OPENED + 6000)],
                        clock=lambda: OPENED + 7200)
    maint.create_silence({"devices": ["olt1"]}, reason="fixing it", created_by="ops",
                         duration=3600)
    r = rig(rigs, tmp_path / "state", policy(billing.base_url), maintenance=maint)
    plans = r.dispatcher.submit(resolved(outage(150)))
    # 50 minutes left: enterprise 10 %, business below its first step
    assert [(p.recipient, p.amount) for p in plans] == [("s3", 300.0)]
    assert plans[0].payload["credit"]["planned_minutes"] == 100.0
    await r.settle()
    assert booked(billing) == {"BA-3": -300.0}
    store.close()


async def test_fully_planned_outage_earns_nothing(tmp_path: Path, billing: BillingServer,
                                                  rigs: list[Rig]) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    maint = Maintenance(inventory(), store, windows=[window(OPENED, OPENED + 86_400)])
    r = rig(rigs, tmp_path / "state", policy(billing.base_url), maintenance=maint)
    assert r.dispatcher.submit(resolved(outage(600))) == []
    await r.settle()
    assert billing.posts() == [] and r.ledger.rows() == []
    store.close()


# --- approval above a limit -------------------------------------------------------------------


async def test_credit_above_the_limit_waits_for_a_person(tmp_path: Path, billing: BillingServer,
                                                          rigs: list[Rig]) -> None:
    gate = {"approvals": [{"name": "big-credits",
                           "when": {"executors": ["sla_credit"], "min_amount": 500}}]}
    r = rig(rigs, tmp_path / "state", policy(billing.base_url, guardrails=gate))
    plans = {p.recipient: p for p in r.dispatcher.submit(resolved(outage(150)))}
    await r.settle(rounds=2)
    assert booked(billing) == {"BA-2": -6.0}  # 6.00 goes; 600.00 waits
    big = r.journal.get(plans["s3"].key)
    assert big is not None and big.state == "waiting_approval"
    assert r.ledger.get("INC-000007", "s3") is None
    r.dispatcher.approve(plans["s3"].key, by="carol", reason="enterprise SLA")
    await r.settle(rounds=2)
    assert booked(billing) == {"BA-2": -6.0, "BA-3": -600.0}
    row = r.ledger.get("INC-000007", "s3")
    assert row is not None and row.state == "accepted" and row.approver == "carol"
    assert r.ledger.get("INC-000007", "s2").approver is None  # type: ignore[union-attr]
    body = next(p.body for p in billing.posts() if p.body["billingAccount"]["id"] == "BA-3")
    assert {"name": "approvedBy", "valueType": "string", "value": "carol"} in body["characteristic"]


async def test_denied_credit_is_never_requested(tmp_path: Path, billing: BillingServer,
                                                rigs: list[Rig]) -> None:
    gate = {"approvals": [{"name": "big-credits", "when": {"min_amount": 500}}]}
    r = rig(rigs, tmp_path / "state", policy(billing.base_url, guardrails=gate))
    plans = {p.recipient: p for p in r.dispatcher.submit(resolved(outage(150)))}
    await r.settle(rounds=2)
    r.dispatcher.deny(plans["s3"].key, by="carol", reason="goodwill handled by the AM")
    await r.settle()
    row = r.journal.get(plans["s3"].key)
    assert row is not None and row.state == "blocked"
    assert r.ledger.get("INC-000007", "s3") is None
    assert booked(billing) == {"BA-2": -6.0}


# --- answers: 4xx recorded, 5xx and timeouts retried -----------------------------------------


async def test_4xx_is_rejected_and_not_retried(tmp_path: Path, rigs: list[Rig]) -> None:
    with BillingServer(unknown={"BA-3"}) as srv:
        r = rig(rigs, tmp_path / "state", policy(srv.base_url))
        plans = {p.recipient: p for p in r.dispatcher.submit(resolved(outage(150)))}
        await r.settle()
        assert [p.status for p in srv.posts() if p.body["billingAccount"]["id"] == "BA-3"] \
            == [404]
        row = r.journal.get(plans["s3"].key)
        assert row is not None and row.state == "failed" and "404" in (row.last_error or "")
        credit = r.ledger.get("INC-000007", "s3")
        assert credit is not None and credit.state == "rejected" and "404" in (credit.detail or "")
        assert booked(srv) == {"BA-2": -6.0}


async def test_5xx_is_retried_with_the_same_request(tmp_path: Path, rigs: list[Rig]) -> None:
    with BillingServer(statuses=[503, 500]) as srv:
        r = rig(rigs, tmp_path / "state", policy(srv.base_url))
        r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
        await r.settle()
        posts = srv.posts()
        assert [p.status for p in posts] == [503, 500, 201]
        assert len({p.headers["Idempotency-Key"] for p in posts}) == 1
        assert posts[0].headers["Idempotency-Key"] == request_id("INC-000007", "s3")
        assert posts[0].body["id"] == request_id("INC-000007", "s3")
        assert booked(srv) == {"BA-3": -600.0}
        assert r.ledger.get("INC-000007", "s3").state == "accepted"  # type: ignore[union-attr]


async def test_giving_up_on_billing_marks_the_ledger_row(tmp_path: Path, rigs: list[Rig]) -> None:
    """When the retries run out the action fails; its ledger row must not stay 'requested'
    for ever (it would count against the monthly cap and nobody would look at it)."""
    with BillingServer(statuses=[503, 503, 503]) as srv:
        r = rig(rigs, tmp_path / "state", policy(srv.base_url, max_attempts=2,
                                                 monthly_cap_percent=100))
        (p,) = r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
        await r.settle()
        assert [x.status for x in srv.posts()] == [503, 503]
        row = r.journal.get(p.key)
        assert row is not None and row.state == "failed"
        credit = r.ledger.get("INC-000007", "s3")
        assert credit is not None and credit.state == "rejected"
        assert "gave up after 2 attempt(s)" in (credit.detail or "")
        assert r.ledger.credited_in_month("s3", credit.month, besides="other") == 0.0


@pytest.mark.parametrize(("statuses", "state"), [
    ([503, 409], "accepted"),  # a 409 to a resend: the billing system has it already
    ([409], "rejected"),       # a 409 to the first request is a conflict like any 4xx
])
async def test_409_means_booked_only_for_a_resend(tmp_path: Path, rigs: list[Rig],
                                                  statuses: list[int], state: str) -> None:
    with BillingServer(statuses=statuses) as srv:
        r = rig(rigs, tmp_path / "state", policy(srv.base_url))
        (p,) = r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
        await r.settle()
        assert [x.status for x in srv.posts()] == statuses
        credit = r.ledger.get("INC-000007", "s3")
        assert credit is not None and credit.state == state
        row = r.journal.get(p.key)
        assert row is not None
        assert row.state == ("succeeded" if state == "accepted" else "failed")


async def test_dry_run_requests_nothing_and_writes_no_ledger_row(
        tmp_path: Path, billing: BillingServer, rigs: list[Rig]) -> None:
    pol = policy(billing.base_url)
    r = rig(rigs, tmp_path / "state", pol.model_copy(update={"dry_run": True}))
    plans = r.dispatcher.submit(resolved(outage(150)))
    await r.settle()
    assert len(plans) == 2 and billing.posts() == [] and r.ledger.rows() == []
    assert all("would request a credit of" in res.detail for res in r.results)
    assert {res.outcome for res in r.results} == {"dry_run"}


async def test_a_hanging_billing_system_times_out_and_is_retried(tmp_path: Path,
                                                                  rigs: list[Rig]) -> None:
    with BillingServer(delay=1.0) as srv:
        r = rig(rigs, tmp_path / "state", policy(srv.base_url, timeout=0.3))
        (p,) = r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
        await r.settle(rounds=1)
        row = r.journal.get(p.key)
        assert row is not None and row.state == "planned" and row.attempts == 1
        assert "timed out" in (row.last_error or "")
        credit = r.ledger.get("INC-000007", "s3")
        assert credit is not None and credit.state == "requested"


# --- exactly once -----------------------------------------------------------------------------


async def test_two_rules_one_credit(tmp_path: Path, billing: BillingServer,
                                    rigs: list[Rig]) -> None:
    rules = [{"name": "outage-credits", "when": {"events": ["resolved"]},
              "do": [{"target": "billing"}]},
             {"name": "enterprise-credits", "when": {"events": ["resolved"],
                                                     "sla_tier": ["enterprise"]},
              "do": [{"target": "billing"}]}]
    r = rig(rigs, tmp_path / "state", policy(billing.base_url, rules=rules))
    first, second = r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
    assert first.key != second.key and first.recipient == second.recipient == "s3"
    await r.settle()
    assert len(billing.posts()) == 1 and booked(billing) == {"BA-3": -600.0}
    for p in (first, second):
        row = r.journal.get(p.key)
        assert row is not None and row.state == "succeeded"
    details = [res.detail for res in r.results]
    assert len(details) == 2 and sum("not requested again" in d for d in details) == 1
    (credit,) = r.ledger.rows()
    assert credit.state == "accepted" and credit.action_key in (first.key, second.key)


def child_main(state: str, url: str) -> None:
    """Run by the crash tests in a child process: plan and run the credits of one outage
    under NETREFLEX_FAULT (it dies at the fault point), or until done."""

    async def go() -> None:
        r = Rig(Path(state), policy(url), Clock(OPENED + 86_400),
                faults=FaultInjector.from_env())
        r.dispatcher.submit(resolved(outage(150, subs=("s3",))))
        await r.settle()
        await r.close()

    asyncio.run(go())


def run_child(state: Path, url: str, fault: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NETREFLEX_FAULT", None)
    if fault:
        env["NETREFLEX_FAULT"] = fault
    code = ("import sys; from tests.integration.test_credit import child_main; "
            "child_main(sys.argv[1], sys.argv[2])")
    return subprocess.Popen([sys.executable, "-c", code, str(state), url], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("point", ["after_plan", "after_start", "after_send", "after_finish"])
async def test_kill_9_at_a_fault_point_never_credits_twice(
        tmp_path: Path, billing: BillingServer, rigs: list[Rig], point: str) -> None:
    state = tmp_path / "state"
    proc = run_child(state, billing.base_url, point)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 137, err.decode()
    assert f"NETREFLEX_FAULT={point}" in err.decode()
    r = rig(rigs, state, policy(billing.base_url))  # the restart
    assert r.dispatcher.submit(resolved(outage(150, subs=("s3",)))) == []  # known decision
    await r.settle()
    # the ledger row is completed before the journal: even "sent, outcome not journaled"
    # (after_send) finds it accepted and sends nothing more
    assert len(billing.posts()) == 1 and booked(billing) == {"BA-3": -600.0}
    (row,) = r.ledger.rows()
    assert row.state == "accepted"
    (action,) = r.journal.rows()
    assert action.state == "succeeded"


async def test_kill_9_with_the_request_in_flight_resends_the_same_request(
        tmp_path: Path, rigs: list[Rig]) -> None:
    with BillingServer(delay=1.5) as srv:
        state = tmp_path / "state"
        proc = run_child(state, srv.base_url, None)
        await asyncio.to_thread(srv.wait_for, lambda got: len(got) == 1, 30.0)
        proc.send_signal(signal.SIGKILL)  # the request has left; its answer has not come
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        ledger = CreditLedger(state)
        assert ledger.get("INC-000007", "s3").state == "requested"  # type: ignore[union-attr]
        ledger.close()
        srv.delay = 0.0
        r = rig(rigs, state, policy(srv.base_url))
        await r.settle()
        await asyncio.to_thread(srv.wait_for, lambda got: all(x.status for x in got), 10.0)
        posts = srv.posts()
        assert len(posts) == 2  # sent again after the restart ...
        assert {p.headers["Idempotency-Key"] for p in posts} == {request_id("INC-000007", "s3")}
        assert posts[0].body["taxExcludedAmount"] == posts[1].body["taxExcludedAmount"]
        assert booked(srv) == {"BA-3": -600.0}  # ... and booked once
        (row,) = r.ledger.rows()
        assert row.state == "accepted"
