"""What the supervisor API accepts and answers, and the OpenAPI document that says so.

Every response body is built from one of the models here and every query parameter is
parsed from its ``Param``; the document served at ``/api/v1/openapi.json`` is generated
from the same objects, so it describes exactly what is accepted and sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from actions.journal import JournalRow
from actions.policy import Match
from correlator.incidents import Impact, Incident

IncidentStateName = Literal["open", "resolved", "merged"]
EventName = Literal["opened", "updated", "resolved", "merged"]
ActionState = Literal["planned", "waiting_approval", "running", "succeeded", "failed",
                      "blocked", "dry_run"]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorOut(Out):
    error: str = Field(description="what is wrong and, where it helps, how to fix it")
    field: str | None = Field(default=None,
                              description="the query parameter, header or body field at "
                                          "fault, if one is")


class HealthOut(Out):
    status: Literal["ok", "stopping"]
    version: str
    started_at: float = Field(description="Unix time the API started")
    uptime_seconds: float
    devices: int = Field(description="devices being polled")
    open_incidents: int
    incidents_by_state: dict[str, int]
    action_backlog: int = Field(description="actions planned or running")
    actions_by_state: dict[str, int]
    policy_rules: int
    policy_dry_run: bool


class ImpactSummaryOut(Out):
    subscriber_count: int
    revenue_at_risk: float = Field(description="monthly revenue of the affected subscribers")
    revenue_by_tier: dict[str, float]
    subscribers_by_tier: dict[str, int]


class ImpactOut(ImpactSummaryOut):
    devices: list[str] = Field(description="devices cut off by the root cause")
    subscribers: list[str] | None = Field(
        description="affected subscriber ids; null when asked for with subscribers=false"
    )
    contracts_near_renewal: list[str] | None = Field(
        description="affected subscribers whose contract ends soon; null as subscribers"
    )
    repeat_subscribers: list[str] | None = Field(
        description="affected subscribers hit by repeated incidents; null as subscribers"
    )


class PriorityComponentOut(Out):
    name: str
    input: float | str
    weight: float
    contribution: float
    detail: str


class FlapOut(Out):
    transitions: int
    since: float
    last_change: float
    state: Literal["up", "down"]
    window: float


class TimelineOut(Out):
    ts: float
    text: str


class IncidentSummaryOut(Out):
    id: str
    title: str
    root: str = Field(description="root-cause key, e.g. device:agg1 or link:olt1:pon0/1")
    kind: str = Field(description="device_unreachable | link_down | flapping")
    device: str
    port: str | None
    role: str
    site: str | None
    severity: str = Field(description="critical | major | minor")
    state: IncidentStateName
    opened_at: float
    updated_at: float
    resolved_at: float | None
    merged_into: str | None
    revision: int
    symptom_count: int
    priority: float = Field(description="higher first; the breakdown is on the incident")
    planned: bool = Field(description="inside a maintenance window or silence")
    impact: ImpactSummaryOut


class IncidentOut(IncidentSummaryOut):
    symptoms: list[str] = Field(description="faults suppressed as consequences of the root")
    impact: ImpactOut
    timeline: list[TimelineOut]
    priority_breakdown: list[PriorityComponentOut]
    planned_by: list[str] = Field(description="the maintenance windows / silences covering it")
    planned_until: float | None
    flap: FlapOut | None = Field(description="for kind flapping only")


class IncidentListOut(Out):
    incidents: list[IncidentSummaryOut]
    count: int
    more: bool = Field(description="more incidents match than `limit` returned")


class VerdictOut(Out):
    guardrail: str = Field(description="policy, maintenance, message_caps, approval, "
                                       "blast_radius, quiet_hours, rate_limit, circuit_breaker")
    outcome: Literal["allowed", "waiting", "deferred", "blocked"]
    reason: str
    until: float | None = Field(description="deferred: tried again then; waiting: the "
                                            "approval expires then")


class ApprovalOut(Out):
    decision: Literal["approved", "denied", "expired"]
    by: str | None = Field(description="who decided; null when it expired")
    at: float
    reason: str | None


class ActionOut(Out):
    key: str = Field(description="idempotency key")
    incident_id: str
    event: EventName
    rule: str
    target: str
    executor: str
    state: ActionState
    dry_run: bool
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    status_code: int | None
    recipient: str | None = Field(description="the one subscriber it is for (fan-out), if any")
    amount: float | None = Field(description="money it gives away (a credit, an offer), if any")
    verdicts: list[VerdictOut] = Field(
        description="each guardrail's verdict at the latest check: why it ran, waits, was "
                    "deferred or blocked")
    expires_at: float | None = Field(description="waiting_approval: when it is blocked "
                                                 "unless someone approves it")
    approval: ApprovalOut | None
    started_at: float | None = Field(description="first attempt")


class ActionListOut(Out):
    actions: list[ActionOut]
    count: int
    more: bool = Field(description="more actions match than `limit` returned")


class RuleVerdictOut(Out):
    rule: str
    matched: bool = Field(description="every condition of the rule's `when` holds")
    fired: bool = Field(description="matched, and no earlier matching rule stopped evaluation")
    reasons: list[str] = Field(description="each condition that does not hold; empty if matched")
    stopped_by: str | None = Field(description="earlier matching rule with stop: true")
    targets: list[str]
    dry_run: bool


class DecisionOut(Out):
    event: EventName
    revision: int
    ts: float
    basis: Literal["journal", "current"] = Field(
        description="journal: the incident as the decision saw it (from the journaled action); "
                    "current: re-evaluated against the incident as it is now"
    )
    note: str | None
    rules: list[RuleVerdictOut]


class IncidentExplainOut(Out):
    incident: IncidentSummaryOut
    policy_dry_run: bool
    decisions: list[DecisionOut] = Field(
        description="one per event the incident went through (the latest update only), each "
                    "with every rule of the policy loaded now"
    )
    actions: list[ActionOut] = Field(description="what was journaled for it, newest first")


class RuleOut(Out):
    name: str
    in_policy: bool = Field(description="false when the policy no longer has this rule")
    when: Match | None
    targets: list[str]
    stop: bool | None


class TargetOut(Out):
    name: str
    in_policy: bool
    kind: str | None


class ActionDecisionOut(Out):
    event: EventName
    revision: int
    basis: Literal["journal", "current"]
    matches_now: bool | None = Field(
        description="whether the rule, as it is now, still matches these inputs; null when "
                    "the rule is gone"
    )
    reasons: list[str]
    inputs: dict[str, Any] = Field(description="the incident facts the guardrails judged on, "
                                               "as the decision saw them")


class ActionExplainOut(Out):
    action: ActionOut
    incident: IncidentSummaryOut | None = Field(description="null if it is no longer stored")
    rule: RuleOut
    target: TargetOut
    decision: ActionDecisionOut


class In(BaseModel):
    """A request body: strict (no coercion), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ApproveIn(In):
    by: str = Field(min_length=1, max_length=100, pattern=r"\S",
                    description="who approves (the CLI sends $SUDO_USER or $USER)")
    reason: str | None = Field(default=None, max_length=500)


class DenyIn(In):
    by: str = Field(min_length=1, max_length=100, pattern=r"\S", description="who denies")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S",
                        description="why: kept on the action")


RESPONSE_MODELS: tuple[type[Out], ...] = (
    ErrorOut, HealthOut, IncidentListOut, IncidentOut, ActionListOut, IncidentExplainOut,
    ActionExplainOut, ActionOut,
)
REQUEST_MODELS: tuple[type[In], ...] = (ApproveIn, DenyIn)


def impact_summary(imp: Impact) -> ImpactSummaryOut:
    return ImpactSummaryOut(
        subscriber_count=imp.subscriber_count, revenue_at_risk=imp.revenue_at_risk,
        revenue_by_tier=dict(imp.revenue_by_tier),
        subscribers_by_tier=dict(imp.subscribers_by_tier),
    )


def _common(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id, "title": inc.title, "root": inc.root, "kind": inc.kind,
        "device": inc.device, "port": inc.port, "role": inc.role, "site": inc.site,
        "severity": inc.severity, "state": inc.state, "opened_at": inc.opened_at,
        "updated_at": inc.updated_at, "resolved_at": inc.resolved_at,
        "merged_into": inc.merged_into, "revision": inc.revision,
        "symptom_count": len(inc.symptoms), "priority": inc.priority, "planned": inc.planned,
    }


def incident_summary(inc: Incident) -> IncidentSummaryOut:
    return IncidentSummaryOut(**_common(inc), impact=impact_summary(inc.impact))


def incident_out(inc: Incident, *, subscribers: bool) -> IncidentOut:
    imp = inc.impact
    return IncidentOut(
        **_common(inc),
        symptoms=list(inc.symptoms),
        impact=ImpactOut(
            **impact_summary(imp).model_dump(),
            devices=list(imp.devices),
            subscribers=list(imp.subscribers) if subscribers else None,
            contracts_near_renewal=list(imp.contracts_near_renewal) if subscribers else None,
            repeat_subscribers=list(imp.repeat_subscribers) if subscribers else None,
        ),
        timeline=[TimelineOut(ts=t.ts, text=t.text) for t in inc.timeline],
        priority_breakdown=[PriorityComponentOut(**c.to_dict())
                            for c in inc.priority_breakdown],
        planned_by=list(inc.planned_by), planned_until=inc.planned_until,
        flap=None if inc.flap is None else FlapOut(
            transitions=inc.flap.transitions, since=inc.flap.since,
            last_change=inc.flap.last_change, state=inc.flap.state, window=inc.flap.window),
    )


def action_out(row: JournalRow) -> ActionOut:
    return ActionOut.model_validate(row.to_dict())


# --- the OpenAPI document ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter: how it is parsed (collector.api) and described (here)."""

    name: str
    description: str
    kind: Literal["string", "integer", "boolean"] = "string"
    choices: tuple[str, ...] = ()
    default: Any = None
    bounds: tuple[int, int] = (0, 0)
    max_length: int = 200

    def schema(self) -> dict[str, Any]:
        s: dict[str, Any]
        if self.choices:
            s = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "integer":
            s = {"type": "integer", "minimum": self.bounds[0], "maximum": self.bounds[1]}
        elif self.kind == "boolean":
            s = {"type": "boolean"}
        else:
            s = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        if self.default is not None:
            s["default"] = self.default
        return s


@dataclass(frozen=True, slots=True)
class Operation:
    path: str
    operation_id: str
    summary: str
    response: type[Out] | None
    params: tuple[Param, ...] = ()
    path_param: str | None = None
    method: Literal["get", "post"] = "get"
    body: type[In] | None = None
    conflict: str | None = None  # when set, 409 is documented with this description


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_body(description: str, schema: dict[str, Any],
               headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def openapi_document(ops: Sequence[Operation], *, version: str, prefix: str,
                     spec_op: Operation) -> dict[str, Any]:
    """OpenAPI 3.1 (JSON Schema 2020-12, which is what pydantic emits)."""
    _, defs = models_json_schema(
        [*((m, "serialization") for m in RESPONSE_MODELS),
         *((m, "validation") for m in REQUEST_MODELS)],
        ref_template="#/components/schemas/{model}")
    err = _ref(ErrorOut)
    unauthorized = _json_body(
        "missing or wrong bearer token", err,
        {"WWW-Authenticate": {"description": 'Bearer realm="netreflex"',
                              "required": True, "schema": {"type": "string"}}})
    paths: dict[str, Any] = {}
    for op in (*ops, spec_op):
        params: list[dict[str, Any]] = [
            {"name": p.name, "in": "query", "required": False, "description": p.description,
             "schema": p.schema()}
            for p in op.params
        ]
        bad = ("a malformed body or query parameter (named in `field`)" if op.body
               else "a malformed or unknown query parameter (named in `field`)")
        responses: dict[str, Any] = {
            "200": _json_body("OK", _ref(op.response) if op.response else {"type": "object"}),
            "400": _json_body(bad, err),
            "401": unauthorized,
        }
        if op.path_param:
            params.insert(0, {"name": op.path_param, "in": "path", "required": True,
                              "schema": {"type": "string", "minLength": 1}})
            responses["404"] = _json_body(f"no such {op.path_param}", err)
        if op.conflict:
            responses["409"] = _json_body(op.conflict, err)
        responses["500"] = _json_body("internal error (details in the daemon log)", err)
        spec: dict[str, Any] = {
            "operationId": op.operation_id, "summary": op.summary, "parameters": params,
            "responses": responses,
        }
        if op.body is not None:
            spec["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _ref(op.body)}}}
        paths.setdefault(op.path, {})[op.method] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "netreflex supervisor API", "version": version,
                 "description": "Incidents, the action journal and the decision record "
                                "(read), and approving or denying actions that wait for a "
                                "person (write). Every request needs `Authorization: "
                                "Bearer <daemon.api_token>`."},
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
