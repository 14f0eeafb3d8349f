"""TMF621 trouble tickets (``tmf621_ticket``) and field work orders (``tmf621_dispatch``).

One action per incident event, no fan-out:

- ``opened``: POST /troubleTicket, and keep the returned id (``TicketStore``);
- ``updated``: GET the ticket's notes, PATCH the new impact and a note (a merge patch);
  if no ticket is known yet it is created instead, with the current impact;
- ``resolved`` / ``merged``: PATCH ``status: resolved``; if the ticket's creation has not
  succeeded yet this is retried (the create may still be on its way).

Creates carry ``Idempotency-Key`` = one key per (target, incident), not per action: the
create of ``opened`` and a create from ``updated`` (racing it, or after it timed out with
the ticket made) are the same request to a receiver that honours the key, so an incident
never gets two tickets. ``externalId`` is the incident id. PATCHes carry the action's key,
and the note they add has the action's key as its id, so a replay adds no second note.
Actions on one incident run one at a time in this executor.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

from actions.executors import tmf621
from actions.executors.http import Answer, HttpClient, bearer
from actions.executors.ticket_store import TicketStore
from actions.targets import DispatchTarget, TicketTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext, idempotency_key

USER_AGENT = "netreflex-tmf621/0.1"


class _Tmf621Client:
    """What the two executors share: URLs, headers, the create request, the store."""

    kind = ""

    def __init__(self, name: str, target: TicketTarget | DispatchTarget,
                 state_dir: Path | None) -> None:
        self.name = name
        self.target = target
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)
        self.store = TicketStore(state_dir)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self.base = str(target.url).rstrip("/") + "/troubleTicket"

    def _lock(self, incident_id: str) -> asyncio.Lock:
        lock = self._locks.get(incident_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[incident_id] = lock
        return lock

    def _headers(self, key: str) -> dict[str, str]:
        return {"Accept": "application/json", "Idempotency-Key": key, **self.target.headers,
                **bearer(self.target.token)}

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.base}/{quote(ticket_id, safe='')}"

    def creation_key(self, incident_id: str) -> str:
        return idempotency_key(incident_id, "create", self.kind, self.name)

    async def create(self, plan: ActionPlan) -> ActionResult:
        body = tmf621.create_body(self.target, plan.payload, plan.key, time.time())
        answer = await self._http.send("POST", self.base, body,
                                       headers=self._headers(self.creation_key(plan.incident_id)))
        if not answer.ok:
            return self._result(plan, answer, "create")
        reply = answer.body if isinstance(answer.body, dict) else {}
        ticket_id = reply.get("id")
        if not isinstance(ticket_id, str | int) or isinstance(ticket_id, bool) or not str(
                ticket_id):
            return ActionResult(plan.key, self.name, self.kind, "failed",
                                f"create: HTTP {answer.status} but the answer has no ticket id",
                                answer.status)
        href = reply.get("href")
        status = str(reply.get("status") or "acknowledged")
        self.store.put(self.name, plan.incident_id, str(ticket_id),
                       href if isinstance(href, str) else None, status, time.time())
        return ActionResult(plan.key, self.name, self.kind, "succeeded",
                            f"created ticket {ticket_id} (HTTP {answer.status})", answer.status)

    def _result(self, plan: ActionPlan, answer: Answer, what: str) -> ActionResult:
        return answer.result(plan, self.name, self.kind, f"{what}: {answer.detail}")

    async def aclose(self) -> None:
        await self._http.aclose()
        self.store.close()


class TicketExecutor(_Tmf621Client):
    kind = "tmf621_ticket"
    target: TicketTarget

    def __init__(self, name: str, target: TicketTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        super().__init__(name, target, state_dir)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        async with self._lock(plan.incident_id):
            ref = self.store.get(self.name, plan.incident_id)
            if dry_run:
                return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                    self._would(plan.event, ref.ticket_id if ref else None))
            if plan.event == "opened" or (plan.event == "updated" and ref is None):
                if ref is not None:
                    return ActionResult(plan.key, self.name, self.kind, "succeeded",
                                        f"ticket {ref.ticket_id} already exists")
                return await self.create(plan)
            if plan.event not in ("updated", "resolved", "merged"):
                return ActionResult(plan.key, self.name, self.kind, "failed",
                                    f"no ticket operation for event {plan.event!r}")
            if ref is None:
                return ActionResult(plan.key, self.name, self.kind, "retry",
                                    f"no ticket recorded for {plan.incident_id} yet (its "
                                    "creation has not succeeded); cannot resolve it")
            return await self._patch(plan, ref.ticket_id)

    def _would(self, event: str, ticket_id: str | None) -> str:
        resolving = event in ("resolved", "merged")
        if ticket_id is not None and event != "opened":
            what = "resolve" if resolving else "update"
            return f"would PATCH ({what}) {self.ticket_url(ticket_id)}"
        if resolving:
            return "would PATCH (resolve) the incident's ticket (none recorded yet)"
        return f"would POST a {self.target.ticket_type} ticket to {self.base}"

    async def _patch(self, plan: ActionPlan, ticket_id: str) -> ActionResult:
        url = self.ticket_url(ticket_id)
        resolving = plan.event in ("resolved", "merged")
        current = await self._http.send("GET", url + "?fields=status,note",
                                        headers=self._headers(plan.key))
        if not current.ok:
            return self._result(plan, current, f"read ticket {ticket_id}")
        ticket: dict[str, Any] = current.body if isinstance(current.body, dict) else {}
        status = str(ticket.get("status") or "")
        done = tmf621.DONE if resolving else tmf621.TERMINAL
        if status in done:
            if resolving:
                self.store.set_status(self.name, plan.incident_id, status, time.time())
            return ActionResult(plan.key, self.name, self.kind, "succeeded",
                                f"ticket {ticket_id} is already {status}; left as it is",
                                current.status)
        notes = ticket.get("note") if isinstance(ticket.get("note"), list) else []
        build = tmf621.resolve_patch if resolving else tmf621.update_patch
        body = build(self.target, plan.payload, plan.key, time.time(), notes or [])
        answer = await self._http.send("PATCH", url, body, headers=self._headers(plan.key),
                                       content_type=tmf621.MERGE_PATCH)
        what = "resolve" if resolving else "update"
        if not answer.ok:
            return self._result(plan, answer, f"{what} ticket {ticket_id}")
        if resolving:
            self.store.set_status(self.name, plan.incident_id, "resolved", time.time())
        return ActionResult(plan.key, self.name, self.kind, "succeeded",
                            f"{what}d ticket {ticket_id} (HTTP {answer.status})", answer.status)


class DispatchExecutor(_Tmf621Client):
    """A work order on ``opened``; every other event is acknowledged and left alone."""

    kind = "tmf621_dispatch"
    target: DispatchTarget

    def __init__(self, name: str, target: DispatchTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        super().__init__(name, target, state_dir)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        if plan.event != "opened":
            return ActionResult(plan.key, self.name, self.kind,
                                "dry_run" if dry_run else "succeeded",
                                f"skipped: work orders are created on opened only, "
                                f"not on {plan.event}")
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would POST a {self.target.ticket_type} work order to "
                                f"{self.base}")
        async with self._lock(plan.incident_id):
            ref = self.store.get(self.name, plan.incident_id)
            if ref is not None:
                return ActionResult(plan.key, self.name, self.kind, "succeeded",
                                    f"work order {ref.ticket_id} already exists")
            return await self.create(plan)
