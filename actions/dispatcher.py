"""Decide (policy) → journal → guardrails → execute, with retries that survive restarts.

Every attempt of every action goes through ``Guardrails.check`` first; the executor is
called only when the decision is ``allowed`` (a dry run that would not have been allowed
is recorded as such and its executor is not called at all).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from actions.faults import FaultInjector
from actions.guardrails import Decision, Guardrails, GuardVerdict, decide_outcome, inputs_of
from actions.journal import Decided, Journal, JournalRow
from actions.policy import Policy, decide, hold_until
from actions.types import (
    RETRY_AFTER_CAP,
    ActionPlan,
    ActionResult,
    Executor,
    ExecutorContext,
    idempotency_key,
)
from correlator.incidents import Incident, IncidentEvent

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS_IN_PAYLOAD = 500
GUARD_ERROR_RETRY = 60.0  # seconds: when guardrails cannot be evaluated, nothing runs


def build_payload(event: IncidentEvent, rule: str, key: str) -> dict[str, Any]:
    inc = event.incident.to_dict()
    subs = inc["impact"]["subscribers"]
    if len(subs) > MAX_SUBSCRIBERS_IN_PAYLOAD:
        inc["impact"]["subscribers"] = subs[:MAX_SUBSCRIBERS_IN_PAYLOAD]
        inc["impact"]["subscribers_truncated"] = True
    return {
        "schema": "netreflex.incident-event/1",
        "event": event.type,
        "event_ts": event.ts,
        "rule": rule,
        "idempotency_key": key,
        "incident": inc,
    }


def plans_for(policy: Policy, event: IncidentEvent,
              executors: Mapping[str, Executor]) -> tuple[list[ActionPlan], dict[str, str]]:
    """What policy asks for ``event``, one plan per (rule, target) -- or per recipient when
    the target's executor has ``expand``. Also returns the keys whose expansion failed,
    with why (they are journaled and failed at once, so the failure shows)."""
    plans: list[ActionPlan] = []
    broken: dict[str, str] = {}
    # every update is a decision of its own; open/resolve happen once per incident
    what = f"updated#{event.incident.revision}" if event.type == "updated" else event.type
    inputs = inputs_of(event.incident)
    for rule, ref in decide(policy, event):
        target = policy.targets[ref.target]
        key = idempotency_key(event.incident.id, what, rule.name, ref.target)
        dry = policy.dry_run if rule.dry_run is None else rule.dry_run
        base = ActionPlan(
            key=key, incident_id=event.incident.id, event=event.type, rule=rule.name,
            target=ref.target, executor=target.kind,
            payload=build_payload(event, rule.name, key), dry_run=dry, inputs=inputs,
            not_before=hold_until(rule, event),
        )
        expand = getattr(executors.get(ref.target), "expand", None)
        if expand is None:
            plans.append(base)
            continue
        try:
            out = expand(base, event.incident)
            if not isinstance(out, list) or not all(isinstance(p, ActionPlan) for p in out):
                raise TypeError(f"expand returned {type(out).__name__}, not a list of "
                                "ActionPlan")
        except Exception as exc:  # an executor bug must not stop the other actions
            log.exception("expand failed action=%s target=%s", key, ref.target)
            plans.append(base)
            broken[key] = f"expand failed: {type(exc).__name__}: {exc}"
            continue
        for p in out:
            plans.append(_rekeyed(base, p, what))
    return plans, broken


def _rekeyed(base: ActionPlan, p: ActionPlan, what: str) -> ActionPlan:
    """An expanded plan keeps the decision it came from (incident, event, rule, target,
    dry run, inputs); only its recipient, amount and payload are the executor's. Its key
    is derived here, with the recipient in it."""
    key = idempotency_key(base.incident_id, what, base.rule, base.target, p.recipient)
    payload = dict(p.payload)
    if "idempotency_key" in payload:
        payload["idempotency_key"] = key
    holds = [t for t in (base.not_before, p.not_before) if t is not None]
    return replace(base, key=key, recipient=p.recipient, amount=p.amount, payload=payload,
                   not_before=max(holds) if holds else None)


def missed(inc: Incident, last: Decided | None, since: float = 0.0) -> list[IncidentEvent]:
    """The events of ``inc`` (as saved now) that come after ``last``, the latest one the
    journal decided on: ``opened`` if nothing was (and it opened after ``since``), then an
    ``updated`` for a newer revision of an open incident, its ``mitigated`` after the
    last decided event, or its end (``resolved``, ``merged``) if that was not decided.
    Intermediate revisions are not replayed: only the incident's current state is known."""
    out: list[IncidentEvent] = []
    if last is None and inc.opened_at >= since:
        out.append(IncidentEvent("opened", inc, inc.opened_at))
    newer = inc.revision > (last.revision if last is not None else 1)
    if inc.state == "open" and newer:
        out.append(IncidentEvent("updated", inc, inc.updated_at))
    fixed = inc.mitigated_at
    if inc.state == "open" and fixed is not None and (last is None or last.ts < fixed):
        out.append(IncidentEvent("mitigated", inc, fixed))
    ended = last is not None and last.event in ("resolved", "merged")
    if inc.state != "open" and not ended:
        end = inc.resolved_at if inc.resolved_at is not None else inc.updated_at
        out.append(IncidentEvent("resolved" if inc.state == "resolved" else "merged", inc,
                                 end))
    return out


class Dispatcher:
    """Turns incident events into journaled actions and executes them.

    ``down_share``: which share (0..1) of the devices looks down now, for the blast-radius
    guardrail. ``faults``: test-only fault injection (default: ``NETREFLEX_FAULT``).
    ``incident(id)``: the incident as the correlator has it now (a rule's
    ``min_duration``). ``concurrency``: shared slots for actions; an executor with a
    ``concurrency`` of its own (remediation) runs its target's actions in that many slots
    of their own instead, so a slow fix never delays pages or tickets. ``idle(executor)``
    waits until no action runs on an executor (a reload closes retired ones then)."""

    def __init__(
        self,
        policy: Policy,
        journal: Journal,
        executors: Mapping[str, Executor],
        *,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
        on_result: Callable[[ActionResult], None] | None = None,
        down_share: Callable[[], float] | None = None,
        faults: FaultInjector | None = None,
        incident: Callable[[str], Incident | None] | None = None,
    ) -> None:
        self.journal = journal
        self.executors = dict(executors)
        self.clock = clock
        self.on_result = on_result
        self.guardrails = Guardrails(policy, journal, down_share=down_share,
                                     incident=incident)
        self._fault = faults if faults is not None else FaultInjector.from_env()
        self._sem = asyncio.Semaphore(concurrency)
        # an executor with ``concurrency`` (remediation) runs in slots of its own, per
        # target: a slow fix never holds the shared slots that pages and tickets need
        self._target_sems: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._using: dict[str, Executor] = {}  # action key -> the executor it runs on
        # (guardrail, outcome) -> attempts it stopped (live actions only): for metrics
        self.trips: dict[tuple[str, str], int] = {}

    @property
    def policy(self) -> Policy:
        return self.guardrails.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.guardrails.use(policy)

    def submit(self, event: IncidentEvent) -> list[ActionPlan]:
        """Journal what policy asks for this event, and that it was decided on (see
        ``catch_up``). Returns the newly planned actions."""
        inc = event.incident
        self._fault("before_submit", inc.id)
        plans, broken = plans_for(self.policy, event, self.executors)
        now = self.clock()
        fresh = self.journal.plan(plans, now, Decided(inc.id, event.type, inc.revision,
                                                      event.ts))
        for p in fresh:
            log.info("action planned action=%s incident=%s event=%s rule=%s target=%s%s%s",
                     p.key, p.incident_id, p.event, p.rule, p.target,
                     f" recipient={p.recipient}" if p.recipient is not None else "",
                     " (dry run)" if p.dry_run else "")
            if p.key in broken:
                self.journal.finish(p.key, "failed", now, error=broken[p.key])
        for p in fresh:
            self._fault("after_plan", p.key)
        if fresh:
            self._wake.set()
        return fresh

    def catch_up(self, incidents: Iterable[Incident]) -> list[IncidentEvent]:
        """Decide again the events a crash kept from the journal: the daemon saves an
        incident, then submits its event; a process killed in between restarts with the
        incident saved and its actions never planned. Each incident's latest event that
        the journal has not decided on (see ``missed``) is submitted now, at its own
        time; idempotency keys make a repeat harmless. Returns the events submitted."""
        since = self.journal.decided_since()
        out: list[IncidentEvent] = []
        for inc in incidents:
            if max(inc.updated_at, inc.resolved_at or 0.0) < since:
                continue  # from before this journal kept decisions: nothing to go on
            for ev in missed(inc, self.journal.decided(inc.id), since):
                log.warning("incident event not decided before the last stop; deciding it "
                            "now incident=%s event=%s revision=%d", inc.id, ev.type,
                            inc.revision)
                self.submit(ev)
                out.append(ev)
        return out

    # --- approvals -----------------------------------------------------------------------

    def approve(self, key: str, *, by: str, reason: str | None = None) -> JournalRow:
        """A person says go. Raises ActionNotFound or ActionStateConflict (not waiting)."""
        row = self.journal.approve(key, by=by, reason=reason, now=self.clock())
        log.warning("action approved action=%s incident=%s target=%s by=%r reason=%r",
                    key, row.incident_id, row.target, by, reason)
        self._wake.set()
        return row

    def deny(self, key: str, *, by: str, reason: str) -> JournalRow:
        row = self.journal.deny(key, by=by, reason=reason, now=self.clock())
        log.warning("action denied action=%s incident=%s target=%s by=%r reason=%r",
                    key, row.incident_id, row.target, by, reason)
        return row

    # --- running -------------------------------------------------------------------------

    def _start_due(self) -> list[asyncio.Task[None]]:
        now = self.clock()
        for row in self.journal.expire(now):
            log.warning("action blocked action=%s incident=%s target=%s: %s", row.key,
                        row.incident_id, row.target, row.last_error)
            self._emit(ActionResult(row.key, row.target, row.executor, "blocked",
                                    row.last_error or "approval expired"))
        started = []
        for plan in self.journal.due(now):
            if plan.key in self._inflight:
                continue
            task = asyncio.create_task(self._one(plan), name=f"action:{plan.key}")
            self._inflight[plan.key] = task
            task.add_done_callback(self._done)
            started.append(task)
        return started

    async def run_once(self) -> int:
        """Expire overdue approvals, start every due action and wait for them: one turn of
        ``run`` (tests drive the dispatcher with it and a fake clock). Returns how many."""
        started = self._start_due()
        if started:
            await asyncio.gather(*started)
        return len(started)

    async def run(self, stopping: asyncio.Event) -> None:
        """Execute due actions until ``stopping`` is set; then let in-flight ones finish."""
        while not stopping.is_set():
            self._start_due()
            nxt = self.journal.next_due_at()
            wait = 1.0 if nxt is None else max(0.01, min(1.0, nxt - self.clock()))
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({wake, stop}, timeout=wait,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
                stop.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        key = task.get_name().removeprefix("action:")
        self._inflight.pop(key, None)
        self._using.pop(key, None)

    async def idle(self, executor: Executor, timeout: float) -> bool:
        """Wait up to ``timeout`` until no in-flight action uses ``executor`` (a reload
        closes a retired executor only then). True when none does."""
        busy = [self._inflight[k] for k, ex in self._using.items()
                if ex is executor and k in self._inflight]
        if busy:
            _, left = await asyncio.wait(busy, timeout=timeout)
            return not left
        return True

    def _slots(self, target: str, executor: Executor | None) -> asyncio.Semaphore:
        limit = getattr(executor, "concurrency", None)
        if not isinstance(limit, int):
            return self._sem
        have = self._target_sems.get(target)
        if have is None or have[0] != limit:  # new, or changed by a reload
            have = self._target_sems[target] = (limit, asyncio.Semaphore(limit))
        return have[1]

    async def drain(self, timeout: float) -> int:
        """Wait for in-flight actions up to ``timeout``; cancel the rest. Returns how many
        were cancelled (they stay ``running`` in the journal and are retried at start)."""
        pending = list(self._inflight.values())
        if not pending:
            return 0
        _, left = await asyncio.wait(pending, timeout=timeout)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        return len(left)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def _one(self, plan: ActionPlan) -> None:
        executor = self.executors.get(plan.target)
        if executor is not None:
            self._using[plan.key] = executor
        async with self._slots(plan.target, executor):
            now = self.clock()
            if executor is None:
                self.journal.finish(plan.key, "failed", now,
                                    error=f"no executor for target {plan.target}")
                return
            try:
                decision = self.guardrails.check(plan, now)
            except Exception as exc:  # fail closed: no verdict, no effect
                log.exception("guardrails failed action=%s target=%s", plan.key, plan.target)
                decision = decide_outcome([GuardVerdict(
                    "guardrails", "deferred", f"could not be evaluated ({type(exc).__name__}: "
                    f"{exc}); tried again in {GUARD_ERROR_RETRY:.0f}s",
                    until=now + GUARD_ERROR_RETRY)])
            if not self._allowed(plan, decision, now):
                return
            if not plan.dry_run:
                self.guardrails.commit(plan, now)
            self.journal.start(plan.key, now, decision.to_dicts())
            self._fault("after_start", plan.key)
            try:
                result = await executor.execute(plan, dry_run=plan.dry_run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an executor bug must not stop the others
                log.exception("executor crashed action=%s target=%s", plan.key, plan.target)
                result = ActionResult(plan.key, plan.target, executor.kind, "retry",
                                      f"executor error: {type(exc).__name__}: {exc}")
            self._fault("after_send", plan.key)
            self._record(plan, result)
            self._fault("after_finish", plan.key)

    def _allowed(self, plan: ActionPlan, decision: Decision, now: float) -> bool:
        """Journal a decision that stops this attempt; True when it may go ahead."""
        verdicts = decision.to_dicts()
        if decision.outcome == "allowed":
            return True
        if not plan.dry_run:
            for v in decision.deciding:
                self.trips[(v.guardrail, v.outcome)] = self.trips.get(
                    (v.guardrail, v.outcome), 0) + 1
        if plan.dry_run:
            # shadow mode: say what would have happened; nobody is asked, nothing waits
            detail = f"dry run: would be {decision.outcome} ({decision.reason})"
            self.journal.finish(plan.key, "dry_run", now, error=detail, verdicts=verdicts)
            log.info("action dry run action=%s target=%s incident=%s: %s", plan.key,
                     plan.target, plan.incident_id, detail)
            self._emit(ActionResult(plan.key, plan.target, plan.executor, "dry_run", detail))
        elif decision.outcome == "blocked":
            self.journal.block(plan.key, now, decision.reason, verdicts)
            log.warning("action blocked action=%s target=%s incident=%s: %s", plan.key,
                        plan.target, plan.incident_id, decision.reason)
            self._emit(ActionResult(plan.key, plan.target, plan.executor, "blocked",
                                    decision.reason))
        elif decision.outcome == "waiting":
            assert decision.until is not None
            self.journal.hold(plan.key, decision.until, now, verdicts)
            log.warning("action waits for approval action=%s target=%s incident=%s until=%.0f"
                        ": %s (netreflex approve %s)", plan.key, plan.target, plan.incident_id,
                        decision.until, decision.reason, plan.key)
            self._fault("after_hold", plan.key)
        else:
            until = decision.until if decision.until is not None else now + 1.0
            self.journal.defer(plan.key, until, now, verdicts)
            log.info("action deferred action=%s target=%s incident=%s for %.1fs: %s",
                     plan.key, plan.target, plan.incident_id, until - now, decision.reason)
        return False

    def _emit(self, result: ActionResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def _record(self, plan: ActionPlan, result: ActionResult) -> None:
        now = self.clock()
        if not plan.dry_run:
            self.guardrails.observe(plan, result.outcome, now)
        attempts = plan.attempts + 1
        target = self.policy.targets.get(plan.target)
        max_attempts = target.max_attempts if target is not None else 5
        backoff_max = target.backoff_max if target is not None else 60.0
        if result.outcome == "wait":
            delay = max(0.0, result.retry_after if result.retry_after is not None else 1.0)
            self.journal.postpone(plan.key, now + delay, now, reason=result.detail)
            log.info("action waits action=%s target=%s incident=%s for %.1fs: %s",
                     plan.key, plan.target, plan.incident_id, delay, result.detail)
        elif result.outcome == "retry" and attempts < max_attempts:
            delay = min(backoff_max, 2.0 ** attempts) * random.uniform(0.5, 1.0)
            if result.retry_after is not None:  # the receiver said when (Retry-After)
                delay = max(delay, min(result.retry_after, RETRY_AFTER_CAP))
            self.journal.retry_at(plan.key, now + delay, now, error=result.detail,
                                  status_code=result.status_code)
            log.warning("action will retry action=%s target=%s attempt=%d in=%.1fs: %s",
                        plan.key, plan.target, attempts, delay, result.detail)
        elif result.outcome == "blocked":  # the executor's own guard (an allowlist, say)
            self.journal.block(plan.key, now, result.detail or "refused by the executor")
            log.warning("action blocked by its executor action=%s target=%s incident=%s: %s",
                        plan.key, plan.target, plan.incident_id, result.detail)
        else:
            state = "failed" if result.outcome == "retry" else result.outcome
            self.journal.finish(plan.key, state, now,
                                error=None if state in ("succeeded", "dry_run") else result.detail,
                                status_code=result.status_code)
            if state == "failed":
                log.error("action failed action=%s target=%s incident=%s after %d attempt(s): %s",
                          plan.key, plan.target, plan.incident_id, attempts, result.detail)
            else:
                log.info("action %s action=%s target=%s incident=%s %s", state, plan.key,
                         plan.target, plan.incident_id, result.detail)
        self._emit(result)


def build_executors(policy: Policy, *, state_dir: Path | None = None,
                    context: ExecutorContext | None = None) -> dict[str, Executor]:
    from actions.executors import build_executor

    return {name: build_executor(name, target, state_dir=state_dir, context=context)
            for name, target in policy.targets.items()}
