"""Message templates in targets: ``"{incident.title}: {impact.subscriber_count} down"``.

A template names variables from a fixed list (below) with ``str.format`` syntax. Nothing
else is reachable: no attribute or index access (``{incident.__class__}``,
``{0.__globals__}`` are unknown variables), no conversions (``!r``), no nested fields in a
format spec (``{impact.revenue_at_risk:{incident.site}}``), and only short, plain format
specs (fill/align, sign, width up to 3 digits, grouping, precision up to 2 digits, type):
``{impact.revenue_at_risk:,.2f}``, ``{incident.device:>12}``.

Templates are checked when the policy is loaded: each is rendered once against sample
values, so an unknown variable or a format spec that does not fit the variable's type is
a config error on that field, reported as ``file:line: path: message``.

Incident variables (``IncidentTemplate``; every target that renders text about an
incident):

=============================  ======  =====================================================
``incident.id``                text    ``INC-000042``
``incident.title``             text    ``access device olt1 unreachable``
``incident.kind``              text    ``device_unreachable`` / ``link_down`` / ``flapping``
``incident.severity``          text    ``critical`` / ``major`` / ``minor``
``incident.state``             text    ``open`` / ``resolved`` / ``merged``
``incident.device``            text    root-cause device
``incident.port``              text    root-cause port (empty for a device)
``incident.site``              text    the device's site (empty when unknown)
``incident.role``              text    the device's role (``core``, ``access``, ...)
``incident.root``              text    root-cause key (``link:olt1:p1``)
``incident.revision``          int     +1 on every change of scope
``incident.priority``          float   priority score
``incident.symptom_count``     int     suppressed symptoms
``incident.opened_at``         text    ISO 8601, UTC
``incident.summary``           text    a condition's one line (``ge-0/0/1 in at 96% ...``)
``incident.evidence``          text    its numbers: ``utilization_pct=96, speed_bps=...``
``incident.subscriber``        text    plan_saturation / repeated_failures: who (else empty)
``impact.subscriber_count``    int     affected subscribers
``impact.revenue_at_risk``     float   monthly revenue of the affected subscribers
``impact.revenue_by_tier``     text    ``business 120.00, residential 75.00``
``impact.subscribers_by_tier`` text    ``business 3, residential 2``
``impact.device_count``        int     affected devices
``impact.devices``             text    ``olt1, olt2`` (first 20)
``impact.near_renewal``        int     affected subscribers whose contract ends soon
``impact.repeat_subscribers``  int     affected subscribers hit repeatedly
``impact.service``             text    ``down`` (outage) / ``degraded`` (works, badly)
``event.type``                 text    ``opened`` / ``updated`` / ``resolved`` / ``merged``
``event.time``                 text    ISO 8601, UTC
``rule``                       text    the policy rule that asked for the action
=============================  ======  =====================================================

Action-result variables (``ResultTemplate``; MQTT result topics): ``action.key``,
``action.target``, ``action.executor``, ``action.outcome``, ``incident.id``.

Subscriber-message variables (``SubscriberTemplate``; e-mail and SMS to customers): the
incident variables plus ``subscriber.id``, ``subscriber.name``, ``subscriber.account``,
``subscriber.sla_tier``, ``incident.resolved_at`` and ``incident.duration`` (see
``SUBSCRIBER_VARIABLES``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator

from actions.errors import ActionError
from correlator.incidents import evidence_text

# name -> sample value (its type is the variable's type)
INCIDENT_VARIABLES: Mapping[str, object] = {
    "incident.id": "INC-000042",
    "incident.title": "access device olt1 unreachable",
    "incident.kind": "device_unreachable",
    "incident.severity": "major",
    "incident.state": "open",
    "incident.device": "olt1",
    "incident.port": "p1",
    "incident.site": "north",
    "incident.role": "access",
    "incident.root": "device:olt1",
    "incident.revision": 1,
    "incident.priority": 123.45,
    "incident.symptom_count": 3,
    "incident.opened_at": "2024-01-01T00:00:00Z",
    "incident.summary": "ge-0/0/1 in at 96% of 10 Gb/s for 5 min",
    "incident.evidence": "direction=in, utilization_pct=96, speed_bps=10000000000",
    "incident.subscriber": "S-1001",
    "impact.subscriber_count": 5,
    "impact.revenue_at_risk": 195.0,
    "impact.revenue_by_tier": "business 120.00, residential 75.00",
    "impact.subscribers_by_tier": "business 3, residential 2",
    "impact.device_count": 1,
    "impact.devices": "olt1",
    "impact.near_renewal": 1,
    "impact.repeat_subscribers": 0,
    "impact.service": "degraded",
    "event.type": "opened",
    "event.time": "2024-01-01T00:00:00Z",
    "rule": "noc-all-outages",
}

RESULT_VARIABLES: Mapping[str, object] = {
    "action.key": "nrx-0123456789abcdef0123456789abcdef",
    "action.target": "noc-webhook",
    "action.executor": "webhook",
    "action.outcome": "succeeded",
    "incident.id": "INC-000042",
}

MAX_TEMPLATE = 4000
MAX_DEVICES_LISTED = 20
_SPEC = re.compile(r"(?:[^{}]?[<>^=])?[+\- ]?0?\d{0,3}[,_]?(?:\.\d{1,2})?[bcdeEfFgGnosxX%]?")


class TemplateError(ActionError, ValueError):
    """A template names something it may not, or cannot be rendered: fix the template."""


class _Restricted(string.Formatter):
    """``str.format`` whose fields are exact names from one flat mapping, nothing more."""

    def __init__(self, variables: Mapping[str, object]) -> None:
        self.variables = variables

    def get_field(self, field_name: str, args: Sequence[Any],
                  kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        if field_name not in self.variables:
            raise TemplateError(_unknown(field_name, self.variables))
        return self.variables[field_name], field_name

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            raise TemplateError(f"conversions such as !{conversion} are not allowed")
        return value

    def format_field(self, value: Any, format_spec: str) -> Any:
        if not _SPEC.fullmatch(format_spec):
            raise TemplateError(f"format spec {format_spec!r} is not allowed")
        return format(value, format_spec)


def _unknown(name: str, variables: Mapping[str, object]) -> str:
    if not name:
        return "positional fields ({}) are not allowed: name a variable, e.g. {incident.title}"
    close = difflib.get_close_matches(name, list(variables), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    prefix = name.split(".", 1)[0] + "."
    same = [v for v in variables if v.startswith(prefix)] or list(variables)
    return f"unknown variable {{{name}}}{hint} (variables: {', '.join(same)})"


def check(template: str, variables: Mapping[str, object]) -> str:
    """Return ``template`` if it only names ``variables`` and renders with their samples."""
    if len(template) > MAX_TEMPLATE:
        raise TemplateError(f"template longer than {MAX_TEMPLATE} characters")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"not a valid template: {exc} (write {{{{ and }}}} for braces)"
                            ) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in variables:
            raise TemplateError(_unknown(field, variables))
        if conversion is not None:
            raise TemplateError(f"conversions such as !{conversion} are not allowed")
        if spec and not _SPEC.fullmatch(spec):
            raise TemplateError(f"format spec {spec!r} of {{{field}}} is not allowed "
                                "(no nested fields; e.g. :>10, :.2f, :,.2f)")
    try:
        render(template, variables)
    except TemplateError:
        raise
    except (ValueError, TypeError) as exc:
        raise TemplateError(f"template does not fit its variables' types: {exc}") from None
    return template


def render(template: str, variables: Mapping[str, object],
           escape: Callable[[str], str] | None = None) -> str:
    """Fill ``template`` from ``variables``; ``escape`` is applied to every text value."""
    values = variables
    if escape is not None:
        values = {k: escape(v) if isinstance(v, str) else v for k, v in variables.items()}
    return _Restricted(values).vformat(template, (), {})


def _check_incident(template: str) -> str:
    return check(template, INCIDENT_VARIABLES)


def _check_result(template: str) -> str:
    return check(template, RESULT_VARIABLES)


IncidentTemplate = Annotated[str, AfterValidator(_check_incident)]
"""A template over the incident variables, checked at config load."""

ResultTemplate = Annotated[str, AfterValidator(_check_result)]
"""A template over the action-result variables, checked at config load."""


# --- values ------------------------------------------------------------------------------


def iso(ts: object) -> str:
    """Seconds since the epoch as ISO 8601 UTC (``...Z``); empty when not a number."""
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return ""
    t = dt.datetime.fromtimestamp(float(ts), tz=dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(v: object) -> str:
    return "" if v is None else str(v)


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _tiers(d: object, money: bool) -> str:
    if not isinstance(d, Mapping):
        return ""
    return ", ".join(f"{k} {_num(v):.2f}" if money else f"{k} {_int(v)}"
                     for k, v in sorted(d.items()))


def _count(v: object) -> int:
    return len(v) if isinstance(v, list | tuple) else 0


def _evidence(d: object) -> str:
    return evidence_text(d) if isinstance(d, Mapping) else ""


def incident_variables(payload: Mapping[str, Any]) -> dict[str, object]:
    """The incident variables of one action's payload (``actions.dispatcher.build_payload``).

    Every value has its declared type whatever the payload holds, so a template that passed
    ``check`` renders."""
    inc: Mapping[str, Any] = payload.get("incident") or {}
    imp: Mapping[str, Any] = inc.get("impact") or {}
    devices = imp.get("devices") or []
    return {
        "incident.id": _text(inc.get("id")),
        "incident.title": _text(inc.get("title")),
        "incident.kind": _text(inc.get("kind")),
        "incident.severity": _text(inc.get("severity")),
        "incident.state": _text(inc.get("state")),
        "incident.device": _text(inc.get("device")),
        "incident.port": _text(inc.get("port")),
        "incident.site": _text(inc.get("site")),
        "incident.role": _text(inc.get("role")),
        "incident.root": _text(inc.get("root")),
        "incident.revision": _int(inc.get("revision")),
        "incident.priority": _num(inc.get("priority")),
        "incident.symptom_count": _count(inc.get("symptoms")),
        "incident.opened_at": iso(inc.get("opened_at")),
        "incident.summary": _text(inc.get("summary")),
        "incident.evidence": _evidence(inc.get("evidence")),
        "incident.subscriber": _text(inc.get("subscriber")),
        "impact.subscriber_count": _int(imp.get("subscriber_count")),
        "impact.revenue_at_risk": _num(imp.get("revenue_at_risk")),
        "impact.revenue_by_tier": _tiers(imp.get("revenue_by_tier"), True),
        "impact.subscribers_by_tier": _tiers(imp.get("subscribers_by_tier"), False),
        "impact.device_count": _count(devices),
        "impact.devices": ", ".join(str(d) for d in list(devices)[:MAX_DEVICES_LISTED]),
        "impact.near_renewal": _count(imp.get("contracts_near_renewal")),
        "impact.repeat_subscribers": _count(imp.get("repeat_subscribers")),
        "impact.service": _text(imp.get("service") or "down"),
        "event.type": _text(payload.get("event")),
        "event.time": iso(payload.get("event_ts")),
        "rule": _text(payload.get("rule")),
    }


# --- messages to one subscriber ------------------------------------------------------------

SUBSCRIBER_VARIABLES: Mapping[str, object] = {
    **INCIDENT_VARIABLES,
    "subscriber.id": "S-1001",
    "subscriber.name": "Ana Silva",
    "subscriber.account": "A-77",
    "subscriber.sla_tier": "residential",
    "incident.resolved_at": "2024-01-01T00:25:00.000Z",
    "incident.duration": "25 min",
}
"""The incident variables plus the subscriber a message goes to (``SubscriberTemplate``;
the e-mail and SMS targets): ``subscriber.id``, ``subscriber.name`` (``customer`` when the
inventory has no name), ``subscriber.account``, ``subscriber.sla_tier``, and for the
all-clear ``incident.resolved_at`` (ISO 8601 UTC) and ``incident.duration`` (``25 min``,
``2 h 05 min``); both are empty while the incident is open."""


def _check_subscriber(template: str) -> str:
    return check(template, SUBSCRIBER_VARIABLES)


SubscriberTemplate = Annotated[str, AfterValidator(_check_subscriber)]
"""A template over the subscriber-message variables, checked at config load."""


def duration_text(seconds: float) -> str:
    """``less than a minute``, ``25 min``, ``2 h 05 min``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def subscriber_variables(payload: Mapping[str, Any], *, sid: str, name: str | None,
                         account: str | None, sla_tier: str) -> dict[str, object]:
    """The variables of a message about ``payload``'s incident to one subscriber."""
    inc: Mapping[str, Any] = payload.get("incident") or {}
    opened, resolved = _num(inc.get("opened_at")), inc.get("resolved_at")
    done = isinstance(resolved, int | float) and not isinstance(resolved, bool)
    return {
        **incident_variables(payload),
        "subscriber.id": sid,
        "subscriber.name": name or "customer",
        "subscriber.account": account or "",
        "subscriber.sla_tier": sla_tier,
        "incident.resolved_at": iso(resolved),
        "incident.duration": duration_text(_num(resolved) - opened) if done else "",
    }
