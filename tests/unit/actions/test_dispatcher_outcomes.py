"""The dispatcher's answers to what an executor says: ``wait`` (not yet, not an attempt),
``retry`` with Retry-After (honoured, capped), and a plan's ``not_before`` (a hold-down).
Fake executors, a fake clock, a real journal."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

from actions.dispatcher import Dispatcher
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.types import RETRY_AFTER_CAP, ActionPlan, ActionResult, Outcome
from correlator.incidents import Impact, Incident, IncidentEvent

NOON = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC).timestamp()
INC = Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
               port="p1", role="access", site="north", severity="minor", state="open",
               opened_at=NOON, updated_at=NOON,
               impact=Impact(subscribers=("S-1", "S-2"), revenue_by_tier={"residential": 60.0},
                             subscribers_by_tier={"residential": 2}))


class Clock:
    def __init__(self) -> None:
        self.t = NOON

    def __call__(self) -> float:
        return self.t


class Scripted:
    """Answers each call with the next (outcome, retry_after) of its script, then
    ``succeeded``."""

    kind = "log"

    def __init__(self, *script: tuple[Outcome, float | None]) -> None:
        self.script = list(script)
        self.calls: list[ActionPlan] = []

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        self.calls.append(plan)
        outcome, after = self.script.pop(0) if self.script else ("succeeded", None)
        return ActionResult(plan.key, plan.target, self.kind, outcome, f"said {outcome}",
                            retry_after=after)

    async def aclose(self) -> None:
        return None


class HeldBack(Scripted):
    """Expands into one plan per subscriber, each held back ``hold`` seconds."""

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold

    def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        return [replace(plan, recipient=s, not_before=incident.opened_at + self.hold)
                for s in incident.impact.subscribers]


def make(tmp_path: Path, ex: Scripted, *, target: dict[str, Any] | None = None,
         guardrails: dict[str, Any] | None = None) -> tuple[Dispatcher, Journal, Clock]:
    pol = Policy.model_validate({
        "targets": {"t": target or {"kind": "log"}},
        "rules": [{"name": "r", "do": [{"target": "t"}]}],
        "guardrails": guardrails or {},
    })
    clock = Clock()
    journal = Journal(tmp_path / "j.db")
    return (Dispatcher(pol, journal, {"t": ex}, clock=clock, faults=FaultInjector()),
            journal, clock)


def row(journal: Journal, key: str) -> Any:
    r = journal.get(key)
    assert r is not None
    return r


async def test_wait_is_not_an_attempt_and_comes_back_when_asked(tmp_path: Path) -> None:
    ex = Scripted(("wait", 30.0), ("wait", None), ("succeeded", None))
    results: list[ActionResult] = []
    d, j, clock = make(tmp_path, ex)
    d.on_result = results.append
    (p,) = d.submit(IncidentEvent("opened", INC, NOON))
    assert await d.run_once() == 1
    r = row(j, p.key)
    assert (r.state, r.attempts, r.next_at, r.last_error) == ("planned", 0, NOON + 30,
                                                             "said wait")
    clock.t = NOON + 29.9
    assert await d.run_once() == 0  # not yet
    clock.t = NOON + 30
    assert await d.run_once() == 1
    r = row(j, p.key)  # no retry_after: tried again in a second
    assert (r.state, r.attempts, r.next_at) == ("planned", 0, NOON + 31)
    clock.t = NOON + 31
    assert await d.run_once() == 1
    r = row(j, p.key)
    assert (r.state, r.attempts) == ("succeeded", 1)
    assert [res.outcome for res in results] == ["wait", "wait", "succeeded"]


async def test_many_waits_never_exhaust_max_attempts(tmp_path: Path) -> None:
    ex = Scripted(*[("wait", 1.0)] * 5)
    d, j, clock = make(tmp_path, ex, target={"kind": "log", "max_attempts": 2})
    (p,) = d.submit(IncidentEvent("opened", INC, NOON))
    for _ in range(6):
        assert await d.run_once() == 1
        clock.t += 1
    r = row(j, p.key)
    assert (r.state, r.attempts, len(ex.calls)) == ("succeeded", 1, 6)


async def test_retry_after_is_honoured_and_capped(tmp_path: Path) -> None:
    ex = Scripted(("retry", 120.0), ("retry", 10 * RETRY_AFTER_CAP), ("retry", None))
    d, j, clock = make(tmp_path, ex, target={"kind": "log", "backoff_max": 5})
    (p,) = d.submit(IncidentEvent("opened", INC, NOON))
    await d.run_once()
    r = row(j, p.key)  # longer than the backoff: the receiver's word wins
    assert (r.state, r.attempts, r.next_at - NOON) == ("planned", 1, 120.0)
    clock.t = r.next_at
    await d.run_once()
    r = row(j, p.key)  # an absurd Retry-After is capped
    assert r.next_at - clock.t == RETRY_AFTER_CAP
    clock.t = r.next_at
    await d.run_once()
    r = row(j, p.key)  # no Retry-After: capped, jittered backoff
    assert r.attempts == 3 and 2.5 <= r.next_at - clock.t <= 5.0


async def test_not_before_is_the_first_attempt_time(tmp_path: Path) -> None:
    ex = HeldBack(hold=300.0)
    d, j, clock = make(tmp_path, ex)
    plans = d.submit(IncidentEvent("opened", INC, NOON))
    assert [p.recipient for p in plans] == ["S-1", "S-2"]
    assert all(row(j, p.key).next_at == NOON + 300 for p in plans)
    assert j.next_due_at() == NOON + 300
    clock.t = NOON + 299
    assert await d.run_once() == 0 and ex.calls == []
    clock.t = NOON + 300
    assert await d.run_once() == 2
    assert {row(j, p.key).state for p in plans} == {"succeeded"}


async def test_not_before_in_the_past_is_due_now(tmp_path: Path) -> None:
    ex = HeldBack(hold=-60.0)
    d, j, _ = make(tmp_path, ex)
    plans = d.submit(IncidentEvent("opened", INC, NOON))
    assert all(row(j, p.key).next_at == NOON for p in plans)
    assert await d.run_once() == 2


async def test_waiting_executor_does_not_use_up_rate_limit_tokens(tmp_path: Path) -> None:
    """One token per minute; an action that keeps saying "wait" must give its token back,
    or the next action would be deferred behind it for as long as it waits."""
    ex = Scripted(*[("wait", 5.0)] * 3, ("wait", 600.0))
    d, j, clock = make(tmp_path, ex, guardrails={"rate_limits": [
        {"name": "slow", "per": "target", "rate": 1, "every": "1m"}]})
    (first,) = d.submit(IncidentEvent("opened", INC, NOON))
    for _ in range(4):  # four attempts within a minute, all "wait"
        assert await d.run_once() == 1
        clock.t += 5
    assert row(j, first.key).state == "planned" and len(ex.calls) == 4
    other = replace(INC, id="INC-000002", root="link:olt1:p2")
    (second,) = d.submit(IncidentEvent("opened", other, clock.t))
    await d.run_once()
    r = row(j, second.key)
    # with the tokens used up it would be "planned", deferred by the rate limit
    assert r.state == "succeeded", r.verdicts


async def test_waiting_half_open_trial_frees_the_slot(tmp_path: Path) -> None:
    ex = Scripted(("failed", None), ("wait", 600.0), ("succeeded", None))
    d, j, clock = make(tmp_path, ex, guardrails={"circuit_breaker": {"failures": 1,
                                                                     "cool_down": 10}})
    (a,) = d.submit(IncidentEvent("opened", INC, NOON))
    await d.run_once()  # fails: the circuit opens
    assert d.guardrails.breaker_state("t", clock.t) == "open"
    clock.t += 10  # half-open
    (b,) = d.submit(IncidentEvent("opened", replace(INC, id="INC-000002",
                                                    root="link:olt1:p2"), clock.t))
    await d.run_once()  # b is the trial and says "wait" for 10 minutes
    assert row(j, b.key).state == "planned"
    (c,) = d.submit(IncidentEvent("opened", replace(INC, id="INC-000003",
                                                    root="link:olt1:p3"), clock.t))
    await d.run_once()  # c may be the trial instead of waiting 10 minutes behind b
    assert row(j, c.key).state == "succeeded"
    assert row(j, a.key).state == "failed"
