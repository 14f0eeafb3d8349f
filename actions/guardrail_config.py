"""The ``guardrails:`` section of the policy file and a rule's ``approval:``.

Executor kinds are put in classes by the policy (``remediation``, ``customer_facing``);
the guardrails that care about a class (blast radius, maintenance, quiet hours, message
caps) apply to the kinds in it. Durations are seconds or ``90s``, ``15m``, ``2h``, ``1d``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Gt
from pydantic import BeforeValidator, Field, model_validator

from correlator.maintenance import TimeOfDay, TimeZoneName, parse_duration
from probes.source import Strict


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Gt(0)]


class Approval(Strict):
    """A rule's ``approval:``: its actions wait in ``waiting_approval`` until a person
    approves (or denies) them; unanswered, they expire into ``blocked``."""

    required: bool = True
    expires_after: Seconds | None = Field(
        default=None, description="default: guardrails.approval_expires_after")


class GateWhen(Strict):
    """Which actions a global approval gate holds: every condition given must hold."""

    executors: list[str] | None = Field(default=None, min_length=1,
                                        description="executor kinds (a target's kind)")
    targets: list[str] | None = Field(default=None, min_length=1)
    rules: list[str] | None = Field(default=None, min_length=1)
    kind: list[str] | None = Field(default=None, min_length=1, description="incident kind")
    severity: list[Literal["critical", "major", "minor"]] | None = Field(default=None,
                                                                        min_length=1)
    role: list[str] | None = Field(default=None, min_length=1,
                                   description="role of the incident's root device")
    site: list[str] | None = Field(default=None, min_length=1)
    min_subscribers: int | None = Field(default=None, ge=0)
    min_revenue: float | None = Field(default=None, ge=0)
    min_amount: float | None = Field(
        default=None, ge=0, description="the action's own amount (a credit, an offer); an "
                                        "action that states no amount does not match")

    @model_validator(mode="after")
    def _something(self) -> GateWhen:
        if not any(v is not None for v in self.model_dump().values()):
            raise ValueError("say which actions need approval: executors, targets, rules, "
                             "kind, severity, role, site, min_subscribers, min_revenue or "
                             "min_amount")
        return self


class ApprovalGate(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    when: GateWhen
    expires_after: Seconds | None = Field(
        default=None, description="default: guardrails.approval_expires_after")


class RateLimit(Strict):
    """A token bucket: ``rate`` actions per ``every``, bursts up to ``burst``. Actions over
    the limit are deferred (kept in the journal and tried when a token is free)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    per: Literal["kind", "target", "subscriber"] = Field(
        description="one bucket per executor kind, per target, or per subscriber (actions "
                    "with a recipient only)")
    executors: list[str] | None = Field(default=None, min_length=1,
                                        description="only these executor kinds")
    rate: float = Field(gt=0, description="actions per `every`")
    every: Seconds = 60.0
    burst: float | None = Field(default=None, ge=1, description="bucket size; default: rate")

    @property
    def capacity(self) -> float:
        return max(1.0, self.burst if self.burst is not None else self.rate)


class BlastRadius(Strict):
    """Stop automatic remediation when too much of the network looks down at once (usually
    a monitoring fault): remediation actions then wait for a person instead."""

    max_down_share: float = Field(gt=0, le=1, description="e.g. 0.2: more than 20% down")


class QuietHours(Strict):
    """Customer-facing actions are deferred (not dropped) from ``start`` to ``end``, local
    time in ``timezone``; the window may cross midnight."""

    start: TimeOfDay = Field(description='local time, "HH:MM"')
    end: TimeOfDay = Field(description='local time, "HH:MM"')
    timezone: TimeZoneName
    executors: list[str] | None = Field(default=None, min_length=1,
                                        description="default: the customer_facing kinds")

    @model_validator(mode="after")
    def _possible(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: quiet hours would "
                             "never end (or never begin); give two different times")
        return self


class MessageCaps(Strict):
    """At most ``max`` customer-facing actions per subscriber (``recipient``) within
    ``window``; more are blocked (a fifth outage text in a day helps nobody)."""

    max: int = Field(ge=1)
    window: Seconds = 86_400.0
    executors: list[str] | None = Field(default=None, min_length=1,
                                        description="default: the customer_facing kinds")


class CircuitBreaker(Strict):
    """Per target: after ``failures`` failed attempts in a row the circuit opens and its
    actions are deferred; after ``cool_down`` one trial goes through (half-open)."""

    failures: int = Field(default=5, ge=1)
    cool_down: Seconds = 60.0


class GuardrailPolicy(Strict):
    remediation: list[str] = Field(
        default_factory=list,
        description="executor kinds that change the network (blast radius applies)")
    customer_facing: list[str] = Field(
        default_factory=list,
        description="executor kinds that reach subscribers (maintenance, quiet hours, caps)")
    approval_expires_after: Seconds = 3600.0
    approvals: list[ApprovalGate] = Field(default_factory=list)
    rate_limits: list[RateLimit] = Field(default_factory=list)
    blast_radius: BlastRadius | None = None
    block_during_maintenance: bool = Field(
        default=True, description="customer-facing actions about planned incidents "
                                  "(maintenance windows, silences) are blocked")
    quiet_hours: QuietHours | None = None
    message_caps: MessageCaps | None = None
    circuit_breaker: CircuitBreaker | None = Field(default_factory=CircuitBreaker)

    @model_validator(mode="after")
    def _unique(self) -> GuardrailPolicy:
        for what, names in (("approvals", [g.name for g in self.approvals]),
                            ("rate_limits", [r.name for r in self.rate_limits])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{what}: name {sorted(dup)[0]!r} is used twice; names "
                                 "must be unique")
        return self
