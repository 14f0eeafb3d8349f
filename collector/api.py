"""The supervisor HTTP API: what the daemon knows and why it did what it did; and the
things a person can change through it -- approving or denying an action that waits, and
creating or ending a silence (ad-hoc maintenance).

Everything under ``/api/v1`` -- including ``/health`` and ``/openapi.json`` -- requires
``Authorization: Bearer <daemon.api_token>``: unauthenticated liveness is already served
by ``/healthz`` on the metrics listener, so the API has one rule and no exceptions.
Errors are JSON ``{"error": ..., "field": ...}``: 400 names the query parameter or body
field at fault, 401 carries ``WWW-Authenticate: Bearer``, unknown ids are 404, approving
an action that is not waiting for approval (or ending a silence that already ended) is
409. A 400 about a body with several problems lists each, with its field, in ``problems``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_args

from aiohttp import web
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from actions.errors import ActionNotFound, ActionStateConflict
from actions.policy import Policy, Rule, evaluate, explain
from collector.api_schema import (
    ActionDecisionOut,
    ActionExplainOut,
    ActionListOut,
    ActionOut,
    ApproveIn,
    DecisionOut,
    DenyIn,
    ErrorOut,
    ExpireIn,
    HealthOut,
    In,
    IncidentExplainOut,
    IncidentListOut,
    IncidentOut,
    MaintenanceEventListOut,
    MaintenanceOut,
    Operation,
    Param,
    ProblemOut,
    RuleOut,
    RuleVerdictOut,
    SilenceIn,
    SilenceListOut,
    SilenceOut,
    TargetOut,
    action_out,
    event_out,
    incident_out,
    incident_summary,
    openapi_document,
    silence_out,
    window_out,
)
from collector.errors import CollectorError
from collector.version import VERSION
from correlator.errors import MaintenanceError, UnknownSilence
from correlator.incidents import INCIDENT_KINDS, EventType, Incident, IncidentEvent
from correlator.maintenance import parse_duration
from probes.source import dotted

if TYPE_CHECKING:
    from actions.journal import JournalRow
    from collector.daemon import Daemon
    from correlator.silences import Maintenance

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_LIMIT = 1000
MAX_WITHIN = 366 * 86_400.0
_ALL_ROWS = 100_000  # an incident's own journal rows: a handful per event in practice
_INT = re.compile(r"[0-9]{1,7}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*")


class ApiError(CollectorError):
    """A request the API answers with an error status (4xx) and a JSON body."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 problems: list[ProblemOut] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.problems = problems


def _error(status: int, message: str, field: str | None = None,
           headers: Mapping[str, str] | None = None,
           problems: list[ProblemOut] | None = None) -> web.Response:
    body = ErrorOut(error=message, field=field, problems=problems)
    return web.Response(
        status=status, content_type="application/json", headers=headers,
        text=body.model_dump_json(exclude={"problems"} if problems is None else None),
    )


def _parse(param: Param, raw: str) -> Any:
    if param.choices:
        if raw not in param.choices:
            raise ApiError(400, f"{param.name} must be one of {', '.join(param.choices)}",
                           param.name)
        return raw
    if param.kind == "integer":
        lo, hi = param.bounds
        if not _INT.fullmatch(raw) or not lo <= int(raw) <= hi:
            raise ApiError(400, f"{param.name} must be an integer from {lo} to {hi}",
                           param.name)
        return int(raw)
    if param.kind == "boolean":
        if raw not in ("true", "false"):
            raise ApiError(400, f"{param.name} must be true or false", param.name)
        return raw == "true"
    if not 1 <= len(raw) <= param.max_length:
        raise ApiError(400, f"{param.name} must be 1 to {param.max_length} characters",
                       param.name)
    return raw


def _query(request: web.Request, params: tuple[Param, ...]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    for name in request.query:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise ApiError(400, f"unknown query parameter {name} (accepted: {allowed})", name)
    out: dict[str, Any] = {}
    for p in params:
        values = request.query.getall(p.name, [])
        if len(values) > 1:
            raise ApiError(400, f"{p.name} is given more than once", p.name)
        out[p.name] = _parse(p, values[0]) if values else p.default
    return out


_MAX_BODY = 16_384
M = TypeVar("M", bound=In)


async def _body(request: web.Request, model: type[M]) -> M:
    """The JSON body as ``model``; 400 naming the field at fault otherwise."""
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise ApiError(400, f"the body is larger than {_MAX_BODY} bytes", "body")
    raw = await request.read()
    if len(raw) > _MAX_BODY:
        raise ApiError(400, f"the body is larger than {_MAX_BODY} bytes", "body")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body must be a JSON object, e.g. {\"by\": \"alice\"}",
                       "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object, e.g. {\"by\": \"alice\"}",
                       "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(model, err) for err in exc.errors(include_url=False)]
        raise ApiError(400, problems[0].error, problems[0].field,
                       problems if len(problems) > 1 else None) from None


def _problem(model: type[BaseModel], err: ErrorDetails) -> ProblemOut:
    """One validation error as ``field: what is wrong``, the field as a dotted path
    (``match.devices[0]``, as config errors name them)."""
    name = dotted(err["loc"]) or "body"
    if err["type"] == "extra_forbidden":
        owner: Any = model  # the model the unknown key was given to
        for part in err["loc"][:-1]:
            info = owner.model_fields.get(part) if isinstance(part, str) else None
            owner = info.annotation if info is not None else None
            if not (isinstance(owner, type) and issubclass(owner, BaseModel)):
                owner = None
                break
        known = f" (accepted: {', '.join(owner.model_fields)})" if owner is not None else ""
        return ProblemOut(field=name, error=f"unknown field {name}{known}")
    if err["type"] == "missing":
        return ProblemOut(field=name, error=f"{name} is required")
    return ProblemOut(field=name,
                      error=f"{name}: {err['msg'].removeprefix('Value error, ')}")


def _event(name: str) -> EventType:
    if name not in get_args(EventType):
        raise ValueError(f"unknown event {name!r} in the action journal")
    return cast(EventType, name)


# --- auth ------------------------------------------------------------------------------


def token_matches(header: str | None, expected: SecretStr | None) -> bool:
    """Constant time: both sides are hashed first, so neither the content nor the length
    of the expected token shows in how long a wrong guess takes."""
    if expected is None or header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    a = hashlib.sha256(given.strip().encode("utf-8", "surrogateescape")).digest()
    b = hashlib.sha256(expected.get_secret_value().encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


@dataclass(slots=True)
class _RejectLog:
    """Log rejected requests at most once every ``every`` seconds (scanners are noisy)."""

    every: float = 10.0
    last: float = float("-inf")
    suppressed: int = 0

    def note(self, peer: str | None, why: str) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        more = f" (+{self.suppressed} more rejected)" if self.suppressed else ""
        log.warning("api: rejected a request from %s: %s%s", peer or "?", why, more)
        self.last, self.suppressed = now, 0


# --- the handlers ----------------------------------------------------------------------


@dataclass(slots=True)
class _Api:
    daemon: Daemon
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    rejects: _RejectLog = field(default_factory=_RejectLog)

    @property
    def policy(self) -> Policy:
        return self.daemon.dispatcher.policy

    def incident(self, incident_id: str) -> Incident:
        inc = self.daemon.store.get(incident_id)
        if inc is None:
            raise ApiError(404, f"no incident {incident_id}", "id")
        return inc

    async def health(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        d = self.daemon
        return HealthOut(
            status="stopping" if d.stopping.is_set() else "ok", version=VERSION,
            started_at=self.started_at,
            uptime_seconds=round(time.monotonic() - self.started_mono, 3),
            devices=len(d.jobs), open_incidents=len(d.correlator.open),
            incidents_by_state=d.store.count_by_state(), action_backlog=d.journal.backlog(),
            actions_by_state=d.journal.state_counts(), policy_rules=len(self.policy.rules),
            policy_dry_run=self.policy.dry_run,
        )

    async def incidents(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        states = () if q["state"] == "all" else (q["state"],)
        rows = self.daemon.store.query(states=states, severity=q["severity"],
                                       device=q["device"], kind=q["kind"],
                                       limit=q["limit"] + 1)
        page = rows[: q["limit"]]
        return IncidentListOut(incidents=[incident_summary(i) for i in page],
                               count=len(page), more=len(rows) > len(page))

    async def incident_one(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        inc = self.incident(request.match_info["id"])
        return incident_out(inc, subscribers=q["subscribers"])

    async def actions(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        state = q["state"]
        states: tuple[str, ...] = (
            () if state == "all" else ("planned", "running") if state == "pending" else (state,)
        )
        rows = self.daemon.journal.query(states=states, incident_id=q["incident"],
                                         limit=q["limit"] + 1)
        page = rows[: q["limit"]]
        return ActionListOut(actions=[action_out(r) for r in page], count=len(page),
                             more=len(rows) > len(page))

    # --- the decision record -----------------------------------------------------------

    def _snapshot(self, key: str) -> Incident | None:
        """The incident as the decision journaled under ``key`` saw it, when the journal
        kept it whole (the payload lists at most 500 subscribers)."""
        payload = self.daemon.journal.payload(key)
        data = payload.get("incident") if payload else None
        if not isinstance(data, dict) or data.get("impact", {}).get("subscribers_truncated"):
            return None
        try:
            return Incident.from_dict(data)
        except (KeyError, TypeError, ValueError):
            return None

    def _verdicts(self, event: IncidentEvent) -> list[RuleVerdictOut]:
        pol = self.policy
        return [
            RuleVerdictOut(
                rule=v.rule.name, matched=v.matched, fired=v.fired, reasons=list(v.reasons),
                stopped_by=v.stopped_by, targets=[a.target for a in v.rule.do],
                dry_run=pol.dry_run if v.rule.dry_run is None else v.rule.dry_run,
            )
            for v in evaluate(pol, event)
        ]

    async def incident_explain(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        inc = self.incident(request.match_info["id"])
        rows = self.daemon.journal.query(incident_id=inc.id, limit=_ALL_ROWS)
        events: list[tuple[EventType, float]] = [("opened", inc.opened_at)]
        if inc.revision > 1:
            events.append(("updated", inc.updated_at))
        if inc.state in ("resolved", "merged"):
            events.append((inc.state, inc.resolved_at or inc.updated_at))
        decisions = []
        for ev, ts in events:
            row = next((r for r in rows if r.event == ev), None)  # newest first
            snap = self._snapshot(row.key) if row is not None else None
            if snap is not None:
                note = None
            elif row is None:
                note = ("nothing was journaled for this event; re-evaluated against the "
                        "incident as it is now")
            else:
                note = ("the journaled inputs are incomplete (large impact); re-evaluated "
                        "against the incident as it is now")
            if ev == "updated":
                note = ("latest update only; " + note) if note else "latest update only"
            event = IncidentEvent(ev, snap or inc, ts)
            decisions.append(DecisionOut(
                event=event.type, revision=event.incident.revision, ts=ts,
                basis="journal" if snap is not None else "current", note=note,
                rules=self._verdicts(event),
            ))
        return IncidentExplainOut(
            incident=incident_summary(inc), policy_dry_run=self.policy.dry_run,
            decisions=decisions, actions=[action_out(r) for r in rows[:MAX_LIMIT]],
        )

    async def action_explain(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        key = request.match_info["key"]
        row = self.daemon.journal.get(key)
        if row is None:
            raise ApiError(404, f"no action {key}", "key")
        current = self.daemon.store.get(row.incident_id)
        snap = self._snapshot(key)
        basis_inc = snap or current
        rule: Rule | None = next((r for r in self.policy.rules if r.name == row.rule), None)
        if rule is not None and basis_inc is not None:
            reasons = explain(rule, IncidentEvent(_event(row.event), basis_inc, row.created_at))
            matches_now: bool | None = not reasons
        else:
            reasons = ["the rule is no longer in the policy"] if rule is None else [
                "the incident is no longer stored"]
            matches_now = None
        target = self.policy.targets.get(row.target)
        inputs = self.daemon.journal.inputs(key) or {}
        return ActionExplainOut(
            action=action_out(row),
            incident=incident_summary(current) if current is not None else None,
            rule=RuleOut(
                name=row.rule, in_policy=rule is not None,
                when=rule.when if rule is not None else None,
                targets=[a.target for a in rule.do] if rule is not None else [],
                stop=rule.stop if rule is not None else None,
            ),
            target=TargetOut(name=row.target, in_policy=target is not None,
                             kind=target.kind if target is not None else None),
            decision=ActionDecisionOut(
                event=_event(row.event),
                revision=basis_inc.revision if basis_inc is not None else 0,
                basis="journal" if snap is not None else "current",
                matches_now=matches_now, reasons=reasons, inputs=inputs,
            ),
        )

    # --- approvals ---------------------------------------------------------------------

    async def approve(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        body = await _body(request, ApproveIn)
        return self._decide(request.match_info["key"], lambda key: self.daemon.dispatcher
                            .approve(key, by=body.by, reason=body.reason))

    async def deny(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        body = await _body(request, DenyIn)
        return self._decide(request.match_info["key"], lambda key: self.daemon.dispatcher
                            .deny(key, by=body.by, reason=body.reason))

    # --- silences and maintenance windows ------------------------------------------------

    @property
    def maintenance(self) -> Maintenance:
        return self.daemon.correlator.maintenance

    async def silences(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        if q["state"] == "all":
            rows = sorted(self.maintenance.silences(include_expired=True),
                          key=lambda s: (s.created_at, s.id), reverse=True)
        else:
            rows = self.maintenance.silences()
        return SilenceListOut(silences=[silence_out(s) for s in rows], count=len(rows))

    async def silence_create(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        body = await _body(request, SilenceIn)
        try:
            silence = self.maintenance.create_silence(
                body.match, reason=body.reason, created_by=body.created_by,
                duration=body.duration,
                expires_at=None if body.expires_at is None else body.expires_at.timestamp())
        except MaintenanceError as exc:
            # problems without a field of their own are about when it ends
            when = "duration" if body.expires_at is None else "expires_at"
            problems = [ProblemOut(field=_field_of(p) or when, error=p) for p in exc.problems]
            raise ApiError(400, str(exc), problems[0].field, problems) from None
        return silence_out(silence)

    async def silence_expire(self, request: web.Request, q: dict[str, Any]) -> BaseModel:
        body = await _body(request, ExpireIn)
        sid = request.match_info["id"]
        try:
            return silence_out(self.maintenance.expire_silence(sid, by=body.by))
        except UnknownSilence:
            pass
        done = next((s for s in self.maintenance.silences(include_expired=True)
                     if s.id == sid), None)
        if done is None:
            raise ApiError(404, f"no silence {sid}", "id")
        how = f"ended by {done.expired_by}" if done.expired_by else "ran out"
        raise ApiError(409, f"silence {sid} has already expired ({how} at "
                       f"{_iso(done.expired_at)}): only an active silence can be ended", "id")

    async def maintenance_windows(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        within = _within(q["within"])
        m = self.maintenance
        now = m.clock()
        return MaintenanceOut(
            active=[window_out(o) for o in m.active_windows(now)],
            upcoming=[window_out(o) for o in m.upcoming_windows(now, within=within)],
            within=within, windows=len(m.windows),
        )

    async def maintenance_events(self, _: web.Request, q: dict[str, Any]) -> BaseModel:
        events = list(reversed(self.maintenance.events))[: q["limit"]]
        return MaintenanceEventListOut(events=[event_out(e) for e in events],
                                       count=len(events))

    def _decide(self, key: str, how: Callable[[str], JournalRow]) -> BaseModel:
        try:
            return action_out(how(key))
        except ActionNotFound:
            raise ApiError(404, f"no action {key}", "key") from None
        except ActionStateConflict as exc:
            raise ApiError(409, f"action {key} is {exc.state}, not waiting_approval: only an "
                           "action waiting for approval can be approved or denied",
                           "key") from None


def _field_of(problem: str) -> str | None:
    """``match.devices[0]`` from ``match.devices[0]: unknown device ...``, if it starts so."""
    head, sep, _ = problem.partition(": ")
    return head if sep and _FIELD.fullmatch(head) else None


def _iso(ts: float | None) -> str:
    if ts is None:
        return "?"
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _within(raw: str) -> float:
    try:
        seconds = float(raw) if _INT.fullmatch(raw) else parse_duration(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_WITHIN:
        raise ApiError(400, "within must be a duration such as 12h, 7d or 30d (or seconds), "
                            f"up to {MAX_WITHIN / 86_400:g}d", "within")
    return seconds


# --- routes ----------------------------------------------------------------------------

_LIMIT = Param("limit", "how many to return, newest first", kind="integer", default=100,
               bounds=(1, MAX_LIMIT))

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[BaseModel]]


def _operations(api: _Api) -> list[tuple[Operation, Handler]]:
    return [
        (Operation("/health", "health", "Daemon status: devices, incidents, action backlog",
                   HealthOut), api.health),
        (Operation("/incidents", "listIncidents", "Incidents, most recently opened first",
                   IncidentListOut, params=(
                       Param("state", "which incidents", choices=(
                           "open", "resolved", "merged", "all"), default="open"),
                       Param("severity", "only this severity",
                             choices=("critical", "major", "minor")),
                       Param("device", "only incidents rooted at this device"),
                       Param("kind", "only this kind of root cause",
                             choices=INCIDENT_KINDS),
                       _LIMIT)), api.incidents),
        (Operation("/incidents/{id}", "getIncident",
                   "One incident: root cause, symptoms, impact, timeline", IncidentOut,
                   path_param="id", params=(
                       Param("subscribers", "include the affected subscriber ids",
                             kind="boolean", default=True),)), api.incident_one),
        (Operation("/incidents/{id}/explain", "explainIncident",
                   "The decision record: every rule, whether it matched and why not, and "
                   "the actions journaled", IncidentExplainOut, path_param="id"),
         api.incident_explain),
        (Operation("/actions", "listActions", "Journaled actions, newest first",
                   ActionListOut, params=(
                       Param("state", "pending = planned or running", choices=(
                           "planned", "waiting_approval", "running", "succeeded", "failed",
                           "blocked", "dry_run", "pending", "all"), default="all"),
                       Param("incident", "only the actions of this incident"),
                       _LIMIT)), api.actions),
        (Operation("/actions/{key}/explain", "explainAction",
                   "One action: its incident, rule, target, attempts, state and last error",
                   ActionExplainOut, path_param="key"), api.action_explain),
        (Operation("/actions/{key}/approve", "approveAction",
                   "Approve an action waiting for approval: it runs (through the other "
                   "guardrails) as soon as it is due", ActionOut, path_param="key",
                   method="post", body=ApproveIn,
                   conflict="the action is not waiting for approval"), api.approve),
        (Operation("/actions/{key}/deny", "denyAction",
                   "Deny an action waiting for approval: it is blocked, with who and why",
                   ActionOut, path_param="key", method="post", body=DenyIn,
                   conflict="the action is not waiting for approval"), api.deny),
        (Operation("/silences", "listSilences",
                   "Silences (ad-hoc maintenance): active ones by expiry, or all, newest "
                   "first", SilenceListOut, params=(
                       Param("state", "active, or all (the most recent 1000, with the "
                             "expired and who ended them)", choices=("active", "all"),
                             default="active"),)),
         api.silences),
        (Operation("/silences", "createSilence",
                   "Create a silence: incidents it covers that open while it lasts are "
                   "planned", SilenceOut, method="post", body=SilenceIn, status=201),
         api.silence_create),
        (Operation("/silences/{id}/expire", "expireSilence",
                   "End a silence now", SilenceOut, path_param="id", method="post",
                   body=ExpireIn, conflict="the silence has already expired"),
         api.silence_expire),
        (Operation("/maintenance", "listMaintenance",
                   "Maintenance windows from the file: under way now, and upcoming",
                   MaintenanceOut, params=(
                       Param("within", "how far ahead to look: 12h, 7d, 30d or seconds "
                             "(at most 366d)", default="7d", max_length=20),)),
         api.maintenance_windows),
        (Operation("/maintenance/events", "listMaintenanceEvents",
                   "Silences created and expired since the daemon started, newest first",
                   MaintenanceEventListOut, params=(_LIMIT,)), api.maintenance_events),
    ]


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json",
                        status=status)


def _wrap(op: Operation, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def run(request: web.Request) -> web.Response:
        q = _query(request, op.params)
        return _json(await handler(request, q), op.status)
    return run


def build_api(daemon: Daemon) -> web.Application:
    """The API's aiohttp application; the daemon serves it on ``daemon.api_listen``."""
    api = _Api(daemon)
    ops = _operations(api)
    document = openapi_document(
        [op for op, _ in ops], version=VERSION, prefix=PREFIX,
        spec_op=Operation("/openapi.json", "openapi", "This document", None),
    )
    spec_body = json.dumps(document)

    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if not token_matches(header, daemon.cfg.daemon.api_token):
            why = "missing bearer token" if header is None else "wrong bearer token"
            api.rejects.note(request.remote, why)
            challenge = 'Bearer realm="netreflex"'
            if header is not None:
                challenge += ', error="invalid_token"'
            return _error(401, f"{why}: send Authorization: Bearer <daemon.api_token>",
                          "Authorization", {"WWW-Authenticate": challenge})
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message, exc.field, problems=exc.problems)
        except web.HTTPException as exc:  # the router's 404 and 405
            if exc.status == 405:
                return _error(405, f"method {request.method} not allowed", None,
                              {"Allow": exc.headers.get("Allow", "GET")})
            return _error(exc.status, f"no such resource: {request.path}")
        except Exception:  # one bad request must not look like a dead daemon
            log.exception("api: internal error on %s %s", request.method, request.path_qs)
            return _error(500, "internal error; the daemon log has the details")

    async def spec(request: web.Request) -> web.Response:
        _query(request, ())
        return web.Response(text=spec_body, content_type="application/json")

    app = web.Application(middlewares=[guard])
    for op, handler in ops:
        if op.method == "post":
            app.router.add_post(PREFIX + op.path, _wrap(op, handler))
        else:
            app.router.add_get(PREFIX + op.path, _wrap(op, handler), allow_head=False)
    app.router.add_get(PREFIX + "/openapi.json", spec, allow_head=False)
    return app
