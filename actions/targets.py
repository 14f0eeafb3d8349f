"""Where actions go: one config model per kind of target, discriminated on ``kind``.

Every target kind shares the retry settings (``RetrySettings``); an executor module under
``actions/executors/`` implements each kind. Text that a target sends (ticket names,
alert summaries, MQTT topics) is an ``actions.templates`` template, checked at load.
"""

from __future__ import annotations

import email.utils
import ipaddress
import itertools
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import Field, HttpUrl, ValidationInfo, field_validator, model_validator

from actions.guardrail_config import Seconds
from actions.remediation_templates import BUILTIN as BUILTIN_TEMPLATES
from actions.remediation_templates import CliTemplate, RemediationTemplate, SnmpTemplate
from actions.templates import (
    INCIDENT_VARIABLES,
    RESULT_VARIABLES,
    IncidentTemplate,
    ResultTemplate,
    SubscriberTemplate,
    render,
)
from probes.source import Secret, Strict, existing_file

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


# --- SLA credits ----------------------------------------------------------------------------

DEFAULT_OUTAGE_KINDS = ("device_unreachable", "link_down", "ont_down")


class CreditStep(Strict):
    """An outage of at least ``minutes`` (planned maintenance left out) earns ``percent``
    of the subscriber's monthly fee; the highest step reached applies."""

    minutes: float = Field(gt=0, description="outage minutes, at least")
    percent: float = Field(ge=0, le=100, description="of the monthly fee")


class SlaCreditTarget(HttpTargetBase):
    """SLA credits: on ``resolved``, one TMF678 credit request per affected subscriber
    whose tier has a schedule, each written to the credit ledger (``credits.db``) first."""

    kind: Literal["sla_credit"]
    url: HttpUrl = Field(description="TMF678 API root, e.g. https://billing.example.net/"
                                     "tmf-api/customerBillManagement/v4; "
                                     "/appliedCustomerBillingRate is appended")
    schedule_version: str = Field(min_length=1, max_length=100,
                                  description="recorded with every credit")
    schedule: dict[str, list[CreditStep]] = Field(
        min_length=1, description="SLA tier -> steps; tiers not listed get no credit")
    cap_percent: float = Field(default=100.0, gt=0, le=100,
                               description="most one outage earns, % of the monthly fee")
    monthly_cap_percent: float | None = Field(
        default=None, gt=0, le=100,
        description="most one contract earns in a calendar month (UTC), % of the monthly "
                    "fee, counted from the ledger")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    outage_kinds: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OUTAGE_KINDS), min_length=1,
        description="incident kinds that are outages (degraded service is not, by default)")

    @field_validator("schedule")
    @classmethod
    def _steps(cls, v: dict[str, list[CreditStep]]) -> dict[str, list[CreditStep]]:
        for tier, steps in v.items():
            if not steps:
                raise ValueError(f"tier {tier!r}: give at least one step "
                                 "({minutes: 60, percent: 5}), or leave the tier out")
            for a, b in itertools.pairwise(steps):
                if b.minutes <= a.minutes or b.percent <= a.percent:
                    raise ValueError(
                        f"tier {tier!r}: steps must go up in both minutes and percent "
                        f"({a.minutes:g} min {a.percent:g}% is followed by {b.minutes:g} min "
                        f"{b.percent:g}%)")
        return v

    @field_validator("outage_kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from correlator.incidents import INCIDENT_KINDS

        unknown = [k for k in v if k not in INCIDENT_KINDS]
        if unknown:
            raise ValueError(f"unknown incident kind {unknown[0]!r} (kinds: "
                             f"{', '.join(INCIDENT_KINDS)})")
        return v


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
        return existing_file(v, info)

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


# --- remediation ----------------------------------------------------------------------------


class RemediationTarget(RetrySettings):
    """Fix the incident's element on the device: one template from the allowlist (the
    built-ins in ``actions.remediation_templates`` plus ``templates``), then verify by
    re-polling. ``timeout`` bounds one SSH session or one SNMP request; ``concurrency``
    how many of its actions run at once (settle and verify included)."""

    kind: Literal["remediation"]
    template: str = Field(min_length=1, description="bounce_port, bounce_port_vrp, "
                          "reset_ont, clear_counters, snmp_admin_bounce, or one of templates")
    templates: dict[str, RemediationTemplate] = Field(
        default_factory=dict, description="this target's own additions to the allowlist")
    timeout: float = Field(default=30.0, gt=0, le=300,
                           description="seconds per SSH session or SNMP request")
    max_attempts: int = Field(default=2, ge=1, le=10,
                              description="only failures before anything was sent retry")
    settle: Seconds = Field(default=10.0, description="wait before the first verify")
    verify_attempts: int = Field(default=3, ge=1, le=20)
    verify_interval: Seconds = Field(default=10.0, description="between verify attempts")
    repeat_after: Seconds | None = Field(
        default=None, description="the same fix on the same element is not sent again "
        "within this long of the last time (a slow flapper needs a person); null: no limit")
    concurrency: int = Field(default=4, ge=1, le=64,
                             description="this target's actions running at once, in slots "
                             "of their own (not the dispatcher's shared ones)")

    @model_validator(mode="after")
    def _known(self) -> RemediationTarget:
        clash = sorted(set(self.templates) & set(BUILTIN_TEMPLATES))
        if clash:
            raise ValueError(f"templates: {clash[0]!r} is a built-in template; give yours "
                             "another name")
        if self.template not in BUILTIN_TEMPLATES and self.template not in self.templates:
            known = ", ".join([*BUILTIN_TEMPLATES, *self.templates])
            raise ValueError(f"template {self.template!r} is not in the allowlist (known: "
                             f"{known})")
        return self

    @property
    def chosen(self) -> CliTemplate | SnmpTemplate:
        return self.templates.get(self.template) or BUILTIN_TEMPLATES[self.template]


# --- customer messages: e-mail and SMS ------------------------------------------------------

DEFAULT_OUTAGE_SUBJECT = "Service interruption in your area ({incident.id})"
DEFAULT_OUTAGE_TEXT = (
    "Hello {subscriber.name},\n\n"
    "We know about a service interruption that affects your connection (reference "
    "{incident.id}). Our engineers are working on it; there is no need to call us. We will "
    "write again when it is fixed.\n"
)
DEFAULT_CLEAR_SUBJECT = "Service restored ({incident.id})"
DEFAULT_CLEAR_TEXT = (
    "Hello {subscriber.name},\n\n"
    "The service interruption that affected your connection (reference {incident.id}) is "
    "fixed; it lasted {incident.duration}. If your connection still does not work, please "
    "restart your router. We are sorry for the trouble.\n"
)
DEFAULT_OUTAGE_SMS = (
    "We know about a service interruption affecting your connection (ref {incident.id}) and "
    "are working on it. We will text you when it is fixed."
)
DEFAULT_CLEAR_SMS = (
    "Your service is back (ref {incident.id}, down {incident.duration}). If it still does "
    "not work, please restart your router."
)


class NotifyTarget(RetrySettings):
    """What the customer-message targets share: one message per affected subscriber who
    has the contact and the consent for the channel (``actions/executors/notify.py``)."""

    hold_down: Seconds = Field(
        default=300.0, description="the outage message waits this long after the incident "
                                   "opened; an incident resolved sooner (a flap) sends nothing")
    degraded: bool = Field(
        default=False, description="also message subscribers whose service is degraded, not "
                                   "cut off (congestion, errors, latency ...), with the "
                                   "degraded_* texts")


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailTarget(NotifyTarget):
    """Customer e-mail over SMTP: STARTTLS (587) or implicit TLS (465); plain text only to
    a relay on this host (``security: plaintext`` with a loopback ``host``)."""

    kind: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="587 with starttls, 465 with tls, 25 with plaintext")
    security: Literal["starttls", "tls", "plaintext"] = "starttls"
    tls: MqttTls | None = Field(default=None, description="ca_file (a private CA), client "
                                                          "certificate")
    username: str | None = None
    password: Secret | None = None
    from_address: str = Field(description='"Example ISP <noc@example.net>"')
    reply_to: str | None = None
    subject: SubscriberTemplate = DEFAULT_OUTAGE_SUBJECT
    body: SubscriberTemplate = DEFAULT_OUTAGE_TEXT
    resolved_subject: SubscriberTemplate = DEFAULT_CLEAR_SUBJECT
    resolved_body: SubscriberTemplate = DEFAULT_CLEAR_TEXT
    degraded_subject: SubscriberTemplate = "Slower service in your area ({incident.id})"
    degraded_body: SubscriberTemplate | None = Field(
        default=None, description="the outage text for degraded service (with degraded: "
                                  "true); default: body")
    timeout: float = Field(default=30.0, gt=0, le=120,
                           description="seconds for one whole SMTP conversation")

    @field_validator("from_address", "reply_to")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            _, addr = email.utils.parseaddr(v)
            if "@" not in addr or any(c in v for c in "\r\n"):
                raise ValueError('not an e-mail address (write "noc@example.net" or '
                                 '"Example ISP <noc@example.net>")')
        return v

    @model_validator(mode="after")
    def _safe(self) -> EmailTarget:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.security == "plaintext" and not _is_loopback(self.host):
            raise ValueError(f"security plaintext would send subscriber addresses (and the "
                             f"password) in clear text to {self.host}: use starttls or tls, "
                             "or a relay on this host (host: 127.0.0.1)")
        if self.security == "plaintext" and self.tls is not None:
            raise ValueError("tls settings need security starttls or tls, not plaintext")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "plaintext": 25}[self.security]


class SmsTarget(HttpTargetBase, NotifyTarget):
    """Customer SMS through an HTTP gateway that takes a TMF681 ``CommunicationMessage``
    (``actions/executors/sms.py``); ``Idempotency-Key`` is the action key."""

    kind: Literal["sms"]
    url: HttpUrl = Field(description="where to POST, e.g. https://sms.example.net/tmf-api/"
                                     "communicationManagement/v4/communicationMessage")
    sender: str = Field(min_length=1, max_length=20,
                        description="sender id: a phone number or an alphanumeric name")
    body: SubscriberTemplate = DEFAULT_OUTAGE_SMS
    resolved_body: SubscriberTemplate = DEFAULT_CLEAR_SMS
    degraded_body: SubscriberTemplate | None = Field(
        default=None, description="the outage text for degraded service (with degraded: "
                                  "true); default: body")
    max_chars: int = Field(default=320, ge=70, le=1600,
                           description="longer texts are cut (an SMS part is 160 characters)")


Target = Annotated[
    WebhookTarget | LogTarget | TicketTarget | DispatchTarget | PagerDutyTarget
    | OpsgenieTarget | CrmOfferTarget | MqttTarget | SlaCreditTarget | RemediationTarget
    | EmailTarget | SmsTarget,
    Field(discriminator="kind"),
]
