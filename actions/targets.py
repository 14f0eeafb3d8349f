"""Where actions go: one config model per kind of target, discriminated on ``kind``.

Every target kind shares the retry settings (``RetrySettings``); an executor module under
``actions/executors/`` implements each kind. Text that a target sends (ticket names,
alert summaries, MQTT topics) is an ``actions.templates`` template, checked at load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import Field, HttpUrl, ValidationInfo, field_validator, model_validator

from actions.templates import (
    INCIDENT_VARIABLES,
    RESULT_VARIABLES,
    IncidentTemplate,
    ResultTemplate,
    render,
)
from probes.source import Secret, Strict

Severity = Literal["critical", "major", "minor"]
K = TypeVar("K", bound=str)


class RetrySettings(Strict):
    """How hard to try. 5xx, 429, timeouts and connection errors are retried with capped,
    jittered exponential backoff; 4xx are not."""

    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per attempt")
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_max: float = Field(default=300.0, gt=0, description="cap on the wait, seconds")


class HttpTargetBase(RetrySettings):
    """An HTTP API: optional bearer token and extra headers."""

    token: Secret | None = Field(default=None, description="sent as Authorization: Bearer")
    headers: dict[str, str] = Field(default_factory=dict)


def _check_levels(levels: Mapping[K, float]) -> Mapping[K, float]:
    if not levels:
        raise ValueError("give at least one level")
    if min(levels.values()) != 0:
        raise ValueError("the lowest level must start at 0 so that every score has a level")
    if any(v < 0 for v in levels.values()):
        raise ValueError("scores are never negative")
    return levels


PriorityLevels = dict[str, float]
"""label -> the lowest priority score that gets it; the highest level reached wins."""


def priority_label(levels: Mapping[K, float], score: float) -> K:
    """The label of the highest level whose minimum ``score`` reaches."""
    best = min(levels, key=lambda k: levels[k])
    for label, minimum in levels.items():
        if levels[best] < minimum <= score:
            best = label
    return best


class WebhookTarget(HttpTargetBase):
    kind: Literal["webhook"]
    url: HttpUrl


class LogTarget(RetrySettings):
    kind: Literal["log"]
    path: str | None = Field(default=None, description="also append one JSON line per action")


# --- TM Forum TMF621 trouble tickets -----------------------------------------------------


class PartyRef(Strict):
    """A TMF621 ``relatedParty`` entry (``@referredType`` in the API)."""

    id: str = Field(min_length=1)
    name: str | None = None
    role: str = "reporter"
    referred_type: str = Field(default="Organization", description="sent as @referredType")


def _default_party() -> list[PartyRef]:
    return [PartyRef(id="netreflex", name="netreflex", role="reporter")]


def _tmf_severity() -> dict[Severity, str]:
    return {"critical": "Critical", "major": "Major", "minor": "Minor"}


def _tmf_priority() -> PriorityLevels:
    return {"1": 500.0, "2": 100.0, "3": 20.0, "4": 0.0}


class Tmf621Base(HttpTargetBase):
    url: HttpUrl = Field(description="API root, e.g. https://tt.example.net/tmf-api/"
                                     "troubleTicket/v4; /troubleTicket is appended")
    severity: dict[Severity, str] = Field(
        default_factory=_tmf_severity, description="incident severity -> TMF621 severity")
    priority: PriorityLevels = Field(
        default_factory=_tmf_priority,
        description="TMF621 priority -> the lowest netreflex priority score that gets it")
    related_party: list[PartyRef] = Field(default_factory=_default_party)

    @field_validator("priority")
    @classmethod
    def _levels(cls, v: PriorityLevels) -> PriorityLevels:
        _check_levels(v)
        return v

    @field_validator("severity")
    @classmethod
    def _all_severities(cls, v: dict[Severity, str]) -> dict[Severity, str]:
        missing = sorted({"critical", "major", "minor"} - set(v))
        if missing:
            raise ValueError(f"map every incident severity (missing: {', '.join(missing)})")
        return v


DEFAULT_TICKET_DESCRIPTION = (
    "{incident.title} (severity {incident.severity}, site {incident.site}). "
    "{impact.subscriber_count} subscriber(s) affected, {impact.revenue_at_risk:.2f} "
    "monthly revenue at risk."
)
DEFAULT_IMPACT_NOTE = (
    "Impact: {impact.subscriber_count} subscriber(s) ({impact.subscribers_by_tier}); "
    "revenue at risk {impact.revenue_at_risk:.2f}/month ({impact.revenue_by_tier}); "
    "devices: {impact.devices}; priority {incident.priority:.1f}."
)


class TicketTarget(Tmf621Base):
    """TMF621 trouble ticket: created on ``opened``, PATCHed on ``updated``, resolved on
    ``resolved`` (and ``merged``). The ticket id is kept in the state directory."""

    kind: Literal["tmf621_ticket"]
    ticket_type: str = Field(default="incident", min_length=1)
    name: IncidentTemplate = "{incident.title}"
    description: IncidentTemplate = DEFAULT_TICKET_DESCRIPTION
    note: IncidentTemplate = Field(default=DEFAULT_IMPACT_NOTE,
                                   description="added on create and on every update")
    resolution_note: IncidentTemplate = "Resolved by netreflex: {incident.title}."


class DispatchTarget(Tmf621Base):
    """A field work order: a TMF621 ticket of type ``dispatch`` with the site and the
    affected services, created on ``opened`` only."""

    kind: Literal["tmf621_dispatch"]
    ticket_type: str = Field(default="dispatch", min_length=1)
    name: IncidentTemplate = "Field dispatch: {incident.title}"
    description: IncidentTemplate = (
        "Dispatch to site {incident.site}: {incident.title}. Device {incident.device} "
        "{incident.port}. {impact.subscriber_count} subscriber(s) out of service "
        "({impact.subscribers_by_tier})."
    )
    note: IncidentTemplate = DEFAULT_IMPACT_NOTE


# --- escalation ---------------------------------------------------------------------------

PagerDutySeverity = Literal["critical", "error", "warning", "info"]


def _pd_severity() -> dict[Severity, PagerDutySeverity]:
    return {"critical": "critical", "major": "error", "minor": "warning"}


class PagerDutyTarget(RetrySettings):
    """PagerDuty Events API v2: trigger on opened/updated, resolve on resolved/merged;
    ``dedup_key`` is the incident id."""

    kind: Literal["pagerduty"]
    base_url: HttpUrl = Field(default=HttpUrl("https://events.pagerduty.com"),
                              description="/v2/enqueue is appended")
    routing_key: Secret = Field(description="the integration key of an Events API v2 "
                                            "integration")
    summary: IncidentTemplate = (
        "{incident.title}: {impact.subscriber_count} subscriber(s), "
        "{impact.revenue_at_risk:.2f}/month at risk"
    )
    source: IncidentTemplate = "{incident.device}"
    component: IncidentTemplate = Field(default="{incident.port}",
                                        description="left out when it renders empty")
    group: IncidentTemplate = "{incident.site}"
    event_class: IncidentTemplate = Field(default="{incident.kind}",
                                          description="sent as payload.class")
    severity: dict[Severity, PagerDutySeverity] = Field(default_factory=_pd_severity)
    client: str = "netreflex"
    client_url: HttpUrl | None = None


OpsgeniePriority = Literal["P1", "P2", "P3", "P4", "P5"]


def _og_priority() -> dict[OpsgeniePriority, float]:
    return {"P1": 500.0, "P2": 200.0, "P3": 50.0, "P4": 10.0, "P5": 0.0}


class OpsgenieResponder(Strict):
    type: Literal["team", "user", "escalation", "schedule"]
    name: str | None = Field(default=None, description="team, escalation or schedule name")
    username: str | None = Field(default=None, description="user (e-mail address)")
    id: str | None = None

    @model_validator(mode="after")
    def _one_ref(self) -> OpsgenieResponder:
        if sum(x is not None for x in (self.name, self.username, self.id)) != 1:
            raise ValueError("give exactly one of id, name or username")
        return self


class OpsgenieTarget(RetrySettings):
    """Opsgenie Alert API: create on opened (alias = incident id), a note on updated,
    close on resolved/merged."""

    kind: Literal["opsgenie"]
    base_url: HttpUrl = Field(default=HttpUrl("https://api.opsgenie.com"),
                              description="https://api.eu.opsgenie.com for the EU instance")
    api_key: Secret = Field(description="sent as Authorization: GenieKey ...")
    message: IncidentTemplate = "{incident.title}"
    description: IncidentTemplate = DEFAULT_TICKET_DESCRIPTION + "\n" + DEFAULT_IMPACT_NOTE
    note: IncidentTemplate = DEFAULT_IMPACT_NOTE
    entity: IncidentTemplate = "{incident.device}"
    priority: dict[OpsgeniePriority, float] = Field(
        default_factory=_og_priority,
        description="Opsgenie priority -> the lowest netreflex priority score that gets it")
    responders: list[OpsgenieResponder] = Field(default_factory=list)
    tags: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=lambda: ["netreflex"], max_length=20)
    source: str = Field(default="netreflex", max_length=100)
    user: str = Field(default="netreflex", max_length=100)

    @field_validator("priority")
    @classmethod
    def _levels(cls, v: dict[OpsgeniePriority, float]) -> dict[OpsgeniePriority, float]:
        _check_levels(v)
        return v


# --- offers -------------------------------------------------------------------------------


class CrmOfferTarget(HttpTargetBase):
    """An offer recommendation per affected subscriber, POSTed to a CRM endpoint."""

    kind: Literal["crm_offer"]
    url: HttpUrl
    offer_code: str = Field(min_length=1, max_length=100)
    reason: IncidentTemplate = "{incident.title}"
    max_subscribers: int = Field(default=100, ge=1, le=10000,
                                 description="recommendations per action at most")


# --- MQTT -----------------------------------------------------------------------------------


class MqttTls(Strict):
    """TLS to the broker. Relative paths are relative to the policy file."""

    ca_file: str | None = Field(default=None, description="CA bundle; system CAs if unset")
    cert_file: str | None = Field(default=None, description="client certificate (PEM)")
    key_file: str | None = Field(default=None, description="client key (PEM)")
    insecure: bool = Field(default=False, description="skip the host name check (tests only)")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _relative_to_policy(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        if not os.path.isabs(v) and info.context and "base_dir" in info.context:
            v = os.path.join(info.context["base_dir"], v)
        if not os.path.isfile(v):
            raise ValueError(f"file {v} does not exist")
        return v

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


def _check_topic(template: str, variables: dict[str, object]) -> str:
    topic = render(template, variables)
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError("a topic to publish to is not empty and has no + or # wildcards")
    return template


class MqttTarget(RetrySettings):
    """Publish incident events (TMF688-style JSON) to an MQTT broker, QoS 1 by default."""

    kind: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="1883, or 8883 with tls")
    username: str | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    client_id: str | None = Field(default=None, max_length=23 * 4,
                                  description="random when unset")
    topic: IncidentTemplate = "netreflex/{incident.site}/incidents/{incident.id}"
    result_topic: ResultTemplate | None = Field(
        default="netreflex/actions/{incident.id}/{action.target}",
        description="where action results go (null: not published)")
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    keepalive: int = Field(default=60, ge=5, le=3600)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return _check_topic(v, dict(INCIDENT_VARIABLES))

    @field_validator("result_topic")
    @classmethod
    def _result_topic(cls, v: str | None) -> str | None:
        return None if v is None else _check_topic(v, dict(RESULT_VARIABLES))

    @model_validator(mode="after")
    def _auth(self) -> MqttTarget:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls else 1883)


Target = Annotated[
    WebhookTarget | LogTarget | TicketTarget | DispatchTarget | PagerDutyTarget
    | OpsgenieTarget | CrmOfferTarget | MqttTarget,
    Field(discriminator="kind"),
]
