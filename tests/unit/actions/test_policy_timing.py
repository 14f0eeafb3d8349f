"""Rules that match on the time of day and on how long the incident has lasted."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from actions.dispatcher import Dispatcher
from actions.journal import Journal
from actions.policy import Policy, evaluate, explain, hold_until, load_policy, matches
from actions.replay import render, replay
from actions.types import ActionPlan, ActionResult
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.source import SourceError

LISBON = ZoneInfo("Europe/Lisbon")


def at(day: int, hour: int, minute: int = 0) -> float:
    """Unix time of 2024-06-<day> hour:minute in Lisbon (10 June 2024 was a Monday)."""
    return dt.datetime(2024, 6, day, hour, minute, tzinfo=LISBON).timestamp()


def incident(opened_at: float, *, resolved_at: float | None = None,
             state: str = "open") -> Incident:
    return Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
                    port="p1", role="access", site="north", severity="minor",
                    state=state, opened_at=opened_at,  # type: ignore[arg-type]
                    updated_at=resolved_at or opened_at, resolved_at=resolved_at,
                    impact=Impact(subscribers=("s1",), revenue_by_tier={"residential": 30.0},
                                  subscribers_by_tier={"residential": 1}))


def policy(when: dict[str, object]) -> Policy:
    return Policy.model_validate({
        "targets": {"log": {"kind": "log"}},
        "rules": [{"name": "r", "when": when, "do": [{"target": "log"}]}],
    })


OFFICE = {"start": "08:00", "end": "18:00", "timezone": "Europe/Lisbon",
          "days": ["mon", "tue", "wed", "thu", "fri"]}
NIGHT = {"start": "22:00", "end": "06:00", "timezone": "Europe/Lisbon", "days": ["fri"]}


@pytest.mark.parametrize(
    ("window", "ts", "expected"),
    [
        (OFFICE, at(10, 8, 0), True),  # Monday, start is included
        (OFFICE, at(10, 17, 59), True),
        (OFFICE, at(10, 18, 0), False),  # end is not
        (OFFICE, at(10, 7, 59), False),
        (OFFICE, at(15, 12, 0), False),  # Saturday
        (NIGHT, at(14, 23, 0), True),  # Friday night
        (NIGHT, at(15, 5, 59), True),  # Saturday early: the window began on Friday
        (NIGHT, at(15, 6, 0), False),
        (NIGHT, at(14, 5, 0), False),  # Friday early: that window began on Thursday
        (NIGHT, at(15, 23, 0), False),  # Saturday night
    ],
)
def test_time_of_day(window: dict[str, object], ts: float, expected: bool) -> None:
    rule = policy({"time_of_day": window}).rules[0]
    event = IncidentEvent("opened", incident(ts), ts)
    assert matches(rule, event) is expected
    why = explain(rule, event)
    if expected:
        assert why == []
    else:
        (reason,) = why
        assert "outside time_of_day" in reason and "Europe/Lisbon" in reason


def test_explain_says_which_window_and_when() -> None:
    p = policy({"time_of_day": OFFICE})
    ts = at(10, 19, 30)
    (verdict,) = evaluate(p, IncidentEvent("opened", incident(ts), ts))
    assert verdict.reasons == ("opened at Mon 19:30, outside time_of_day "
                               "08:00-18:00 mon,tue,wed,thu,fri Europe/Lisbon",)


def test_time_of_day_follows_daylight_saving_time() -> None:
    rule = policy({"time_of_day": {"start": "08:00", "end": "09:00",
                                   "timezone": "Europe/Lisbon"}}).rules[0]
    for ts in (dt.datetime(2024, 1, 10, 8, 30, tzinfo=dt.UTC).timestamp(),  # WET = UTC
               dt.datetime(2024, 7, 10, 7, 30, tzinfo=dt.UTC).timestamp()):  # WEST = UTC+1
        assert matches(rule, IncidentEvent("opened", incident(ts), ts))


@pytest.mark.parametrize(
    ("event", "open_for", "expected"),
    [("updated", 14 * 60, False), ("updated", 15 * 60, True),
     ("resolved", 10 * 60, False), ("resolved", 20 * 60, True), ("merged", 60, False)],
)
def test_min_duration_on_later_events(event: str, open_for: float, expected: bool) -> None:
    rule = policy({"events": ["updated", "resolved", "merged"], "min_duration": "15m"}).rules[0]
    t0 = at(10, 12)
    done = event in ("resolved", "merged")
    inc = incident(t0, resolved_at=t0 + open_for if done else None,
                   state="resolved" if done else "open")
    ev = IncidentEvent(event, inc, t0 + open_for)  # type: ignore[arg-type]
    assert matches(rule, ev) is expected
    if not expected:
        verb = "lasted" if done else "open for"
        mins = open_for / 60
        shown = f"{mins:.0f}m" if open_for % 60 == 0 else f"{open_for:g}s"
        assert explain(rule, ev) == [f"incident {verb} {shown}, less than min_duration 15m"]


def test_opened_with_min_duration_matches_and_is_held_back() -> None:
    rule = policy({"min_duration": "15m"}).rules[0]
    t0 = at(10, 12)
    ev = IncidentEvent("opened", incident(t0), t0)
    assert matches(rule, ev)
    assert hold_until(rule, ev) == t0 + 900
    assert hold_until(policy({}).rules[0], ev) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{start: '08:00', end: '18:00', timezone: Europe/Lisbn}", "unknown time zone"),
        ("{start: '25:00', end: '18:00', timezone: UTC}", 'local time of day as "HH:MM"'),
        ("{start: '08:00', end: '08:00', timezone: UTC}", "window would be empty"),
        ("{start: '08:00', end: '18:00', timezone: UTC, days: [mon, xyz]}", "xyz"),
    ],
)
def test_bad_windows_are_check_errors_with_file_and_line(tmp_path: Path, text: str,
                                                         message: str) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("targets:\n  log: {kind: log}\nrules:\n  - name: r\n    when:\n"
                 f"      time_of_day: {text}\n    do: [{{target: log}}]\n")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    (line,) = str(err.value).splitlines()
    assert line.startswith(f"{f}:6: rules[0].when.time_of_day")
    assert message in line


def test_bad_min_duration_is_a_check_error(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("targets:\n  log: {kind: log}\nrules:\n  - name: r\n    when:\n"
                 "      min_duration: 15 minutes\n    do: [{target: log}]\n")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    assert str(err.value).startswith(f"{f}:6: rules[0].when.min_duration: ")
    assert "90m" in str(err.value)


# --- the dispatcher holds an opened action back and drops it if the incident ended ----


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    kind = "log"

    def __init__(self) -> None:
        self.seen: list[ActionPlan] = []

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        self.seen.append(plan)
        return ActionResult(plan.key, plan.target, self.kind, "succeeded", "ok")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("resolves_after", [None, 10 * 60, 20 * 60])
async def test_min_duration_holds_opened_actions(tmp_path: Path,
                                                 resolves_after: float | None) -> None:
    t0 = at(10, 12)
    clock = Clock(t0)
    now: dict[str, Incident] = {"INC-000001": incident(t0)}
    ex = Recorder()
    d = Dispatcher(policy({"min_duration": "15m"}), Journal(tmp_path / "j.db"), {"log": ex},
                   clock=clock, incident=now.get)
    (plan,) = d.submit(IncidentEvent("opened", now["INC-000001"], t0))
    assert plan.not_before == t0 + 900
    assert d.journal.next_due_at() == t0 + 900
    clock.t = t0 + 899
    assert await d.run_once() == 0 and ex.seen == []
    if resolves_after is not None:
        now["INC-000001"] = replace(now["INC-000001"], state="resolved",
                                    resolved_at=t0 + resolves_after)
    clock.t = t0 + 20 * 60 + 1
    await d.run_once()
    row = d.journal.get(plan.key)
    assert row is not None
    if resolves_after == 10 * 60:  # ended before 15 minutes: dropped, with the reason
        assert ex.seen == [] and row.state == "blocked"
        assert row.last_error == ("min_duration: incident resolved after 10m, before "
                                  "min_duration 15m: dropped")
    else:
        assert [p.key for p in ex.seen] == [plan.key] and row.state == "succeeded"
        (v,) = [v for v in row.verdicts if v["guardrail"] == "min_duration"]
        assert v["outcome"] == "allowed"


def test_replay_shows_why_no_rule_fired_and_drops_short_incidents() -> None:
    p = Policy.model_validate({
        "targets": {"log": {"kind": "log"}},
        "rules": [{"name": "office", "when": {"time_of_day": OFFICE}, "do": [{"target": "log"}]},
                  {"name": "long", "when": {"events": ["opened"], "min_duration": "15m"},
                   "do": [{"target": "log"}]}],
    })
    t0 = at(15, 12)  # Saturday: the office rule never fires
    short = incident(t0)
    ended = replace(short, state="resolved", resolved_at=t0 + 300, updated_at=t0 + 300)
    lasting = replace(short, id="INC-000002", root="link:olt1:p2")
    got = replay(p, [IncidentEvent("opened", short, t0),
                     IncidentEvent("resolved", ended, t0 + 300),
                     IncidentEvent("opened", lasting, t0 + 1)])
    by = {(r.incident, r.event, r.rule): r for r in got}
    assert by["INC-000001", "opened", "long"].outcome == "blocked"
    assert "resolved after 5m, before min_duration 15m" in \
        by["INC-000001", "opened", "long"].reason
    assert by["INC-000002", "opened", "long"].outcome == "allowed"
    nothing = by["INC-000001", "resolved", None]
    assert nothing.why_not == (
        "office: resolved at Sat 12:05, outside time_of_day 08:00-18:00 mon,tue,wed,thu,fri "
        "Europe/Lisbon",
        "long: event resolved is not in events [opened]; incident lasted 5m, less than "
        "min_duration 15m",
    )
    out = io.StringIO()
    render(got, out, title="t")
    assert "      rule office: resolved at Sat 12:05, outside time_of_day" in out.getvalue()
    assert json.loads(json.dumps(nothing.to_dict()))["why_not"] == list(nothing.why_not)
