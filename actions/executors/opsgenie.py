"""Opsgenie Alert API v2: one alert per incident (``alias`` = the incident id).

``opened`` creates the alert (POST /v2/alerts; Opsgenie de-duplicates on the alias of an
open alert, so a replay does not page twice), ``updated`` adds a note with the new impact
(POST /v2/alerts/{alias}/notes?identifierType=alias), ``resolved`` and ``merged`` close
it (POST /v2/alerts/{alias}/close?identifierType=alias). Opsgenie answers 202 and
processes the request asynchronously. Auth: ``Authorization: GenieKey <api key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from actions.executors.http import HttpClient
from actions.targets import OpsgenieTarget, priority_label
from actions.templates import incident_variables, render
from actions.types import ActionPlan, ActionResult, ExecutorContext

USER_AGENT = "netreflex-opsgenie/0.1"
LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512, "note": 25000}


def _details(plan: ActionPlan, v: Mapping[str, object]) -> dict[str, str]:
    return {
        "incident_id": plan.incident_id,
        "action_key": plan.key,
        "severity": str(v["incident.severity"]),
        "site": str(v["incident.site"]),
        "device": str(v["incident.device"]),
        "port": str(v["incident.port"]),
        "subscribers": str(v["impact.subscriber_count"]),
        "revenue_at_risk": f"{v['impact.revenue_at_risk']:.2f}",
        "revenue_by_tier": str(v["impact.revenue_by_tier"]),
        "priority_score": f"{v['incident.priority']:.2f}",
    }


def request(target: OpsgenieTarget, plan: ActionPlan) -> tuple[str, dict[str, Any]]:
    """(path with query, body) of the request for one action."""
    v = incident_variables(plan.payload)
    alias = plan.incident_id[:LIMITS["alias"]]
    ref = quote(alias, safe="")
    common = {"user": target.user, "source": target.source}
    if plan.event in ("resolved", "merged"):
        inc: Mapping[str, Any] = plan.payload.get("incident") or {}
        why = (f"merged into {inc['merged_into']}" if inc.get("merged_into")
               else "incident resolved")
        return (f"/v2/alerts/{ref}/close?identifierType=alias",
                {**common, "note": f"{why} (netreflex, action {plan.key})"})
    if plan.event == "updated":
        return (f"/v2/alerts/{ref}/notes?identifierType=alias",
                {**common, "note": render(target.note, v)[:LIMITS["note"]]})
    score = v["incident.priority"]
    assert isinstance(score, float)
    body: dict[str, Any] = {
        **common,
        "message": render(target.message, v)[:LIMITS["message"]] or plan.incident_id,
        "alias": alias,
        "description": render(target.description, v)[:LIMITS["description"]],
        "entity": render(target.entity, v)[:LIMITS["entity"]],
        "priority": priority_label(target.priority, score),
        "tags": list(target.tags),
        "details": _details(plan, v),
    }
    if target.responders:
        body["responders"] = [r.model_dump(exclude_none=True) for r in target.responders]
    return "/v2/alerts", body


class OpsgenieExecutor:
    kind = "opsgenie"

    def __init__(self, name: str, target: OpsgenieTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self.base = str(target.base_url).rstrip("/")
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        path, body = request(self.target, plan)
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would POST {self.base}{path}")
        headers = {"Accept": "application/json",
                   "Authorization": "GenieKey " + self.target.api_key.get_secret_value()}
        answer = await self._http.send("POST", self.base + path, body, headers=headers)
        what = path.split("?", 1)[0].rsplit("/", 1)[-1]
        what = "create" if what == "alerts" else what
        return answer.result(plan, self.name, self.kind, f"{what}: {answer.detail}")

    async def aclose(self) -> None:
        await self._http.aclose()
