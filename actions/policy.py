"""Policy as data: rules that match incident events to actions on named targets."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from actions.guardrail_config import Approval, GuardrailPolicy, Seconds
from actions.targets import Target
from correlator.incidents import EventType, IncidentEvent, IncidentKind
from correlator.maintenance import DAYS, Day, TimeOfDay, TimeZoneName, zone
from probes.source import Located, Problem, SourceError, Strict, load_yaml, validate

EventName = EventType  # one list, in correlator.incidents


def _default_events() -> list[EventName]:
    return ["opened", "resolved"]


class TimeWindow(Strict):
    """``time_of_day``: the event happened between ``start`` and ``end``, local time in
    ``timezone``, on one of ``days`` (default: every day). A window that crosses midnight
    (22:00-06:00) belongs to the day it starts on."""

    start: TimeOfDay = Field(description='local time, "HH:MM"')
    end: TimeOfDay = Field(description='local time, "HH:MM" (not included)')
    timezone: TimeZoneName
    days: list[Day] | None = Field(default=None, min_length=1,
                                   description="mon..sun; the day the window starts on")

    @model_validator(mode="after")
    def _possible(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: the window would "
                             "be empty; give two different times")
        return self

    def describe(self) -> str:
        days = "" if self.days is None else " " + ",".join(self.days)
        return f"{self.start:%H:%M}-{self.end:%H:%M}{days} {self.timezone}"

    def contains(self, ts: float) -> bool:
        local = dt.datetime.fromtimestamp(ts, zone(self.timezone))
        t, day = local.time(), local.weekday()
        if self.start < self.end:
            inside = self.start <= t < self.end
        elif t >= self.start:  # crosses midnight, evening part: starts today
            inside = True
        else:  # morning part: the window started yesterday
            inside, day = t < self.end, (day - 1) % 7
        return inside and (self.days is None or DAYS[day] in self.days)

    def local(self, ts: float) -> str:
        return f"{dt.datetime.fromtimestamp(ts, zone(self.timezone)):%a %H:%M}"


class Match(Strict):
    events: list[EventName] = Field(default_factory=_default_events)
    kind: list[IncidentKind] | None = None
    severity: list[Literal["critical", "major", "minor"]] | None = None
    role: list[str] | None = None
    site: list[str] | None = None
    min_subscribers: int = Field(default=0, ge=0)
    min_revenue: float = Field(default=0.0, ge=0)
    sla_tier: list[str] | None = Field(
        default=None, description="at least one affected subscriber is in one of these tiers"
    )
    planned: bool | None = Field(
        default=None, description="true: only incidents inside a maintenance window or "
                                  "silence; false: only the others",
    )
    time_of_day: TimeWindow | None = Field(
        default=None, description="the event happened inside this local time window")
    min_duration: Seconds | None = Field(
        default=None, description="the incident has been open at least this long (see "
                                  "hold_until for opened events)")


class ActionRef(Strict):
    target: str


class Rule(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    when: Match = Field(default_factory=Match)
    do: list[ActionRef] = Field(min_length=1)
    dry_run: bool | None = None
    stop: bool = False
    approval: Approval | None = Field(
        default=None, description="its actions wait for a person: {required: true, "
                                  "expires_after: 1h}")


class Policy(Strict):
    dry_run: bool = False
    targets: dict[str, Target] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    guardrails: GuardrailPolicy = Field(default_factory=GuardrailPolicy)

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice; names must be unique")
            seen.add(rule.name)
        return self


def matches(rule: Rule, event: IncidentEvent) -> bool:
    return not explain(rule, event)


def span(seconds: float) -> str:
    """``90`` → ``90s``, ``900`` → ``15m``, ``7200`` → ``2h``: a duration as people write it."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def open_for(event: IncidentEvent) -> float:
    """How long the incident had been open at ``event``: its whole life once resolved."""
    inc = event.incident
    until = inc.resolved_at if inc.resolved_at is not None else event.ts
    return max(0.0, until - inc.opened_at)


def hold_until(rule: Rule, event: IncidentEvent) -> float | None:
    """For an ``opened`` event and a rule with ``min_duration``: when its actions may
    first run (opened_at + min_duration); until then they wait in the journal, and they
    are dropped (blocked) if the incident resolves first. None: no hold."""
    m = rule.when.min_duration
    if m is None or event.type != "opened":
        return None
    return event.incident.opened_at + m


def _listed(values: Iterable[str]) -> str:
    return "[" + ", ".join(values) + "]"


def explain(rule: Rule, event: IncidentEvent) -> list[str]:
    """Why ``rule`` does not match ``event``: one reason per failing condition, in the
    order ``matches`` checks them; an empty list means it matches."""
    m = rule.when
    inc = event.incident
    why: list[str] = []
    if event.type not in m.events:
        why.append(f"event {event.type} is not in events {_listed(m.events)}")
    if m.kind is not None and inc.kind not in m.kind:
        why.append(f"kind {inc.kind} is not in kind {_listed(m.kind)}")
    if m.severity is not None and inc.severity not in m.severity:
        why.append(f"severity {inc.severity} is not in severity {_listed(m.severity)}")
    if m.role is not None and inc.role not in m.role:
        why.append(f"role {inc.role} is not in role {_listed(m.role)}")
    if m.site is not None and inc.site not in m.site:
        site = "(none)" if inc.site is None else inc.site
        why.append(f"site {site} is not in site {_listed(m.site)}")
    if inc.impact.subscriber_count < m.min_subscribers:
        why.append(f"{inc.impact.subscriber_count} subscriber(s) affected, fewer than "
                   f"min_subscribers {m.min_subscribers}")
    if inc.impact.revenue_at_risk < m.min_revenue:
        why.append(f"revenue at risk {inc.impact.revenue_at_risk:.2f} is below "
                   f"min_revenue {m.min_revenue:.2f}")
    if m.sla_tier is not None and not set(m.sla_tier) & set(inc.impact.subscribers_by_tier):
        tiers = ", ".join(sorted(inc.impact.subscribers_by_tier)) or "none"
        why.append(f"no affected subscriber is in sla_tier {_listed(m.sla_tier)} "
                   f"(affected tiers: {tiers})")
    if m.planned is not None and inc.planned != m.planned:
        why.append(f"planned is {str(inc.planned).lower()}, the rule wants "
                   f"planned {str(m.planned).lower()}")
    if m.time_of_day is not None and not m.time_of_day.contains(event.ts):
        why.append(f"{event.type} at {m.time_of_day.local(event.ts)}, outside time_of_day "
                   f"{m.time_of_day.describe()}")
    if m.min_duration is not None and event.type != "opened" \
            and open_for(event) < m.min_duration:
        verb = "lasted" if event.incident.resolved_at is not None else "open for"
        why.append(f"incident {verb} {span(round(open_for(event)))}, less than "
                   f"min_duration {span(m.min_duration)}")
    return why


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's part in one decision: ``fired`` when it matched and no earlier matching
    rule with ``stop: true`` (``stopped_by``) ended the evaluation before it."""

    rule: Rule
    reasons: tuple[str, ...]
    stopped_by: str | None

    @property
    def matched(self) -> bool:
        return not self.reasons

    @property
    def fired(self) -> bool:
        return self.matched and self.stopped_by is None


def evaluate(policy: Policy, event: IncidentEvent) -> list[Verdict]:
    """Every rule's verdict on ``event``, in rule order; the rules that fire are exactly
    those ``decide`` returns."""
    out: list[Verdict] = []
    stopped_by: str | None = None
    for rule in policy.rules:
        reasons = tuple(explain(rule, event))
        out.append(Verdict(rule, reasons, stopped_by))
        if not reasons and rule.stop and stopped_by is None:
            stopped_by = rule.name
    return out


def decide(policy: Policy, event: IncidentEvent) -> list[tuple[Rule, ActionRef]]:
    """The (rule, action) pairs policy asks for, in rule order."""
    out: list[tuple[Rule, ActionRef]] = []
    for rule in policy.rules:
        if matches(rule, event):
            out.extend((rule, a) for a in rule.do)
            if rule.stop:
                break
    return out


def load_policy(path: str | os.PathLike[str]) -> Policy:
    src = load_yaml(path)
    policy: Policy = validate(Policy, src)
    problems: list[Problem] = []
    for i, rule in enumerate(policy.rules):
        for j, ref in enumerate(rule.do):
            if ref.target not in policy.targets:
                known = ", ".join(sorted(policy.targets)) or "none defined"
                problems.append(src.problem(("rules", i, "do", j, "target"),
                                            f"unknown target (targets: {known})", ref.target))
    problems.extend(_guardrail_problems(policy, src))
    if problems:
        raise SourceError(problems)
    return policy


def _guardrail_problems(policy: Policy, src: Located) -> list[Problem]:
    """Names in ``guardrails:`` that point nowhere: executor kinds no executor implements,
    targets and rules the policy does not have."""
    from actions.executors import FACTORIES

    g = policy.guardrails
    kinds = sorted(FACTORIES)
    problems: list[Problem] = []

    def check(loc: tuple[str | int, ...], values: Iterable[str] | None, known: Iterable[str],
              what: str) -> None:
        known = sorted(known)
        for i, value in enumerate(values or ()):
            if value not in known:
                problems.append(src.problem(
                    (*loc, i), f"unknown {what} ({what}s: {', '.join(known) or 'none'})", value))

    check(("guardrails", "remediation"), g.remediation, kinds, "executor kind")
    check(("guardrails", "customer_facing"), g.customer_facing, kinds, "executor kind")
    for i, gate in enumerate(g.approvals):
        loc = ("guardrails", "approvals", i, "when")
        check((*loc, "executors"), gate.when.executors, kinds, "executor kind")
        check((*loc, "targets"), gate.when.targets, policy.targets, "target")
        check((*loc, "rules"), gate.when.rules, (r.name for r in policy.rules), "rule")
    for i, lim in enumerate(g.rate_limits):
        check(("guardrails", "rate_limits", i, "executors"), lim.executors, kinds,
              "executor kind")
    if g.quiet_hours is not None:
        check(("guardrails", "quiet_hours", "executors"), g.quiet_hours.executors, kinds,
              "executor kind")
    if g.message_caps is not None:
        check(("guardrails", "message_caps", "executors"), g.message_caps.executors, kinds,
              "executor kind")
    return problems


def targets_by_kind(policy: Policy) -> Mapping[str, str]:
    return {name: t.kind for name, t in policy.targets.items()}
