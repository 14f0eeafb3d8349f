"""Customer messages: an outage notice and an all-clear, one action per subscriber.

What the e-mail (``email.py``) and SMS (``sms.py``) executors share; each of them only
builds and sends one message.

Who gets what (``expand``, when policy decides):

- ``opened`` -- and ``updated``, if a rule lists it: one action per affected subscriber
  who has the channel's contact (e-mail address, phone number) *and* consent
  (``consent_email``, ``consent_sms``). Subscribers without consent (opted out) or
  without a contact are left out and counted in the log line of the decision (``notify
  ... skipped: 3 without consent``), which answers "why didn't X get a message?". On
  ``updated`` only subscribers that joined the impact get one: whoever already has an
  outage action of this incident on this channel is left out. Each action waits out
  ``hold_down`` after the incident opened (``ActionPlan.not_before``), so a flap sends
  nothing.
- ``resolved``: the all-clear, only to subscribers whose outage message of this incident
  succeeded on this channel (read from the journal), on the same channel.
- ``merged``, and anything else: nothing (a merged incident is still down under its new
  root, whose messages take over).
- Planned work (maintenance windows, silences): nothing. Degraded service (the incident's
  ``impact.service`` is ``degraded``: congestion, errors, latency ...): nothing unless the
  target says ``degraded: true``; it then sends the ``degraded_*`` texts.

At every attempt (``execute``), before anything is sent:

- outage notice: the incident as the correlator has it *now*. Resolved or merged →
  ``blocked`` ("resolved within the 5 min hold-down: no message for a flap"); planned →
  ``blocked``; still inside the hold-down → ``wait``.
- all-clear: the outage message it follows must have succeeded (still in flight →
  ``wait``; failed or blocked → ``blocked``).
- consent and contact are read again from the current inventory: an opt-out that
  arrives after the decision is honoured.
- never two copies: when two rules (or two targets of the same kind) message one
  subscriber about one incident, the action that succeeded -- or, while none has, the one
  with the smallest key -- is the only one sent; the others are ``blocked`` naming it.

Exactly once: the SMS carries ``Idempotency-Key`` = the action key, and the e-mail a
``Message-ID`` derived from it, so a retry after a crash is recognisable. SMTP has no
server-side idempotency, though: if the process dies (kill -9) exactly between the
server's answer to DATA and the journal write, the restarted daemon sends the e-mail
again -- with the same Message-ID, which mail clients and many servers use to drop the
copy. Within one run, a timeout is treated the same way (retried, same Message-ID).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from actions.errors import ActionError
from actions.journal import JournalRow
from actions.targets import NotifyTarget
from actions.templates import subscriber_variables
from actions.types import ActionPlan, ActionResult, ExecutorContext
from correlator.incidents import Incident
from correlator.inventory import Inventory

log = logging.getLogger(__name__)

Phase = Literal["outage", "all_clear"]
OUTAGE_EVENTS = ("opened", "updated")
PENDING = ("planned", "running", "waiting_approval")
IN_FLIGHT_RECHECK = 30.0  # seconds: an all-clear waits this long for its outage message
ALL_ROWS = 10_000_000  # journal reads of one incident are not truncated


def mask(address: str) -> str:
    """Enough of an address to recognise it in a log, not to harvest it."""
    if "@" in address:
        user, _, domain = address.partition("@")
        return f"{user[:1]}***@{domain}"
    return address[:4] + "*" * max(0, len(address) - 6) + address[-2:]


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


class NotifyExecutor:
    """Fan-out and the checks before every send; subclasses set ``kind``, ``contact``
    (the subscriber attribute with the address), ``consent`` (the one with the consent)
    and implement ``send``."""

    kind = "notify"
    contact = "email"
    consent = "consent_email"
    channel = "e-mail"

    def __init__(self, name: str, target: NotifyTarget, *, state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.notify = target
        self.context = context if context is not None else ExecutorContext()

    # --- deciding: one action per subscriber ---------------------------------------------

    def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        if plan.event in OUTAGE_EVENTS:
            return self._outage(plan, incident)
        if plan.event == "resolved":
            return self._all_clear(plan, incident)
        log.info("notify target=%s incident=%s event=%s: no customer message on %s",
                 self.name, incident.id, plan.event, plan.event)
        return []

    def _outage(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        if incident.planned:
            log.info("notify target=%s incident=%s event=%s: planned work, no outage message",
                     self.name, incident.id, plan.event)
            return []
        degraded = getattr(incident.impact, "service", "down") == "degraded"
        if degraded and not self.notify.degraded:
            log.info("notify target=%s incident=%s event=%s: service degraded, not down; "
                     "no message (degraded: false)", self.name, incident.id, plan.event)
            return []
        inv = self._inventory()
        known = {r.recipient for r in self._rows(incident.id, OUTAGE_EVENTS)}
        skipped = {"without consent": 0, f"without {self.channel} contact": 0,
                   "already told": 0, "not in the inventory": 0}
        out: list[ActionPlan] = []
        payload = self._payload(plan.payload, "outage")
        not_before = incident.opened_at + self.notify.hold_down
        for sid in incident.impact.subscribers:
            rec = inv.subscribers.get(sid)
            if sid in known:
                skipped["already told"] += 1
            elif rec is None:
                skipped["not in the inventory"] += 1
            elif not getattr(rec, self.contact):
                skipped[f"without {self.channel} contact"] += 1
            elif not getattr(rec, self.consent):
                skipped["without consent"] += 1
            else:
                out.append(replace(plan, recipient=sid, payload=payload,
                                   not_before=not_before))
        log.info("notify target=%s incident=%s event=%s: %d %s outage message(s) planned, "
                 "not before +%s; skipped: %s", self.name, incident.id, plan.event, len(out),
                 self.channel, _span(self.notify.hold_down),
                 ", ".join(f"{n} {why}" for why, n in skipped.items()))
        return out

    def _all_clear(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        if incident.closed_by is not None:
            log.warning("notify target=%s incident=%s event=resolved: closed by %s, not seen "
                        "recovering: no %s all-clear (tell customers by hand if service is "
                        "back)", self.name, incident.id, incident.closed_by, self.channel)
            return []
        told: dict[str, JournalRow] = {}
        usable = ("succeeded", "running", *(("dry_run",) if plan.dry_run else ()))
        rank = {"succeeded": 0, "running": 1, "dry_run": 2}
        for row in self._rows(incident.id, OUTAGE_EVENTS):
            sid = row.recipient
            if sid is None or row.state not in usable:
                continue
            best = told.get(sid)
            if best is None or rank[row.state] < rank[best.state]:
                told[sid] = row
        out = [replace(plan, recipient=sid, payload=self._payload(
                   plan.payload, "all_clear", told_by=row.key))
               for sid, row in sorted(told.items())]
        log.info("notify target=%s incident=%s event=resolved: %d %s all-clear(s) planned "
                 "(to the subscribers whose outage message went out)", self.name,
                 incident.id, len(out), self.channel)
        return out

    def _payload(self, base: Mapping[str, Any], phase: Phase, **extra: str) -> dict[str, Any]:
        """The decision's payload without the list of every affected subscriber (one row
        per subscriber would repeat it each time), plus what this message is."""
        out = dict(base)
        inc = dict(out.get("incident") or {})
        imp = dict(inc.get("impact") or {})
        if imp.get("subscribers"):
            imp["subscribers"] = []
            imp["subscribers_omitted"] = True
        inc["impact"] = imp
        out["incident"] = inc
        out["notify"] = {"phase": phase, "channel": self.kind, **extra}
        return out

    # --- sending ---------------------------------------------------------------------------

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        note = plan.payload.get("notify")
        if plan.recipient is None or not isinstance(note, Mapping):
            return self._result(plan, "failed", "not a message to one subscriber (the "
                                "decision could not be fanned out; see the log)")
        phase: Phase = "all_clear" if note.get("phase") == "all_clear" else "outage"
        stop = self._outage_check(plan) if phase == "outage" else self._all_clear_check(
            plan, str(note.get("told_by", "")))
        if stop is None:
            stop = self._duplicate_check(plan, phase)
        if stop is not None:
            return stop
        try:
            rec = self._inventory().subscribers.get(plan.recipient)
        except ActionError as exc:
            return self._result(plan, "retry", str(exc))
        if rec is None:
            return self._result(plan, "blocked", f"subscriber {plan.recipient} is no longer "
                                "in the inventory")
        address = getattr(rec, self.contact)
        if not getattr(rec, self.consent):
            return self._result(plan, "blocked", f"subscriber {plan.recipient} has no "
                                f"{self.channel} consent now (opted out): not sent")
        if not address:
            return self._result(plan, "blocked", f"subscriber {plan.recipient} has no "
                                f"{self.channel} contact now: not sent")
        variables = subscriber_variables(plan.payload, sid=rec.id, name=rec.name,
                                         account=rec.account, sla_tier=rec.sla_tier)
        degraded = (plan.payload.get("incident") or {}).get("impact", {}).get(
            "service") == "degraded"
        what = "all-clear" if phase == "all_clear" else "outage message"
        if dry_run:
            return self._result(plan, "dry_run", f"would send the {what} by {self.channel} "
                                f"to {plan.recipient} ({mask(address)})")
        return await self.send(plan, address, variables, phase, degraded)

    async def send(self, plan: ActionPlan, address: str, variables: Mapping[str, object],
                   phase: Phase, degraded: bool) -> ActionResult:
        raise NotImplementedError

    def _outage_check(self, plan: ActionPlan) -> ActionResult | None:
        hold = self.notify.hold_down
        refusal = None if self.context.incident is None else self._incident_refusal(
            plan, self.context.incident(plan.incident_id), hold)
        if refusal is not None:
            return self._result(plan, "blocked", refusal)
        opened = (plan.payload.get("incident") or {}).get("opened_at")
        if isinstance(opened, int | float):
            left = float(opened) + hold - self.context.clock()
            if left > 0:
                return ActionResult(plan.key, self.name, self.kind, "wait",
                                    f"hold-down: {left:.0f}s left of {_span(hold)}",
                                    retry_after=left)
        return None

    @staticmethod
    def _incident_refusal(plan: ActionPlan, now: Incident | None, hold: float) -> str | None:
        """Why the incident as it is now gets no outage message, or None."""
        if now is None:
            return f"incident {plan.incident_id} is no longer known: no outage message"
        if now.state == "merged":
            return f"incident merged into {now.merged_into}: that incident's messages cover it"
        if now.state == "resolved":
            lasted = (now.resolved_at or now.updated_at) - now.opened_at
            if lasted <= hold:
                return f"resolved within the {_span(hold)} hold-down: no message for a flap"
            return (f"resolved after {_span(round(lasted))}, before the message could go "
                    "out: no outage message")
        if now.planned:
            return (f"the incident is planned work ({', '.join(now.planned_by) or 'maintenance'})"
                    ": no outage message")
        return None

    def _all_clear_check(self, plan: ActionPlan, told_by: str) -> ActionResult | None:
        journal = self.context.journal
        if journal is None:
            return None
        row = journal.get(told_by) if told_by else None
        if row is None:
            return self._result(plan, "blocked", "no outage message to follow up: no "
                                "all-clear")
        if row.state in PENDING:
            return ActionResult(plan.key, self.name, self.kind, "wait",
                                f"the outage message {told_by} is still {row.state}",
                                retry_after=IN_FLIGHT_RECHECK)
        if row.state == "succeeded" or (plan.dry_run and row.state == "dry_run"):
            return None
        return self._result(plan, "blocked", f"the outage message {told_by} was not "
                            f"delivered ({row.state}): no all-clear")

    def _duplicate_check(self, plan: ActionPlan, phase: Phase) -> ActionResult | None:
        events = OUTAGE_EVENTS if phase == "outage" else ("resolved",)
        for row in self._rows(plan.incident_id, events, recipient=plan.recipient):
            if row.key == plan.key:
                continue
            what = (f"another action ({row.key}, rule {row.rule}, target {row.target}) "
                    f"{{}} this {self.channel} {phase.replace('_', '-')} message to "
                    f"{plan.recipient}")
            if row.state == "succeeded":
                return self._result(plan, "blocked",
                                    what.format("sent") + ": never two copies")
            if row.state in PENDING and row.key < plan.key:
                # the first (by key) of the copies goes; the others wait to see whether it
                # is delivered -- it may yet be denied, expire or fail, and then the next
                # one goes: never two copies, but never none either
                return ActionResult(plan.key, self.name, self.kind, "wait",
                                    what.format(f"is {row.state} and would send"),
                                    retry_after=IN_FLIGHT_RECHECK)
        return None

    # --- helpers ---------------------------------------------------------------------------

    def _inventory(self) -> Inventory:
        if self.context.inventory is None:
            raise ActionError(f"{self.kind} target {self.name}: no inventory to read "
                              "subscriber contacts and consent from")
        return self.context.inventory()

    def _rows(self, incident_id: str, events: tuple[str, ...],
              recipient: str | None = None) -> list[JournalRow]:
        """This channel's actions of one incident (and one subscriber)."""
        journal = self.context.journal
        if journal is None:
            return []
        where = (f"WHERE incident_id=? AND executor=? AND event IN "
                 f"({','.join('?' * len(events))})")
        args: tuple[object, ...] = (incident_id, self.kind, *events)
        if recipient is not None:
            where += " AND recipient=?"
            args += (recipient,)
        return journal.rows(where, args, limit=ALL_ROWS)

    def _result(self, plan: ActionPlan, outcome: Literal["succeeded", "failed", "retry",
                                                         "dry_run", "blocked"],
                detail: str, status: int | None = None) -> ActionResult:
        return ActionResult(plan.key, self.name, self.kind, outcome, detail, status)

    async def aclose(self) -> None:
        return None
