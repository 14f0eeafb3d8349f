"""SLA credits (``sla_credit``): when an outage is resolved, one credit request per
affected subscriber to the billing system, each recorded in the credit ledger.

``expand`` (on the ``resolved`` event of an outage kind) turns the decision into one
action per affected subscriber whose SLA tier has a schedule: minutes = (resolved_at -
opened_at) minus the time planned maintenance covered the incident (windows, and
silences set up before it opened; ``Maintenance.planned_seconds``), the schedule's
percentage of the monthly fee, capped (``actions.credit_config``). Subscribers whose credit
is 0 get no action; the log line counts them. The action's ``amount`` is the credit, so
``guardrails.approvals[].when.min_amount`` holds big credits for a person.

``execute`` writes the ledger row (``requested``) before the request and completes it
after: one credit per (outage, contract) whatever asks -- a second rule finds the row and
requests nothing; a retry, or the action resumed after kill -9, resends the *same*
request (same ``id`` and ``Idempotency-Key``, derived from (incident, contract) only), so
a billing system that honours the key books it once. A 409 to such a resend means the
billing system has it already. 2xx: ``accepted``; other 4xx: ``rejected``, not retried;
5xx, 429 and timeouts: retried, the row stays ``requested``.

The request is shaped as a TM Forum TMF678 (Customer Bill Management, v4/v5)
``AppliedCustomerBillingRate``, POSTed to ``{url}/appliedCustomerBillingRate``:
``appliedBillingRateType: "credit"``, ``isBilled: false``, ``billingAccount`` (a
``BillingAccountRef``: the subscriber's account, or its id when it has none),
``taxExcludedAmount`` (``Money``: ``unit`` and a negative ``value``), ``periodCoverage``
(the outage, a ``TimePeriod``), ``description`` naming the incident and the minutes, and
``characteristic`` (``AppliedBillingRateCharacteristic``: ``name``, ``valueType``,
``value``) carrying the incident, minutes, percentage, cap and schedule version.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from actions.credit_config import credit_terms, money
from actions.credit_ledger import CreditLedger, CreditRow, month_of
from actions.errors import ActionError
from actions.executors.http import HttpClient, bearer
from actions.targets import SlaCreditTarget
from actions.templates import iso
from actions.types import ActionPlan, ActionResult, ExecutorContext, Outcome
from correlator.incidents import Incident
from correlator.inventory import Inventory
from correlator.maintenance import Target, target_of

log = logging.getLogger(__name__)

USER_AGENT = "netreflex-billing/0.1"
SCHEMA = "netreflex.sla-credit/1"


class PlannedTime(Protocol):
    """What the daemon lends as ``context.maintenance`` (``Maintenance``)."""

    def planned_seconds(self, target: Target, start: float, end: float) -> float: ...


def request_id(incident_id: str, contract: str) -> str:
    """One id per (outage, contract), whichever rule or target asks: the billing side
    dedupes on it (``id`` and ``Idempotency-Key``)."""
    raw = f"{incident_id}\x1f{contract}"
    return "nrx-credit-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def planned_seconds(incident: Incident, inventory: Inventory,
                    maintenance: PlannedTime | None) -> float:
    """Maintenance time inside the outage. Without the daemon's maintenance state (tests,
    replays) the incident's own ``planned_until`` is used: planned from its start."""
    assert incident.resolved_at is not None
    start, end = incident.opened_at, incident.resolved_at
    if maintenance is not None:
        return maintenance.planned_seconds(target_of(inventory, incident), start, end)
    if not incident.planned:
        return 0.0
    until = end if incident.planned_until is None else min(end, incident.planned_until)
    return max(0.0, until - start)


def tmf678_body(row: CreditRow, credit: dict[str, Any], incident: dict[str, Any],
                now: float) -> dict[str, Any]:
    """The TMF678 ``AppliedCustomerBillingRate`` for one ledger row (see the module doc)."""
    title = incident.get("title") or incident.get("id")
    chars: list[tuple[str, str, Any]] = [
        ("incidentId", "string", row.outage), ("subscriberId", "string", row.contract),
        ("slaTier", "string", credit.get("sla_tier")),
        ("outageMinutes", "number", row.minutes), ("creditPercent", "number", row.percent),
        ("capPercent", "number", row.cap_percent),
        ("scheduleVersion", "string", row.schedule_version),
    ]
    if row.approver:
        chars.append(("approvedBy", "string", row.approver))
    return {
        "id": row.request_id,
        "@type": "AppliedCustomerBillingRate",
        "name": "SLA credit",
        "description": (f"SLA credit: {title} (incident {row.outage}), {row.minutes:g} "
                        f"minute(s) of outage after planned maintenance, {row.percent:g}% "
                        f"of the monthly fee (schedule {row.schedule_version})"),
        "date": iso(now),
        "appliedBillingRateType": "credit",
        "isBilled": False,
        "billingAccount": {"id": row.account, "@type": "BillingAccountRef",
                           "@referredType": "BillingAccount"},
        "taxExcludedAmount": {"unit": row.currency, "value": -row.amount},
        "periodCoverage": {"startDateTime": iso(incident.get("opened_at")),
                           "endDateTime": iso(incident.get("resolved_at"))},
        "characteristic": [{"name": n, "valueType": t, "value": v} for n, t, v in chars],
    }


class SlaCreditExecutor:
    kind = "sla_credit"

    def __init__(self, name: str, target: SlaCreditTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self.context = context or ExecutorContext(state_dir=state_dir)
        self.ledger = CreditLedger(state_dir if state_dir is not None
                                   else self.context.state_dir)
        self.url = str(target.url).rstrip("/") + "/appliedCustomerBillingRate"
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    # --- deciding: one action per subscriber ------------------------------------------------

    def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        t = self.target
        if plan.event != "resolved" or incident.resolved_at is None:
            log.info("sla credit: nothing on %s action=%s incident=%s (credits are decided "
                     "when an outage is resolved; use events: [resolved])", plan.event,
                     plan.key, incident.id)
            return []
        if incident.kind not in t.outage_kinds:
            log.info("sla credit: incident=%s kind %s is not an outage kind of target %s",
                     incident.id, incident.kind, self.name)
            return []
        if self.context.inventory is None:
            raise ActionError(f"sla_credit target {self.name}: no inventory to read monthly "
                              "fees and SLA tiers from (the daemon lends it)")
        inv = self.context.inventory()
        maintenance = self.context.maintenance
        total = incident.resolved_at - incident.opened_at
        planned = min(total, planned_seconds(incident, inv, maintenance))
        minutes = max(0.0, total - planned) / 60.0
        month = month_of(incident.resolved_at)
        inc = incident.to_dict()
        inc["impact"]["subscribers"] = []
        inc["impact"]["subscribers_truncated"] = True
        counts: Counter[str] = Counter()
        out: list[ActionPlan] = []
        for sid in incident.impact.subscribers:
            sub = inv.subscribers.get(sid)
            if sub is None:
                counts["unknown"] += 1
                continue
            used = (self.ledger.credited_in_month(sid, month, besides=incident.id)
                    if t.monthly_cap_percent is not None else 0.0)
            terms = credit_terms(t, sub.sla_tier, minutes, sub.monthly_revenue,
                                 credited_this_month=used)
            if terms is None:
                counts["no_schedule"] += 1
                continue
            if terms.amount <= 0:
                counts["zero"] += 1
                continue
            counts["credited"] += 1
            credit = {
                "subscriber": sid, "contract": sid, "account": sub.account or sid,
                "sla_tier": sub.sla_tier, "monthly_fee": sub.monthly_revenue,
                "outage_minutes": round(total / 60.0, 2),
                "planned_minutes": round(planned / 60.0, 2), "minutes": terms.minutes,
                "percent": terms.percent, "amount": terms.amount, "capped": terms.capped,
                "cap_percent": t.cap_percent, "monthly_cap_percent": t.monthly_cap_percent,
                "currency": t.currency, "schedule_version": t.schedule_version,
                "month": month, "request_id": request_id(incident.id, sid),
            }
            payload = {"schema": SCHEMA, "event": plan.event, "rule": plan.rule,
                       "idempotency_key": plan.key, "incident": inc, "credit": credit}
            out.append(ActionPlan(
                key=plan.key, incident_id=plan.incident_id, event=plan.event,
                rule=plan.rule, target=plan.target, executor=self.kind, payload=payload,
                recipient=sid, amount=terms.amount))
        log.info("sla credit incident=%s target=%s rule=%s minutes=%.1f (outage %.1f, "
                 "planned %.1f): %d credit(s) totalling %.2f %s; %d below the first step, "
                 "%d without a schedule for their tier, %d not in the inventory",
                 incident.id, self.name, plan.rule, minutes, total / 60.0, planned / 60.0,
                 counts["credited"], sum(p.amount or 0.0 for p in out), t.currency,
                 counts["zero"], counts["no_schedule"], counts["unknown"])
        return out

    # --- acting: the ledger row, then the request ------------------------------------------

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        credit: dict[str, Any] = dict(plan.payload.get("credit") or {})
        contract = plan.recipient
        if not credit or contract is None:
            return self._result(plan, "failed", "not an SLA credit action (no credit in the "
                                "payload): was the policy's target changed under it?")
        what = (f"{credit['amount']:.2f} {credit['currency']} to {contract} (account "
                f"{credit['account']}) for {credit['minutes']:g} min")
        if dry_run:
            return self._result(plan, "dry_run", f"would request a credit of {what} from "
                                                 f"{self.url}")
        now = self.context.clock()
        outage = plan.incident_id
        row = self.ledger.get(outage, contract)
        resend = row is not None
        if row is None:
            amount = float(credit["amount"])
            cap = credit.get("monthly_cap_percent")
            if cap is not None:  # another outage's credit may have landed since expand
                used = self.ledger.credited_in_month(contract, credit["month"], besides=outage)
                amount = min(amount, money(max(0.0, credit["monthly_fee"] * cap / 100 - used)))
            if amount <= 0:
                return self._result(plan, "succeeded", f"{contract} has had its monthly "
                                    "credit cap this month: nothing requested")
            row = self.ledger.claim(CreditRow(
                outage, contract, credit["account"], self.name, plan.key,
                credit["request_id"], credit["month"], credit["minutes"], credit["percent"],
                amount, credit["cap_percent"], credit["currency"],
                credit["schedule_version"], plan.approved_by, "requested", created_at=now))
            resend = row.action_key != plan.key
        if row.action_key != plan.key:
            return self._result(plan, "failed" if row.state == "rejected" else "succeeded",
                                f"credit for {contract} on {outage} is already "
                                f"{row.state} (action {row.action_key}, target {row.target}); "
                                "not requested again")
        if row.state != "requested":
            return self._result(plan, "succeeded" if row.state == "accepted" else "failed",
                                f"credit already {row.state}: "
                                               f"{row.detail or row.billing_id}")
        if plan.approved_by and row.approver is None:
            self.ledger.set_approver(outage, contract, plan.approved_by, now)
            row = self.ledger.get(outage, contract) or row
        headers = {"Accept": "application/json", "Idempotency-Key": row.request_id,
                   **self.target.headers, **bearer(self.target.token)}
        body = tmf678_body(row, credit, dict(plan.payload.get("incident") or {}), now)
        answer = await self._http.send("POST", self.url, body, headers=headers)
        done = self.context.clock()
        if answer.ok or (answer.status == 409 and resend):
            got = answer.body.get("id") if isinstance(answer.body, dict) else None
            billing_id = str(got or row.request_id)
            note = "accepted" if answer.ok else "already there (409 to a resend)"
            self.ledger.complete(outage, contract, "accepted", done, billing_id=billing_id,
                                 detail=f"HTTP {answer.status}: {note}")
            return self._result(plan, "succeeded", f"credit of {row.amount:.2f} "
                                f"{row.currency} to {contract} {note} as {billing_id}",
                                answer.status)
        if answer.outcome == "failed":
            self.ledger.complete(outage, contract, "rejected", done, detail=answer.detail)
            return answer.result(plan, self.name, self.kind,
                                 f"billing rejected the credit of {what}: {answer.detail}")
        if plan.attempts + 1 >= self.target.max_attempts:
            # the journal fails the action after this attempt: the ledger says so too, so
            # the row does not count against the monthly cap for ever
            self.ledger.complete(outage, contract, "rejected", done,
                                 detail=f"gave up after {plan.attempts + 1} attempt(s), last: "
                                        f"{answer.detail}; check the billing system")
        return answer.result(plan, self.name, self.kind)

    def _result(self, plan: ActionPlan, outcome: Outcome, detail: str,
                status: int | None = None) -> ActionResult:
        return ActionResult(plan.key, self.name, self.kind, outcome, detail, status)

    async def aclose(self) -> None:
        await self._http.aclose()
        self.ledger.close()
