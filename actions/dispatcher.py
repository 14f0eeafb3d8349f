"""Decide (policy) → journal → execute, with retries that survive restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from actions.journal import Journal
from actions.policy import Policy, decide
from actions.types import ActionPlan, ActionResult, Executor, idempotency_key
from correlator.incidents import IncidentEvent

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS_IN_PAYLOAD = 500


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


class Dispatcher:
    """Turns incident events into journaled actions and executes them."""

    def __init__(
        self,
        policy: Policy,
        journal: Journal,
        executors: Mapping[str, Executor],
        *,
        clock: Callable[[], float] = time.time,
        concurrency: int = 16,
        on_result: Callable[[ActionResult], None] | None = None,
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.executors = dict(executors)
        self.clock = clock
        self.on_result = on_result
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def submit(self, event: IncidentEvent) -> list[ActionPlan]:
        """Journal what policy asks for this event. Returns the newly planned actions."""
        plans: list[ActionPlan] = []
        for rule, ref in decide(self.policy, event):
            target = self.policy.targets[ref.target]
            # every update is a decision of its own; open/resolve happen once per incident
            what = f"updated#{event.incident.revision}" if event.type == "updated" else event.type
            key = idempotency_key(event.incident.id, what, rule.name, ref.target)
            dry = self.policy.dry_run if rule.dry_run is None else rule.dry_run
            plans.append(ActionPlan(
                key=key, incident_id=event.incident.id, event=event.type, rule=rule.name,
                target=ref.target, executor=target.kind,
                payload=build_payload(event, rule.name, key), dry_run=dry,
            ))
        fresh = self.journal.plan(plans, self.clock()) if plans else []
        for p in fresh:
            log.info("action planned action=%s incident=%s event=%s rule=%s target=%s%s",
                     p.key, p.incident_id, p.event, p.rule, p.target,
                     " (dry run)" if p.dry_run else "")
        if fresh:
            self._wake.set()
        return fresh

    async def run(self, stopping: asyncio.Event) -> None:
        """Execute due actions until ``stopping`` is set; then let in-flight ones finish."""
        while not stopping.is_set():
            now = self.clock()
            for plan in self.journal.due(now):
                if plan.key in self._inflight:
                    continue
                task = asyncio.create_task(self._one(plan), name=f"action:{plan.key}")
                self._inflight[plan.key] = task
                task.add_done_callback(self._done)
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
        self._inflight.pop(task.get_name().removeprefix("action:"), None)

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
        async with self._sem:
            now = self.clock()
            if executor is None:
                self.journal.finish(plan.key, "failed", now,
                                    error=f"no executor for target {plan.target}")
                return
            self.journal.start(plan.key, now)
            try:
                result = await executor.execute(plan, dry_run=plan.dry_run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an executor bug must not stop the others
                log.exception("executor crashed action=%s target=%s", plan.key, plan.target)
                result = ActionResult(plan.key, plan.target, executor.kind, "retry",
                                      f"executor error: {type(exc).__name__}: {exc}")
            self._record(plan, result)

    def _record(self, plan: ActionPlan, result: ActionResult) -> None:
        now = self.clock()
        attempts = plan.attempts + 1
        target = self.policy.targets.get(plan.target)
        max_attempts = target.max_attempts if target is not None else 5
        backoff_max = target.backoff_max if target is not None else 60.0
        if result.outcome == "retry" and attempts < max_attempts:
            delay = min(backoff_max, 2.0 ** attempts) * random.uniform(0.5, 1.0)
            self.journal.retry_at(plan.key, now + delay, now, error=result.detail,
                                  status_code=result.status_code)
            log.warning("action will retry action=%s target=%s attempt=%d in=%.1fs: %s",
                        plan.key, plan.target, attempts, delay, result.detail)
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
        if self.on_result is not None:
            self.on_result(result)


def build_executors(policy: Policy) -> dict[str, Executor]:
    from actions.executors import build_executor

    return {name: build_executor(name, target) for name, target in policy.targets.items()}
