"""Shadow mode offline: replay recorded incident events against a policy.

``netreflex policy test --policy P --incidents RECORDED.jsonl [--against CURRENT]`` reads
one event per line -- the webhook / action-log payload (``{"event": ..., "incident":
{...}}``) or ``Incident.to_dict()`` with an ``"event"`` key -- and says, for each, which
rules fire, on which targets, and what every guardrail would do at the event's time.
Guardrails that need the live daemon (blast radius: how much is down; circuit breakers:
delivery history) say "not evaluated"; approvals show as waiting. An action held back by
a rule's ``min_duration`` is judged at the time it would run, against the incident as the
recording last shows it (blocked if it resolved sooner). Each allowed action counts
against rate limits and message caps as if it had been sent. Nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, cast, get_args

from actions.dispatcher import plans_for
from actions.guardrails import Guardrails
from actions.journal import Journal
from actions.policy import Policy, evaluate
from actions.types import Executor
from correlator.incidents import EventType, Incident, IncidentEvent
from probes.source import Problem, SourceError


@dataclass(frozen=True, slots=True)
class Replayed:
    """One action (or, with ``rule`` None, an event no rule fired on) in a replay."""

    index: int  # which event (1-based line order of the events read)
    incident: str
    event: str
    ts: float
    rule: str | None = None
    target: str | None = None
    recipient: str | None = None
    key: str | None = None
    dry_run: bool = False
    outcome: str = "none"  # allowed | waiting | deferred | blocked | duplicate | failed | none
    reason: str = ""
    verdicts: tuple[Mapping[str, Any], ...] = ()
    why_not: tuple[str, ...] = ()  # no rule fired: "rule: why it did not match", each rule

    @property
    def ident(self) -> tuple[int, str | None, str | None, str | None]:
        return (self.index, self.rule, self.target, self.recipient)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "incident": self.incident, "event": self.event,
                "ts": self.ts, "rule": self.rule, "target": self.target,
                "recipient": self.recipient, "key": self.key, "dry_run": self.dry_run,
                "outcome": self.outcome, "reason": self.reason,
                "verdicts": [dict(v) for v in self.verdicts], "why_not": list(self.why_not)}


def read_events(path: str | os.PathLike[str]) -> list[IncidentEvent]:
    """Recorded events, in file order; every bad line is a problem with its line number."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError([Problem(file, None, "", f"cannot read: {exc}")]) from None
    events: list[IncidentEvent] = []
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            events.append(_event(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(file, n, "", f"not JSON: {exc.msg}"))
        except (KeyError, TypeError, ValueError) as exc:
            why = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            problems.append(Problem(file, n, "", "not a recorded incident event (the webhook "
                                    "payload, or Incident.to_dict() with \"event\"): " + why))
    if problems:
        raise SourceError(problems)
    return events


def _event(obj: Any) -> IncidentEvent:
    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object")
    if isinstance(obj.get("incident"), dict):
        inc = obj["incident"]
    else:
        inc = {k: v for k, v in obj.items() if k not in ("event", "event_ts", "ts")}
    name = obj.get("event")
    if name not in get_args(EventType):
        raise ValueError(f"event must be one of {', '.join(get_args(EventType))} "
                         f"(got {name!r})")
    incident = Incident.from_dict(inc)
    ts = obj.get("event_ts", obj.get("ts", incident.updated_at))
    if not isinstance(ts, int | float):
        raise TypeError("event_ts must be a number (Unix time)")
    return IncidentEvent(cast(EventType, name), incident, float(ts))


def replay(policy: Policy, events: Iterable[IncidentEvent], *,
           executors: Mapping[str, Executor] | None = None) -> list[Replayed]:
    """What ``policy`` would do with ``events``, replayed in time order (stable) and
    numbered in that order (see the module docstring)."""
    ordered = sorted(events, key=lambda e: e.ts)
    last = {ev.incident.id: ev.incident for ev in ordered}  # as the recording ends
    journal = Journal(":memory:")
    guard = Guardrails(policy, journal, down_share=None, live=False, incident=last.get)
    out: list[Replayed] = []
    try:
        for i, ev in enumerate(ordered, 1):
            inc = ev.incident
            plans, broken = plans_for(policy, ev, executors or {})
            fresh = {p.key for p in journal.plan(plans, ev.ts)}
            if not plans:
                why_not = tuple(f"{v.rule.name}: {'; '.join(v.reasons)}"
                                for v in evaluate(policy, ev) if v.reasons)
                out.append(Replayed(i, inc.id, ev.type, ev.ts, reason="no rule fired",
                                    why_not=why_not))
            for p in plans:
                base = Replayed(i, inc.id, ev.type, ev.ts, rule=p.rule, target=p.target,
                                recipient=p.recipient, key=p.key, dry_run=p.dry_run)
                if p.key not in fresh:
                    out.append(replace(base, outcome="duplicate", reason="the same decision "
                                       "was made for an earlier event: planned once"))
                    continue
                if p.key in broken:
                    out.append(replace(base, outcome="failed", reason=broken[p.key]))
                    continue
                at = max(ev.ts, p.not_before or ev.ts)  # held back (min_duration): then
                d = guard.check(p, at)
                if d.outcome == "allowed" and not p.dry_run:
                    guard.commit(p, at)
                    journal.start(p.key, at)
                out.append(replace(base, outcome=d.outcome,
                                   reason="" if d.outcome == "allowed" else d.reason,
                                   verdicts=tuple(d.to_dicts())))
    finally:
        journal.close()
    return out


@dataclass(frozen=True, slots=True)
class Change:
    sign: str  # "+" only with the new policy, "-" only with the current one, "~" different
    new: Replayed | None
    old: Replayed | None


def compare(new: Sequence[Replayed], old: Sequence[Replayed]) -> list[Change]:
    """What the new policy does differently from the current one, event by event."""
    a = {r.ident: r for r in new if r.rule is not None}
    b = {r.ident: r for r in old if r.rule is not None}
    out: list[Change] = []
    for ident in sorted(a.keys() | b.keys(), key=lambda t: (t[0], *(x or "" for x in t[1:]))):
        x, y = a.get(ident), b.get(ident)
        if y is None:
            out.append(Change("+", x, None))
        elif x is None:
            out.append(Change("-", None, y))
        elif (x.outcome, x.dry_run) != (y.outcome, y.dry_run):
            out.append(Change("~", x, y))
    return out


# --- output ---------------------------------------------------------------------------


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _what(r: Replayed) -> str:
    to = f"{r.rule} -> {r.target}" + (f" ({r.recipient})" if r.recipient else "")
    dry = " (dry run)" if r.dry_run else ""
    return f"{to}: {r.outcome}{dry}" + (f" -- {r.reason}" if r.reason else "")


def render(results: Sequence[Replayed], out: TextIO, *, title: str,
           changes: Sequence[Change] | None = None, against: str | None = None) -> None:
    out.write(title + "\n")
    last = 0
    for r in results:
        if r.index != last:
            out.write(f"\n#{r.index} {r.incident} {r.event} at {_when(r.ts)}\n")
            last = r.index
        if r.rule is None:
            out.write("  no rule fired\n")
            for line in r.why_not:
                out.write(f"      rule {line}\n")
            continue
        out.write(f"  {_what(r)}\n")
        for v in r.verdicts:  # what else would have held it, beyond what decided
            if v["outcome"] not in ("allowed", r.outcome):
                out.write(f"      also {v['guardrail']}: {v['outcome']}: {v['reason']}\n")
    counts: dict[str, int] = {}
    offline: set[str] = set()
    for r in results:
        if r.rule is not None:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        offline |= {v["guardrail"] for v in r.verdicts
                    if str(v["reason"]).startswith("not evaluated")}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no actions"
    out.write(f"\nactions: {summary}\n")
    if offline:
        out.write(f"not evaluated offline (they need the running daemon): "
                  f"{', '.join(sorted(offline))}\n")
    if changes is None:
        return
    if not changes:
        out.write(f"\nno difference from {against}\n")
        return
    out.write(f"\ndifference from {against} (+ only with the new policy, - only with the "
              "current one, ~ decided differently):\n")
    for c in changes:
        one = c.new or c.old
        assert one is not None
        head = f"  {c.sign} #{one.index} {one.incident} {one.event}: "
        if c.sign == "~":
            assert c.new is not None and c.old is not None
            out.write(f"{head}{c.new.rule} -> {c.new.target}: {c.old.outcome} -> "
                      f"{c.new.outcome}" + (f" -- {c.new.reason}" if c.new.reason else "")
                      + "\n")
        else:
            out.write(head + _what(one) + "\n")
