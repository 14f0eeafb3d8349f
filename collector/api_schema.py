"""What the supervisor API accepts and answers, and the OpenAPI document that says so.

Every response body is built from one of the models here and every query parameter is
parsed from its ``Param``; the document served at ``/api/v1/openapi.json`` is generated
from the same objects, so it describes exactly what is accepted and sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from actions.journal import JournalRow
from actions.policy import Match
from correlator.incidents import EventType, Impact, Incident
from correlator.maintenance import MatchSpec, Occurrence, parse_duration
from correlator.silences import MaintenanceEvent, Silence

IncidentStateName = Literal["open", "resolved", "merged"]
EventName = EventType  # one list, in correlator.incidents
ActionState = Literal["planned", "waiting_approval", "running", "succeeded", "failed",
                      "blocked", "dry_run"]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemOut(Out):
    field: str | None = Field(description="the body field at fault, e.g. match.devices[0]")
    error: str


class ErrorOut(Out):
    error: str = Field(description="what is wrong and, where it helps, how to fix it")
    field: str | None = Field(default=None,
                              description="the query parameter, header or body field at "
                                          "fault, if one is")
    problems: list[ProblemOut] | None = Field(
        default=None, description="400 with several problems (a body, a silence that "
                                  "cannot be created): each with its field (`field` is the "
                                  "first one's); absent otherwise")


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
    service: Literal["down", "degraded"] = Field(
        description="down: the subscribers lost service (an outage); degraded: it works, "
                    "badly (congestion, errors, low light, latency...)")
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
    kind: str = Field(description="one of INCIDENT_KINDS: device_unreachable, link_down, "
                                  "flapping, or a condition (congestion, errors, ...)")
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
    summary: str = Field(description="conditions: one line with the numbers that raised it")
    subscriber: str | None = Field(description="plan_saturation, repeated_failures: the "
                                               "subscriber concerned")
    impact: ImpactSummaryOut


class IncidentOut(IncidentSummaryOut):
    symptoms: list[str] = Field(description="faults suppressed as consequences of the root")
    impact: ImpactOut
    timeline: list[TimelineOut]
    priority_breakdown: list[PriorityComponentOut]
    planned_by: list[str] = Field(description="the maintenance windows / silences covering it")
    planned_until: float | None
    flap: FlapOut | None = Field(description="for kind flapping only")
    evidence: dict[str, float | int | str] = Field(
        description="conditions: the numbers that raised it (metric, value, threshold or "
                    "baseline, window, samples...); empty for outages")
    mitigated_at: float | None = Field(
        description="when a remediation fixed it (verified by re-polling)")
    mitigated_by: str | None = Field(description="the remediation target that fixed it")
    closed_by: str | None = Field(
        description="resolved without being seen to recover: 'inventory' = its device left "
                    "the inventory (no customer all-clear was sent)")


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


class SilenceOut(Out):
    id: str
    match: dict[str, list[str]] = Field(description="what it covers: devices, sites, "
                                                    "subscribers, sla_tiers")
    reason: str
    created_by: str
    created_at: float
    expires_at: float
    state: Literal["active", "expired"]
    expired_at: float | None = Field(description="when it ran out or was ended early")
    expired_by: str | None = Field(description="who ended it early; null when it ran out "
                                               "(or is still active)")


class SilenceListOut(Out):
    silences: list[SilenceOut]
    count: int


class WindowOut(Out):
    id: str
    reason: str
    owner: str | None
    timezone: str = Field(description="IANA time zone of the schedule")
    recurring: bool
    schedule: dict[str, Any] = Field(
        description="recurring: days, start (local HH:MM), duration (s), first_day, "
                    "last_day; one-off: start, end (Unix time)")
    match: dict[str, list[str]]
    start: float = Field(description="this occurrence, Unix time")
    end: float
    start_local: str = Field(description="this occurrence in the window's time zone")
    end_local: str


class MaintenanceOut(Out):
    active: list[WindowOut] = Field(description="windows under way now, by start")
    upcoming: list[WindowOut] = Field(description="occurrences starting within `within`, "
                                                  "by start")
    within: float = Field(description="seconds looked ahead")
    windows: int = Field(description="windows in the maintenance file")


class MaintenanceEventOut(Out):
    type: Literal["silence_created", "silence_expired"]
    ts: float
    silence: SilenceOut


class MaintenanceEventListOut(Out):
    events: list[MaintenanceEventOut] = Field(description="newest first, since the daemon "
                                                          "started")
    count: int


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


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:
        raise ValueError("a duration must be longer than zero")
    return value


def _instant(value: Any) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError("expected an ISO 8601 date and time such as 2026-05-04T18:00:00Z")
    if when.tzinfo is None:
        raise ValueError("give the UTC offset (e.g. +01:00 or Z): a local time is ambiguous")
    return when


# a number of seconds, or a duration as in the maintenance file ("90m", "2h")
Seconds = Annotated[float, BeforeValidator(_seconds, json_schema_input_type=float | str)]
# an ISO 8601 string with an offset (no Unix times: a number here is too easily a duration)
Instant = Annotated[dt.datetime, BeforeValidator(_instant)]


class SilenceIn(In):
    match: MatchSpec = Field(description="what it covers; every selector given must hold")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S",
                        description="why: shown with every incident it covers")
    created_by: str = Field(min_length=1, max_length=100, pattern=r"\S",
                            description="who (the CLI sends $USER@host)")
    duration: Seconds | None = Field(
        default=None, description="how long from now: seconds, or 90m, 2h, 1h30m, 1d "
                                  "(give this or expires_at)")
    expires_at: Instant | None = Field(
        default=None, description="when it ends, ISO 8601 with an offset, e.g. "
                                  "2026-05-04T18:00:00+01:00 (give this or duration)")


class ExpireIn(In):
    by: str = Field(min_length=1, max_length=100, pattern=r"\S",
                    description="who ends it (the CLI sends $USER@host)")


RESPONSE_MODELS: tuple[type[Out], ...] = (
    ErrorOut, HealthOut, IncidentListOut, IncidentOut, ActionListOut, IncidentExplainOut,
    ActionExplainOut, ActionOut, SilenceOut, SilenceListOut, MaintenanceOut,
    MaintenanceEventListOut,
)
REQUEST_MODELS: tuple[type[In], ...] = (ApproveIn, DenyIn, SilenceIn, ExpireIn)


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
        "summary": inc.summary, "subscriber": inc.subscriber,
    }


def incident_summary(inc: Incident) -> IncidentSummaryOut:
    return IncidentSummaryOut(**_common(inc), impact=impact_summary(inc.impact))


def incident_out(inc: Incident, *, subscribers: bool) -> IncidentOut:
    imp = inc.impact
    return IncidentOut(
        **_common(inc),
        symptoms=list(inc.symptoms),
        impact=ImpactOut(
            **impact_summary(imp).model_dump(), service=imp.service,
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
        evidence=dict(inc.evidence),
        mitigated_at=inc.mitigated_at, mitigated_by=inc.mitigated_by, closed_by=inc.closed_by,
    )


def action_out(row: JournalRow) -> ActionOut:
    return ActionOut.model_validate(row.to_dict())


def silence_out(s: Silence) -> SilenceOut:
    return SilenceOut(**s.to_dict(), state="active" if s.expired_at is None else "expired")


def window_out(o: Occurrence) -> WindowOut:
    return WindowOut(**o.to_dict())


def event_out(e: MaintenanceEvent) -> MaintenanceEventOut:
    return MaintenanceEventOut(type=e.type, ts=e.ts, silence=silence_out(e.silence))


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
    status: int = 200  # the success status (201 for what creates something)


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
            str(op.status): _json_body("Created" if op.status == 201 else "OK",
                                       _ref(op.response) if op.response
                                       else {"type": "object"}),
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
                 "description": "Incidents, the action journal, the decision record and "
                                "maintenance windows (read); approving or denying actions "
                                "that wait for a person, and creating or ending silences "
                                "(write). Every request needs `Authorization: "
                                "Bearer <daemon.api_token>`."},
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
