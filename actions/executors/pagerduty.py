"""PagerDuty Events API v2: one alert per incident (``dedup_key`` = the incident id).

``opened`` and ``updated`` send ``trigger`` (PagerDuty folds a trigger with a known
dedup_key into the open alert, so a replay or an update never opens a second one);
``resolved`` and ``merged`` send ``resolve``. The answer is 202 ``{"status": "success"}``;
400 (an invalid event) is not retried, 429 and 5xx are. The routing key travels in the
body, as the API wants it; the action's key goes in ``custom_details.action_key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actions.executors.http import HttpClient
from actions.targets import PagerDutyTarget
from actions.templates import incident_variables, iso, render
from actions.types import ActionPlan, ActionResult, ExecutorContext

USER_AGENT = "netreflex-pagerduty/0.1"
MAX_SUMMARY = 1024
MAX_FIELD = 255


def custom_details(plan: ActionPlan, variables: Mapping[str, object]) -> dict[str, Any]:
    inc: Mapping[str, Any] = plan.payload.get("incident") or {}
    imp: Mapping[str, Any] = inc.get("impact") or {}
    return {
        "incident_id": plan.incident_id,
        "action_key": plan.key,
        "event": plan.event,
        "rule": plan.rule,
        "title": variables["incident.title"],
        "kind": variables["incident.kind"],
        "device": variables["incident.device"],
        "port": inc.get("port"),
        "site": inc.get("site"),
        "subscriber_count": variables["impact.subscriber_count"],
        "revenue_at_risk": variables["impact.revenue_at_risk"],
        "revenue_by_tier": dict(imp.get("revenue_by_tier") or {}),
        "subscribers_by_tier": dict(imp.get("subscribers_by_tier") or {}),
        "devices": list(imp.get("devices") or [])[:50],
        "priority": variables["incident.priority"],
        "priority_breakdown": list(inc.get("priority_breakdown") or []),
        "planned": bool(inc.get("planned")),
    }


def event_body(target: PagerDutyTarget, plan: ActionPlan) -> dict[str, Any]:
    """The Events API v2 body for one action."""
    body: dict[str, Any] = {
        "routing_key": target.routing_key.get_secret_value(),
        "dedup_key": plan.incident_id[:MAX_FIELD],
    }
    if plan.event in ("resolved", "merged"):
        body["event_action"] = "resolve"
        return body
    v = incident_variables(plan.payload)
    sev = str(v["incident.severity"])
    payload: dict[str, Any] = {
        "summary": render(target.summary, v)[:MAX_SUMMARY] or plan.incident_id,
        "source": render(target.source, v)[:MAX_FIELD] or "netreflex",
        "severity": next((s for k, s in target.severity.items() if k == sev), "error"),
        "custom_details": custom_details(plan, v),
    }
    ts = iso(plan.payload.get("event_ts"))
    if ts:
        payload["timestamp"] = ts
    for field, template in (("component", target.component), ("group", target.group),
                            ("class", target.event_class)):
        text = render(template, v)[:MAX_FIELD]
        if text:
            payload[field] = text
    body.update(event_action="trigger", payload=payload, client=target.client)
    if target.client_url is not None:
        body["client_url"] = str(target.client_url)
    return body


class PagerDutyExecutor:
    kind = "pagerduty"

    def __init__(self, name: str, target: PagerDutyTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self.url = str(target.base_url).rstrip("/") + "/v2/enqueue"
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        body = event_body(self.target, plan)
        action = body["event_action"]
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would send {action} for dedup_key {body['dedup_key']} "
                                f"to {self.url}")
        answer = await self._http.send("POST", self.url, body,
                                       headers={"Accept": "application/json"})
        return answer.result(plan, self.name, self.kind, f"{action}: {answer.detail}")

    async def aclose(self) -> None:
        await self._http.aclose()
