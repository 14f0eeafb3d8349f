"""Offer recommendations to a CRM: one POST per affected subscriber.

Body: ``{"recommendation_id", "subscriber", "offer_code", "reason", "evidence", "source"}``
with ``Idempotency-Key`` = ``recommendation_id``, derived from the action key and the
subscriber, so a retried action re-sends only what the CRM drops as duplicates. The
requests go one after the other and stop at the first that should be retried; the action
succeeds when every subscriber's recommendation was accepted.

An incident about one subscriber (``incident.subscriber``: plan saturation, repeated
failures) is one action for that subscriber alone (``expand``), so the per-subscriber
guardrails (message caps, ``per: subscriber`` rate limits) count it; its evidence carries
the detection's numbers (``detection``: rate, plan, utilization, window ...) and, for
plan saturation, the subscriber's plan (``plan_mbps``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from actions.executors.http import HttpClient, bearer
from actions.targets import CrmOfferTarget
from actions.templates import incident_variables, render
from actions.types import ActionPlan, ActionResult, ExecutorContext
from correlator.incidents import Incident

USER_AGENT = "netreflex-crm/0.1"


def recommendation_id(key: str, subscriber: str) -> str:
    return f"{key}-{hashlib.sha256(subscriber.encode()).hexdigest()[:12]}"


def recommendations(target: CrmOfferTarget, plan: ActionPlan) -> list[dict[str, Any]]:
    v = incident_variables(plan.payload)
    inc: Mapping[str, Any] = plan.payload.get("incident") or {}
    imp: Mapping[str, Any] = inc.get("impact") or {}
    renewal = set(imp.get("contracts_near_renewal") or [])
    repeat = set(imp.get("repeat_subscribers") or [])
    reason = render(target.reason, v)
    evidence = {
        "incident_id": plan.incident_id,
        "event": plan.event,
        "kind": v["incident.kind"],
        "title": v["incident.title"],
        "severity": v["incident.severity"],
        "device": v["incident.device"],
        "port": inc.get("port"),
        "site": inc.get("site"),
        "opened_at": v["incident.opened_at"],
        "subscriber_count": v["impact.subscriber_count"],
        "revenue_at_risk": v["impact.revenue_at_risk"],
        "priority": v["incident.priority"],
    }
    if inc.get("summary"):
        evidence["summary"] = inc["summary"]
    detection: Mapping[str, Any] = inc.get("evidence") or {}
    if detection:
        evidence["detection"] = dict(detection)  # the numbers that raised the condition
    plan_bps = detection.get("plan_bps")
    if inc.get("kind") == "plan_saturation" and isinstance(plan_bps, int | float):
        evidence["plan_mbps"] = plan_bps / 1e6  # the plan the subscriber has outgrown
    # a plan made for one subscriber (``ActionPlan.recipient``) recommends to that one only,
    # under its own key; otherwise every affected subscriber, up to max_subscribers
    recipient = plan.recipient
    subs = [recipient] if recipient else list(imp.get("subscribers") or [])
    out = []
    for sub in subs[: target.max_subscribers]:
        sid = str(sub)
        out.append({
            "recommendation_id": plan.key if recipient else recommendation_id(plan.key, sid),
            "subscriber": sid,
            "offer_code": target.offer_code,
            "reason": reason,
            "evidence": {**evidence, "contract_near_renewal": sid in renewal,
                         "repeat_subscriber": sid in repeat},
            "source": "netreflex",
        })
    return out


class CrmOfferExecutor:
    kind = "crm_offer"

    def __init__(self, name: str, target: CrmOfferTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    def expand(self, plan: ActionPlan, incident: Incident) -> list[ActionPlan]:
        """An incident about one subscriber: one action for them (and only them), keyed
        and capped per subscriber; any other incident: the one action, for everyone it
        affects."""
        if incident.subscriber:
            return [replace(plan, recipient=incident.subscriber)]
        return [plan]

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        recs = recommendations(self.target, plan)
        if not recs:
            return ActionResult(plan.key, self.name, self.kind,
                                "dry_run" if dry_run else "succeeded",
                                "no affected subscriber: nothing to recommend")
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would POST {len(recs)} recommendation(s) of "
                                f"{self.target.offer_code} to {self.target.url}")
        failed: list[str] = []
        status: int | None = None
        for rec in recs:
            headers = {"Accept": "application/json",
                       "Idempotency-Key": rec["recommendation_id"], **self.target.headers,
                       **bearer(self.target.token)}
            answer = await self._http.send("POST", str(self.target.url), rec, headers=headers)
            status = answer.status
            if answer.outcome == "retry":
                return answer.result(plan, self.name, self.kind,
                                     f"subscriber {rec['subscriber']}: {answer.detail}")
            if answer.outcome == "failed":
                failed.append(f"{rec['subscriber']}: {answer.detail}")
        if failed:
            return ActionResult(plan.key, self.name, self.kind, "failed",
                                f"{len(failed)} of {len(recs)} rejected; " + "; ".join(failed[:3]),
                                status)
        return ActionResult(plan.key, self.name, self.kind, "succeeded",
                            f"{len(recs)} recommendation(s) accepted", status)

    async def aclose(self) -> None:
        await self._http.aclose()
