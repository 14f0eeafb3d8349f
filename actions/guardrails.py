"""Guardrails: the checks every action passes before an executor sees it.

The dispatcher calls ``Guardrails.check`` before every attempt of every action (retries
and actions resumed after a crash included) and hands the plan to its executor only when
the decision is ``allowed``. Each configured guardrail gives a verdict -- allowed,
waiting (for a person), deferred (until a time) or blocked -- with its reason; all of
them are written to the action's journal row, which is how ``explain`` answers "why
didn't it?". The strongest verdict decides: blocked > waiting > deferred > allowed.

State: rate-limit buckets and circuit breakers live in memory (a restart refills the
buckets and closes the circuits); per-subscriber message caps are counted from the
journal, so they hold across restarts. Time comes from the caller (``now``), so every
guardrail is tested with a fake clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from actions.guardrail_config import (
    ApprovalGate,
    CircuitBreaker,
    GateWhen,
    GuardrailPolicy,
    QuietHours,
    RateLimit,
)
from actions.policy import Policy, span
from actions.types import ActionPlan, Outcome
from correlator.incidents import Incident

VerdictOutcome = Literal["allowed", "waiting", "deferred", "blocked"]
_RANK: Mapping[str, int] = {"allowed": 0, "deferred": 1, "waiting": 2, "blocked": 3}
HALF_OPEN_RECHECK = 5.0  # seconds: how often actions queued behind a half-open trial look again
_PRUNE_EVERY = 1024  # checks between sweeps of idle (full) rate-limit buckets


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """One guardrail's word on one attempt. ``until``: when a deferred action is tried
    again, or when a waiting one's approval expires."""

    guardrail: str
    outcome: VerdictOutcome
    reason: str
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"guardrail": self.guardrail, "outcome": self.outcome, "reason": self.reason,
                "until": self.until}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: VerdictOutcome
    verdicts: tuple[GuardVerdict, ...]
    until: float | None = None

    @property
    def deciding(self) -> tuple[GuardVerdict, ...]:
        """The verdicts that made the outcome (all of them when it is allowed)."""
        return tuple(v for v in self.verdicts if v.outcome == self.outcome)

    @property
    def reason(self) -> str:
        return "; ".join(f"{v.guardrail}: {v.reason}" for v in self.deciding)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.verdicts]


def decide_outcome(verdicts: Sequence[GuardVerdict]) -> Decision:
    if not verdicts:
        return Decision("allowed", ())
    outcome = max((v.outcome for v in verdicts), key=lambda o: _RANK[o])
    untils = [v.until for v in verdicts if v.outcome == outcome and v.until is not None]
    until: float | None = None
    if untils:
        # deferred: the last guardrail to let go; waiting: the first approval to expire
        until = max(untils) if outcome == "deferred" else min(untils)
    return Decision(outcome, tuple(verdicts), until)


def inputs_of(incident: Incident) -> dict[str, Any]:
    """The facts about an incident that guardrails judge on, as the decision saw them."""
    return {
        "incident": incident.id, "revision": incident.revision, "kind": incident.kind,
        "severity": incident.severity, "role": incident.role, "site": incident.site,
        "device": incident.device, "planned": incident.planned,
        "planned_by": list(incident.planned_by),
        "subscriber_count": incident.impact.subscriber_count,
        "revenue_at_risk": incident.impact.revenue_at_risk,
    }


def facts(plan: ActionPlan) -> Mapping[str, Any]:
    """``plan.inputs``; for rows journaled before inputs were kept, from the payload."""
    if plan.inputs:
        return plan.inputs
    inc = plan.payload.get("incident")
    if isinstance(inc, Mapping):
        imp = inc.get("impact") or {}
        return {"incident": inc.get("id"), "kind": inc.get("kind"),
                "severity": inc.get("severity"), "role": inc.get("role"),
                "site": inc.get("site"), "planned": bool(inc.get("planned")),
                "planned_by": list(inc.get("planned_by") or ()),
                "subscriber_count": imp.get("subscriber_count", 0),
                "revenue_at_risk": imp.get("revenue_at_risk", 0.0)}
    return {}


class MessageLog(Protocol):
    """Where per-subscriber caps are counted (the journal)."""

    def messages_since(self, recipient: str, executors: Sequence[str], since: float,
                       exclude: str) -> int: ...


# --- the stateful pieces ---------------------------------------------------------------


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float
    at: float

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
            self.at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0 when one is now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.per_second

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def give_back(self, now: float) -> None:
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + 1.0)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


@dataclass(slots=True)
class Breaker:
    failures: int = 0
    opened_at: float | None = None
    trial: str | None = None  # the key let through while half-open

    def state(self, now: float, cfg: CircuitBreaker) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if now < self.opened_at + cfg.cool_down else "half-open"


# --- the guardrails --------------------------------------------------------------------


@dataclass(slots=True)
class Guardrails:
    """Every guardrail of one policy. ``down_share`` says which share (0..1) of the devices
    looks down now; without it (offline replay) the blast radius is not evaluated.
    ``live``: False in an offline replay, where circuit breakers have nothing to go on.
    ``incident(id)``: the incident now, for a rule's ``min_duration``; without it that
    check is not evaluated."""

    policy: Policy
    messages: MessageLog
    down_share: Callable[[], float] | None = None
    live: bool = True
    incident: Callable[[str], Incident | None] | None = None  # as the correlator has it now
    _buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    _breakers: dict[str, Breaker] = field(default_factory=dict)
    _checks: int = 0

    @property
    def config(self) -> GuardrailPolicy:
        return self.policy.guardrails

    def use(self, policy: Policy) -> None:
        """Switch to a reloaded policy: buckets of rate limits that did not change keep
        their level; changed or removed ones start afresh. Circuits are kept."""
        same = {lim.name for lim in policy.guardrails.rate_limits
                if lim in self.config.rate_limits}
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] in same}
        self.policy = policy

    def check(self, plan: ActionPlan, now: float) -> Decision:
        """Every guardrail's verdict on the next attempt of ``plan``; takes nothing (see
        ``commit``)."""
        self._checks += 1
        if self._checks % _PRUNE_EVERY == 0:
            self._prune(now)
        f = facts(plan)
        verdicts: list[GuardVerdict] = []
        rule = next((r for r in self.policy.rules if r.name == plan.rule), None)
        if rule is None:
            verdicts.append(GuardVerdict("policy", "blocked", f"rule {plan.rule} is no longer "
                                         "in the policy; nothing decides this action now"))
            return decide_outcome(verdicts)
        verdicts.extend(self._min_duration(plan, rule.when.min_duration, now))
        verdicts.extend(self._maintenance(plan, f))
        verdicts.extend(self._message_caps(plan, now))
        verdicts.append(self._approval(plan, f, now, rule.approval is not None
                                       and rule.approval.required,
                                       None if rule.approval is None
                                       else rule.approval.expires_after))
        verdicts.extend(self._blast_radius(plan, now))
        verdicts.extend(self._quiet_hours(plan, now))
        verdicts.extend(self._rate_limits(plan, now))
        verdicts.extend(self._circuit(plan, now))
        return decide_outcome(verdicts)

    def commit(self, plan: ActionPlan, now: float) -> None:
        """The attempt goes ahead: take a token from each bucket that applies, and let it
        be the trial of a half-open circuit."""
        for lim in self.config.rate_limits:
            scope = self._scope(lim, plan)
            if scope is not None:
                self._bucket(lim, scope, now).take(now)
        cb = self.config.circuit_breaker
        if cb is not None and self.live:
            br = self._breakers.setdefault(plan.target, Breaker())
            if br.state(now, cb) == "half-open":
                br.trial = plan.key

    def observe(self, plan: ActionPlan, outcome: Outcome, now: float) -> None:
        """What the attempt came to: feeds the target's circuit breaker. ``wait`` (the
        executor did nothing, not yet) gives back what ``commit`` took."""
        if outcome == "wait":
            self._release(plan, now)
            return
        cb = self.config.circuit_breaker
        if cb is None or outcome in ("dry_run", "blocked"):
            return
        br = self._breakers.setdefault(plan.target, Breaker())
        if outcome == "succeeded":
            br.failures, br.opened_at, br.trial = 0, None, None
            return
        br.failures += 1
        if br.trial is not None or br.failures >= cb.failures:
            br.opened_at, br.trial = now, None

    def _release(self, plan: ActionPlan, now: float) -> None:
        """Undo ``commit`` for an attempt that did nothing: its tokens go back to their
        buckets (an executor that keeps saying "wait" must not starve the others), and a
        half-open circuit's trial slot is freed."""
        for lim in self.config.rate_limits:
            scope = self._scope(lim, plan)
            b = None if scope is None else self._buckets.get((lim.name, scope))
            if b is not None:
                b.give_back(now)
        br = self._breakers.get(plan.target)
        if br is not None and br.trial == plan.key:
            br.trial = None

    def breaker_state(self, target: str, now: float) -> str:
        cb = self.config.circuit_breaker
        br = self._breakers.get(target)
        return "closed" if cb is None or br is None else br.state(now, cb)

    # --- each guardrail ----------------------------------------------------------------

    def _kinds(self, listed: Iterable[str] | None) -> tuple[str, ...]:
        return tuple(listed) if listed is not None else tuple(self.config.customer_facing)

    def _min_duration(self, plan: ActionPlan, least: float | None,
                      now: float) -> list[GuardVerdict]:
        """An ``opened`` action of a rule with ``min_duration`` runs only once the incident
        has been open that long, and is dropped if it ended (resolved, merged) sooner."""
        if least is None or plan.event != "opened":
            return []
        inc = None if self.incident is None else self.incident(plan.incident_id)
        if inc is None:
            return [GuardVerdict("min_duration", "allowed",
                                 "not evaluated: the incident is not known here")]
        due = inc.opened_at + least
        if inc.resolved_at is not None and inc.resolved_at < due:
            return [GuardVerdict("min_duration", "blocked",
                                 f"incident {inc.state} after "
                                 f"{span(round(inc.resolved_at - inc.opened_at))}, before "
                                 f"min_duration {span(least)}: dropped")]
        if now < due:
            return [GuardVerdict("min_duration", "deferred",
                                 f"held until the incident has been open {span(least)} "
                                 "(min_duration)", until=due)]
        return [GuardVerdict("min_duration", "allowed",
                             f"incident open for {span(round(now - inc.opened_at))} "
                             f"(min_duration {span(least)})")]

    def _maintenance(self, plan: ActionPlan, f: Mapping[str, Any]) -> list[GuardVerdict]:
        g = self.config
        if not g.block_during_maintenance or plan.executor not in g.customer_facing:
            return []
        if f.get("planned"):
            by = ", ".join(f.get("planned_by") or ()) or "a maintenance window or silence"
            return [GuardVerdict("maintenance", "blocked",
                                 f"incident is planned work ({by}); {plan.executor} is "
                                 "customer-facing and is not sent about planned work")]
        return [GuardVerdict("maintenance", "allowed", "incident is not planned work")]

    def _message_caps(self, plan: ActionPlan, now: float) -> list[GuardVerdict]:
        mc = self.config.message_caps
        if mc is None or plan.recipient is None:
            return []
        kinds = self._kinds(mc.executors)
        if plan.executor not in kinds:
            return []
        sent = self.messages.messages_since(plan.recipient, kinds, now - mc.window, plan.key)
        window = span(mc.window)
        if sent >= mc.max:
            return [GuardVerdict("message_caps", "blocked",
                                 f"{plan.recipient} already got {sent} message(s) in the last "
                                 f"{window} (cap {mc.max})")]
        return [GuardVerdict("message_caps", "allowed",
                             f"{plan.recipient}: {sent} of {mc.max} message(s) in the last "
                             f"{window}")]

    def _approval(self, plan: ActionPlan, f: Mapping[str, Any], now: float,
                  rule_wants: bool, rule_expiry: float | None) -> GuardVerdict:
        g = self.config
        why: list[str] = []
        expiries: list[float] = []
        if rule_wants:
            why.append(f"rule {plan.rule} requires approval")
            expiries.append(rule_expiry or g.approval_expires_after)
        for gate in g.approvals:
            hit = _gate_hit(gate, plan, f)
            if hit is not None:
                why.append(f"gate {gate.name} ({hit})")
                expiries.append(gate.expires_after or g.approval_expires_after)
        if not why:
            return GuardVerdict("approval", "allowed", "no approval gate applies")
        if plan.approved_by is not None:
            return GuardVerdict("approval", "allowed",
                                f"approved by {plan.approved_by} ({'; '.join(why)})")
        return GuardVerdict("approval", "waiting", "needs a person's approval: "
                            + "; ".join(why), until=now + min(expiries))

    def _blast_radius(self, plan: ActionPlan, now: float) -> list[GuardVerdict]:
        br = self.config.blast_radius
        if br is None or plan.executor not in self.config.remediation:
            return []
        if self.down_share is None:
            return [GuardVerdict("blast_radius", "allowed",
                                 "not evaluated: no live view of how much is down (offline)")]
        share = self.down_share()
        if share <= br.max_down_share:
            return [GuardVerdict("blast_radius", "allowed",
                                 f"{share:.0%} of devices look down (limit "
                                 f"{br.max_down_share:.0%})")]
        if plan.approved_by is not None:
            return [GuardVerdict("blast_radius", "allowed",
                                 f"{share:.0%} of devices look down (limit "
                                 f"{br.max_down_share:.0%}), approved by {plan.approved_by}")]
        return [GuardVerdict(
            "blast_radius", "waiting",
            f"{share:.0%} of devices look down at once (limit {br.max_down_share:.0%}): "
            "that is usually a monitoring fault, so automatic remediation waits for a person",
            until=now + self.config.approval_expires_after)]

    def _quiet_hours(self, plan: ActionPlan, now: float) -> list[GuardVerdict]:
        qh = self.config.quiet_hours
        if qh is None or plan.executor not in self._kinds(qh.executors):
            return []
        span = f"{qh.start:%H:%M}-{qh.end:%H:%M} {qh.timezone}"
        end = quiet_until(qh, now)
        if end is None:
            return [GuardVerdict("quiet_hours", "allowed", f"outside quiet hours ({span})")]
        local = dt.datetime.fromtimestamp(end, ZoneInfo(qh.timezone))
        return [GuardVerdict("quiet_hours", "deferred",
                             f"quiet hours ({span}): queued until {local:%Y-%m-%d %H:%M %Z}",
                             until=end)]

    def _scope(self, lim: RateLimit, plan: ActionPlan) -> str | None:
        if lim.executors is not None and plan.executor not in lim.executors:
            return None
        if lim.per == "kind":
            return plan.executor
        if lim.per == "target":
            return plan.target
        return plan.recipient

    def _bucket(self, lim: RateLimit, scope: str, now: float) -> TokenBucket:
        key = (lim.name, scope)
        b = self._buckets.get(key)
        if b is None:
            b = TokenBucket(lim.capacity, lim.rate / lim.every, lim.capacity, now)
            self._buckets[key] = b
        return b

    def _rate_limits(self, plan: ActionPlan, now: float) -> list[GuardVerdict]:
        out = []
        for lim in self.config.rate_limits:
            scope = self._scope(lim, plan)
            if scope is None:
                continue
            what = (f"rate limit {lim.name} ({lim.rate:g} per {span(lim.every)} per "
                    f"{lim.per} {scope})")
            wait = self._bucket(lim, scope, now).wait(now)
            if wait <= 0:
                out.append(GuardVerdict("rate_limit", "allowed", what))
            else:
                out.append(GuardVerdict("rate_limit", "deferred",
                                        f"{what}: used up, next slot in {wait:.1f}s",
                                        until=now + wait))
        return out

    def _circuit(self, plan: ActionPlan, now: float) -> list[GuardVerdict]:
        cb = self.config.circuit_breaker
        if cb is None:
            return []
        if not self.live:
            return [GuardVerdict("circuit_breaker", "allowed",
                                 "not evaluated: no delivery history (offline)")]
        br = self._breakers.get(plan.target)
        state = "closed" if br is None else br.state(now, cb)
        if br is None or state == "closed":
            n = 0 if br is None else br.failures
            return [GuardVerdict("circuit_breaker", "allowed",
                                 f"circuit of {plan.target} closed ({n} failure(s) in a row, "
                                 f"opens at {cb.failures})")]
        assert br.opened_at is not None
        if state == "open":
            until = br.opened_at + cb.cool_down
            return [GuardVerdict("circuit_breaker", "deferred",
                                 f"circuit of {plan.target} open after {br.failures} failure(s) "
                                 f"in a row; half-open in {until - now:.0f}s", until=until)]
        if br.trial is None or br.trial == plan.key:
            return [GuardVerdict("circuit_breaker", "allowed",
                                 f"circuit of {plan.target} half-open: this is the trial")]
        return [GuardVerdict("circuit_breaker", "deferred",
                             f"circuit of {plan.target} half-open: waiting for the trial "
                             f"({br.trial})", until=now + min(cb.cool_down, HALF_OPEN_RECHECK))]

    def _prune(self, now: float) -> None:
        """Forget full buckets: a full bucket is the same as none (bounded memory with one
        bucket per subscriber)."""
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]


def _gate_hit(gate: ApprovalGate, plan: ActionPlan, f: Mapping[str, Any]) -> str | None:
    """Why ``gate`` holds ``plan`` (its conditions, as they matched), or None."""
    w: GateWhen = gate.when
    said: list[str] = []

    def listed(name: str, allowed: list[str] | None, value: Any) -> bool:
        if allowed is None:
            return True
        if value not in allowed:
            return False
        said.append(f"{name} {value}")
        return True

    if not (listed("executor", w.executors, plan.executor)
            and listed("target", w.targets, plan.target)
            and listed("rule", w.rules, plan.rule)
            and listed("kind", w.kind, f.get("kind"))
            and listed("severity", list(w.severity) if w.severity else None, f.get("severity"))
            and listed("role", w.role, f.get("role"))
            and listed("site", w.site, f.get("site"))):
        return None
    if w.min_subscribers is not None:
        n = int(f.get("subscriber_count") or 0)
        if n < w.min_subscribers:
            return None
        said.append(f"{n} subscribers >= {w.min_subscribers}")
    if w.min_revenue is not None:
        r = float(f.get("revenue_at_risk") or 0.0)
        if r < w.min_revenue:
            return None
        said.append(f"revenue at risk {r:.2f} >= {w.min_revenue:.2f}")
    if w.min_amount is not None:
        if plan.amount is None or plan.amount < w.min_amount:
            return None
        said.append(f"amount {plan.amount:.2f} >= {w.min_amount:.2f}")
    return ", ".join(said)


def quiet_until(qh: QuietHours, now: float) -> float | None:
    """When the quiet hours around ``now`` end (Unix time), or None outside them. Local
    time in the window's zone, so it follows daylight saving time."""
    tz = ZoneInfo(qh.timezone)
    local = dt.datetime.fromtimestamp(now, tz)
    t = local.time()
    if qh.start < qh.end:
        inside, ends_tomorrow = qh.start <= t < qh.end, False
    else:  # crosses midnight: 21:00-08:00
        inside, ends_tomorrow = t >= qh.start or t < qh.end, t >= qh.start
    if not inside:
        return None
    day = local.date() + dt.timedelta(days=1 if ends_tomorrow else 0)
    end = dt.datetime.combine(day, qh.end, tzinfo=tz).timestamp()
    return max(end, now + 1.0)

