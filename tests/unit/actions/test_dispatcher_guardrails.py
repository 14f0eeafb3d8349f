"""The dispatcher with fake executors and a fake clock: guardrails run before every
attempt, an executor never sees a plan that did not pass, approvals, fan-out (expand)."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.dispatcher import Dispatcher
from actions.errors import ActionStateConflict
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionPlan, ActionResult, Outcome
from correlator.incidents import Impact, Incident, IncidentEvent

NOON = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeExecutor:
    def __init__(self, kind: str, outcomes: list[Outcome] | None = None) -> None:
        self.kind = kind
        self.seen: list[ActionPlan] = []
        self.outcomes = list(outcomes or [])

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        self.seen.append(plan)
        await asyncio.sleep(0)  # a real executor yields while it waits for the far end
        outcome: Outcome = "dry_run" if dry_run else (
            self.outcomes.pop(0) if self.outcomes else "succeeded")
        return ActionResult(plan.key, plan.target, self.kind, outcome, "fake")

    async def aclose(self) -> None:
        return None


class FanOut(FakeExecutor):
    """One action per affected subscriber, as a notification executor would."""

    def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        return [replace(plan, recipient=s, payload={"to": s, "idempotency_key": "?"})
                for s in incident.impact.subscribers]


def incident(*, role: str = "access", planned: bool = False, subs: int = 2) -> Incident:
    return Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
                    port="p1", role=role, site="north", severity="minor", state="open",
                    opened_at=0, updated_at=0, planned=planned,
                    impact=Impact(subscribers=tuple(f"S-{i}" for i in range(1, subs + 1)),
                                  revenue_by_tier={"residential": 30.0 * subs},
                                  subscribers_by_tier={"residential": subs}))


TARGETS: dict[str, dict[str, Any]] = {
    "log": {"kind": "log"},
    "crm_offer": {"kind": "crm_offer", "url": "http://127.0.0.1:1/offers", "offer_code": "X"},
}


def make(tmp_path: Path, executors: dict[str, FakeExecutor], *,
         guardrails: dict[str, Any] | None = None, clock: Clock | None = None,
         dry_run: bool = False, **rule: Any) -> tuple[Dispatcher, Journal, Clock]:
    pol = Policy.model_validate({
        "dry_run": dry_run,
        "targets": {name: TARGETS[ex.kind] for name, ex in executors.items()},
        "rules": [{"name": "r", "do": [{"target": t} for t in executors], **rule}],
        "guardrails": guardrails or {},
    })
    clock = clock or Clock()
    j = Journal(tmp_path / "j.db")
    d = Dispatcher(pol, j, executors, clock=clock, faults=FaultInjector())
    return d, j, clock


async def test_approval_flow_executor_sees_only_approved(tmp_path: Path) -> None:
    ex = FakeExecutor("log")
    d, j, _ = make(tmp_path, {"noc": ex}, approval={"required": True, "expires_after": 600})
    (p,) = d.submit(IncidentEvent("opened", incident(), NOON))
    assert await d.run_once() == 1
    row = j.get(p.key)
    assert row is not None and row.state == "waiting_approval" and row.expires_at == NOON + 600
    assert ex.seen == []
    assert d.trips == {("approval", "waiting"): 1}  # what netreflex_guardrail_trips shows
    assert await d.run_once() == 0  # waiting is not due
    d.approve(p.key, by="alice", reason="ok")
    assert await d.run_once() == 1
    row = j.get(p.key)
    assert row is not None and row.state == "succeeded"
    assert [s.approved_by for s in ex.seen] == ["alice"]
    with pytest.raises(ActionStateConflict):
        d.approve(p.key, by="alice")


async def test_denied_and_expired_approvals_never_reach_the_executor(tmp_path: Path) -> None:
    ex = FakeExecutor("log")
    d, j, clock = make(tmp_path, {"a": ex, "b": ex}, approval={"expires_after": 60})
    pa, pb = d.submit(IncidentEvent("opened", incident(), NOON))
    await d.run_once()
    d.deny(pa.key, by="bob", reason="not now")
    clock.t += 61
    await d.run_once()
    ra, rb = j.get(pa.key), j.get(pb.key)
    assert ra is not None and ra.state == "blocked" and ra.last_error == "denied by bob: not now"
    assert rb is not None and rb.state == "blocked" and "approval expired" in (rb.last_error or "")
    assert ex.seen == []


async def test_blocked_by_maintenance_is_recorded_with_its_verdicts(tmp_path: Path) -> None:
    offer = FakeExecutor("crm_offer")
    noc = FakeExecutor("log")
    results: list[ActionResult] = []
    d, j, _ = make(tmp_path, {"offer": offer, "noc": noc},
                   guardrails={"customer_facing": ["crm_offer"]})
    d.on_result = results.append
    plans = d.submit(IncidentEvent("opened", incident(planned=True), NOON))
    await d.run_once()
    by = {p.target: j.get(p.key) for p in plans}
    assert by["offer"] is not None and by["offer"].state == "blocked"
    assert by["offer"].verdicts[0]["guardrail"] == "maintenance"
    assert by["noc"] is not None and by["noc"].state == "succeeded"
    assert offer.seen == [] and len(noc.seen) == 1
    assert sorted(r.outcome for r in results) == ["blocked", "succeeded"]
    assert d.trips == {("maintenance", "blocked"): 1}


async def test_quiet_hours_defer_and_then_deliver(tmp_path: Path) -> None:
    offer = FakeExecutor("crm_offer")
    night = dt.datetime(2024, 6, 10, 23, 0, tzinfo=dt.UTC).timestamp()
    d, j, clock = make(tmp_path, {"offer": offer}, clock=Clock(night), guardrails={
        "customer_facing": ["crm_offer"],
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC"}})
    (p,) = d.submit(IncidentEvent("opened", incident(), night))
    await d.run_once()
    row = j.get(p.key)
    morning = dt.datetime(2024, 6, 11, 7, 0, tzinfo=dt.UTC).timestamp()
    assert row is not None and row.state == "planned" and row.next_at == morning
    assert [v["outcome"] for v in row.verdicts if v["guardrail"] == "quiet_hours"] == [
        "deferred"]
    clock.t = morning - 1
    assert await d.run_once() == 0 and offer.seen == []
    assert d.trips == {("quiet_hours", "deferred"): 1}
    clock.t = morning
    assert await d.run_once() == 1
    assert len(offer.seen) == 1 and j.get(p.key).state == "succeeded"  # type: ignore[union-attr]


async def test_dry_run_records_what_guardrails_would_do_without_calling(tmp_path: Path) -> None:
    ex = FakeExecutor("log")
    d, j, _ = make(tmp_path, {"noc": ex}, dry_run=True, approval={"required": True})
    (p,) = d.submit(IncidentEvent("opened", incident(), NOON))
    await d.run_once()
    row = j.get(p.key)
    assert row is not None and row.state == "dry_run"
    assert row.last_error is not None and row.last_error.startswith(
        "dry run: would be waiting (approval: needs a person's approval")
    assert ex.seen == [] and d.trips == {}  # a dry run trips nothing for real
    # allowed dry runs do reach the executor, with dry_run set, and take no tokens
    (tmp_path / "b").mkdir()
    d2, j2, _ = make(tmp_path / "b", {"noc": ex}, dry_run=True, guardrails={
        "rate_limits": [{"name": "one", "per": "target", "rate": 1, "every": "1h"}]})
    for n in range(3):
        d2.submit(IncidentEvent("opened", replace(incident(), id=f"INC-{n}"), NOON))
    await d2.run_once()
    assert len(ex.seen) == 3 and {r.state for r in j2.rows()} == {"dry_run"}


async def test_circuit_breaker_through_the_dispatcher(tmp_path: Path) -> None:
    ex = FakeExecutor("log", outcomes=["retry", "retry"])
    d, j, clock = make(tmp_path, {"noc": ex}, guardrails={
        "circuit_breaker": {"failures": 2, "cool_down": 30}})
    for n in range(3):
        d.submit(IncidentEvent("opened", replace(incident(), id=f"INC-{n}"), NOON))
    d._sem = asyncio.Semaphore(1)  # one at a time, in order
    await d.run_once()
    # two failures opened the circuit; the third action was deferred, not sent
    assert len(ex.seen) == 2
    states = sorted((r.attempts, r.state) for r in j.rows())
    assert states == [(0, "planned"), (1, "planned"), (1, "planned")]
    assert d.guardrails.breaker_state("noc", clock.t) == "open"
    clock.t += 31
    d._sem = asyncio.Semaphore(16)
    await d.run_once()
    # half-open: one trial went out; the others wait for it instead of piling on
    assert len(ex.seen) == 3
    assert sorted(r.state for r in j.rows()) == ["planned", "planned", "succeeded"]
    assert d.guardrails.breaker_state("noc", clock.t) == "closed"  # the trial succeeded
    clock.t += 5
    await d.run_once()
    assert len(ex.seen) == 5 and {r.state for r in j.rows()} == {"succeeded"}


async def test_expand_fans_out_per_recipient_with_their_own_keys(tmp_path: Path) -> None:
    ex = FanOut("log")
    d, _, _ = make(tmp_path, {"sms": ex})
    ev = IncidentEvent("opened", incident(subs=3), NOON)
    plans = d.submit(ev)
    assert [p.recipient for p in plans] == ["S-1", "S-2", "S-3"]
    assert len({p.key for p in plans}) == 3
    assert all(p.payload["idempotency_key"] == p.key for p in plans)
    assert all(p.rule == "r" and p.target == "sms" for p in plans)
    assert d.submit(ev) == []  # the same decision again: nothing new
    await d.run_once()
    assert sorted(p.recipient or "" for p in ex.seen) == ["S-1", "S-2", "S-3"]


async def test_a_failing_expand_is_journaled_as_failed(tmp_path: Path) -> None:
    class Broken(FakeExecutor):
        def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
            raise RuntimeError("template missing")

    ex = Broken("log")
    d, j, _ = make(tmp_path, {"sms": ex})
    (p,) = d.submit(IncidentEvent("opened", incident(), NOON))
    row = j.get(p.key)
    assert row is not None and row.state == "failed"
    assert row.last_error == "expand failed: RuntimeError: template missing"
    await d.run_once()
    assert ex.seen == []


async def test_message_caps_with_fan_out(tmp_path: Path) -> None:
    ex = FanOut("crm_offer")
    d, j, _ = make(tmp_path, {"sms": ex}, guardrails={
        "customer_facing": ["crm_offer"], "message_caps": {"max": 1, "window": "1d"}},
        when={"events": ["opened", "updated"]})
    d.submit(IncidentEvent("opened", incident(subs=2), NOON))
    await d.run_once()
    d.submit(IncidentEvent("updated", replace(incident(subs=3), revision=2), NOON + 60))
    await d.run_once()
    sent = sorted(p.recipient or "" for p in ex.seen)
    assert sent == ["S-1", "S-2", "S-3"]  # S-1 and S-2 once each; S-3 is new
    blocked = [r for r in j.rows() if r.state == "blocked"]
    assert sorted(r.recipient or "" for r in blocked) == ["S-1", "S-2"]


async def test_guardrails_that_cannot_be_evaluated_fail_closed(tmp_path: Path) -> None:
    ex = FakeExecutor("log")
    d, j, _ = make(tmp_path, {"noc": ex})
    d.guardrails.down_share = lambda: 1 / 0
    d.policy = Policy.model_validate({**d.policy.model_dump(), "guardrails": {
        "remediation": ["log"], "blast_radius": {"max_down_share": 0.5}}})
    (p,) = d.submit(IncidentEvent("opened", incident(), NOON))
    await d.run_once()
    row = j.get(p.key)
    assert row is not None and row.state == "planned" and row.next_at == NOON + 60
    assert row.verdicts[0]["guardrail"] == "guardrails"
    assert "ZeroDivisionError" in row.verdicts[0]["reason"]
    assert ex.seen == []
