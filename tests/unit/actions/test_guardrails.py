"""Each guardrail on its own, with a fake clock: no sleeps, no sockets."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from actions.guardrails import Guardrails, GuardVerdict, decide_outcome, quiet_until
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionPlan, idempotency_key

T0 = 1_700_000_000.0  # a Tuesday, 22:13:20 UTC


def policy(guardrails: dict[str, Any] | None = None, **rule: Any) -> Policy:
    return Policy.model_validate({
        "targets": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:1/x"},
                    "log": {"kind": "log"}},
        "rules": [{"name": "r", "do": [{"target": "hook"}], **rule}],
        "guardrails": guardrails or {},
    })


def plan(n: int = 0, *, executor: str = "webhook", target: str = "hook",
         recipient: str | None = None, amount: float | None = None,
         approved_by: str | None = None, **inputs: Any) -> ActionPlan:
    facts = {"incident": f"INC-{n:06d}", "kind": "link_down", "severity": "minor",
             "role": "access", "site": "north", "planned": False, "planned_by": [],
             "subscriber_count": 2, "revenue_at_risk": 75.0, **inputs}
    key = idempotency_key(f"INC-{n:06d}", "opened", "r", target, recipient)
    return ActionPlan(key=key, incident_id=f"INC-{n:06d}", event="opened", rule="r",
                      target=target, executor=executor, payload={}, recipient=recipient,
                      amount=amount, inputs=facts, approved_by=approved_by)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.db")


def guard(journal: Journal, pol: Policy, **kw: Any) -> Guardrails:
    return Guardrails(pol, journal, **kw)


def by_name(decision: Any, name: str) -> GuardVerdict:
    (v,) = [v for v in decision.verdicts if v.guardrail == name]
    return v


# --- approval ----------------------------------------------------------------------------


def test_rule_approval_waits_until_expiry_then_approved_goes(journal: Journal) -> None:
    g = guard(journal, policy(approval={"required": True, "expires_after": 3600}))
    d = g.check(plan(), T0)
    assert d.outcome == "waiting" and d.until == T0 + 3600
    assert "rule r requires approval" in d.reason
    ok = g.check(plan(approved_by="alice"), T0)
    assert ok.outcome == "allowed"
    assert by_name(ok, "approval").reason.startswith("approved by alice")


def test_rule_approval_not_required_and_default_expiry(journal: Journal) -> None:
    assert guard(journal, policy(approval={"required": False})).check(plan(), T0).outcome \
        == "allowed"
    g = guard(journal, policy({"approval_expires_after": "15m"}, approval={}))
    assert g.check(plan(), T0).until == T0 + 900


def test_gate_on_core_devices(journal: Journal) -> None:
    g = guard(journal, policy({"approvals": [
        {"name": "core", "when": {"role": ["core"]}, "expires_after": "2h"}]}))
    assert g.check(plan(role="access"), T0).outcome == "allowed"
    d = g.check(plan(role="core"), T0)
    assert d.outcome == "waiting" and d.until == T0 + 7200
    assert d.reason == "approval: needs a person's approval: gate core (role core)"


def test_gate_on_amount_ignores_actions_without_one(journal: Journal) -> None:
    g = guard(journal, policy({"approvals": [
        {"name": "big-credit", "when": {"executors": ["crm_offer"], "min_amount": 100}}]}))
    assert g.check(plan(executor="crm_offer"), T0).outcome == "allowed"
    assert g.check(plan(executor="crm_offer", amount=99.99), T0).outcome == "allowed"
    assert g.check(plan(executor="webhook", amount=500), T0).outcome == "allowed"
    d = g.check(plan(executor="crm_offer", amount=100), T0)
    assert d.outcome == "waiting"
    assert "executor crm_offer, amount 100.00 >= 100.00" in d.reason


def test_the_first_approval_to_expire_sets_the_deadline(journal: Journal) -> None:
    g = guard(journal, policy({"approvals": [
        {"name": "core", "when": {"role": ["core"]}, "expires_after": 600}]},
        approval={"expires_after": 3600}))
    assert g.check(plan(role="core"), T0).until == T0 + 600


# --- rate limits ---------------------------------------------------------------------------


def test_token_bucket_per_target_defers_and_refills(journal: Journal) -> None:
    g = guard(journal, policy({"rate_limits": [
        {"name": "hook", "per": "target", "rate": 1, "every": 10, "burst": 2}]}))
    now = T0
    for n in range(2):
        p = plan(n)
        assert g.check(p, now).outcome == "allowed"
        g.commit(p, now)
    d = g.check(plan(2), now)
    assert d.outcome == "deferred" and d.until == pytest.approx(now + 10)
    assert "rate limit hook (1 per 10s per target hook): used up" in d.reason
    # checking takes nothing: still deferred, same time
    assert g.check(plan(2), now + 5).until == pytest.approx(now + 10)
    assert g.check(plan(2), now + 10).outcome == "allowed"
    # another target has its own bucket
    assert g.check(plan(3, target="log", executor="log"), now).outcome == "allowed"


def test_rate_limit_per_kind_and_filter(journal: Journal) -> None:
    g = guard(journal, policy({"rate_limits": [
        {"name": "offers", "per": "kind", "executors": ["crm_offer"], "rate": 1,
         "every": "1m"}]}))
    g.commit(plan(0, executor="crm_offer"), T0)
    assert g.check(plan(1, executor="crm_offer"), T0).outcome == "deferred"
    assert g.check(plan(1, executor="webhook"), T0).outcome == "allowed"  # not limited
    assert g.check(plan(1, executor="crm_offer"), T0 + 60).outcome == "allowed"


def test_rate_limit_per_subscriber_only_for_plans_with_a_recipient(journal: Journal) -> None:
    g = guard(journal, policy({"rate_limits": [
        {"name": "each", "per": "subscriber", "rate": 1, "every": "1h"}]}))
    g.commit(plan(0, recipient="S-1"), T0)
    assert g.check(plan(1, recipient="S-1"), T0).outcome == "deferred"
    assert g.check(plan(1, recipient="S-2"), T0).outcome == "allowed"
    d = g.check(plan(1), T0)
    assert d.outcome == "allowed" and not [v for v in d.verdicts if v.guardrail == "rate_limit"]


def test_idle_buckets_are_forgotten(journal: Journal) -> None:
    g = guard(journal, policy({"rate_limits": [
        {"name": "each", "per": "subscriber", "rate": 1, "every": 1}]}))
    for n in range(2000):
        g.commit(plan(n, recipient=f"S-{n}"), T0)
        g.check(plan(n, recipient=f"S-{n}"), T0 + 10)
    assert len(g._buckets) < 2000


# --- blast radius ----------------------------------------------------------------------------


def test_blast_radius_holds_remediation_when_much_is_down(journal: Journal) -> None:
    share = [0.5]
    g = guard(journal, policy({"remediation": ["tmf621_dispatch"],
                               "blast_radius": {"max_down_share": 0.2}}),
              down_share=lambda: share[0])
    d = g.check(plan(executor="tmf621_dispatch"), T0)
    assert d.outcome == "waiting" and d.until == T0 + 3600
    assert "50% of devices look down at once (limit 20%)" in d.reason
    assert g.check(plan(executor="webhook"), T0).outcome == "allowed"  # not remediation
    assert g.check(plan(executor="tmf621_dispatch", approved_by="bob"), T0).outcome == "allowed"
    share[0] = 0.2
    assert g.check(plan(executor="tmf621_dispatch"), T0).outcome == "allowed"


def test_blast_radius_offline_is_not_evaluated(journal: Journal) -> None:
    g = guard(journal, policy({"remediation": ["tmf621_dispatch"],
                               "blast_radius": {"max_down_share": 0.2}}))
    v = by_name(g.check(plan(executor="tmf621_dispatch"), T0), "blast_radius")
    assert v.outcome == "allowed" and v.reason.startswith("not evaluated")


# --- maintenance -------------------------------------------------------------------------------


def test_planned_incidents_block_customer_facing_actions_only(journal: Journal) -> None:
    g = guard(journal, policy({"customer_facing": ["crm_offer"]}))
    d = g.check(plan(executor="crm_offer", planned=True, planned_by=["mw-42"]), T0)
    assert d.outcome == "blocked"
    assert d.reason == ("maintenance: incident is planned work (mw-42); crm_offer is "
                        "customer-facing and is not sent about planned work")
    assert g.check(plan(executor="crm_offer"), T0).outcome == "allowed"
    assert g.check(plan(executor="webhook", planned=True), T0).outcome == "allowed"
    off = guard(journal, policy({"customer_facing": ["crm_offer"],
                                 "block_during_maintenance": False}))
    assert off.check(plan(executor="crm_offer", planned=True), T0).outcome == "allowed"


# --- quiet hours --------------------------------------------------------------------------------


def at(zone: str, *args: int) -> float:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def test_quiet_hours_defer_customer_messages_to_the_end_of_the_window(journal: Journal) -> None:
    g = guard(journal, policy({"customer_facing": ["crm_offer"], "quiet_hours": {
        "start": "21:00", "end": "08:00", "timezone": "Europe/Lisbon"}}))
    late = at("Europe/Lisbon", 2024, 6, 10, 22, 30)
    d = g.check(plan(executor="crm_offer"), late)
    assert d.outcome == "deferred"
    assert d.until == at("Europe/Lisbon", 2024, 6, 11, 8, 0)
    assert "queued until 2024-06-11 08:00 WEST" in d.reason
    early = at("Europe/Lisbon", 2024, 6, 11, 7, 59)
    assert g.check(plan(executor="crm_offer"), early).until == at("Europe/Lisbon", 2024, 6, 11,
                                                                  8, 0)
    assert g.check(plan(executor="crm_offer"), at("Europe/Lisbon", 2024, 6, 11, 8, 0)).outcome \
        == "allowed"
    assert g.check(plan(executor="webhook"), late).outcome == "allowed"  # not customer-facing


def test_quiet_hours_follow_daylight_saving_time() -> None:
    from actions.guardrail_config import QuietHours

    qh = QuietHours.model_validate({"start": "21:00", "end": "08:00",
                                    "timezone": "Europe/Lisbon"})
    # Lisbon moves from UTC+0 to UTC+1 at 01:00 on 2024-03-31: that night is an hour shorter
    now = dt.datetime(2024, 3, 30, 22, 0, tzinfo=dt.UTC).timestamp()
    end = quiet_until(qh, now)
    assert end == dt.datetime(2024, 3, 31, 7, 0, tzinfo=dt.UTC).timestamp()
    assert end is not None and end - now == 9 * 3600
    ny = QuietHours.model_validate({"start": "12:00", "end": "13:30",
                                    "timezone": "America/New_York"})
    noon = at("America/New_York", 2024, 11, 3, 12, 15)
    assert quiet_until(ny, noon) == at("America/New_York", 2024, 11, 3, 13, 30)
    assert quiet_until(ny, at("America/New_York", 2024, 11, 3, 13, 30)) is None


# --- message caps ----------------------------------------------------------------------------------


def test_message_caps_count_from_the_journal_and_survive_a_restart(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    pol = policy({"customer_facing": ["crm_offer"], "message_caps": {"max": 2, "window": "1d"}})
    g = guard(j, pol)
    sent = [plan(n, executor="crm_offer", recipient="S-1") for n in range(2)]
    j.plan(sent, T0)
    for p in sent:
        j.start(p.key, T0 + 60)
    third = plan(3, executor="crm_offer", recipient="S-1")
    d = g.check(third, T0 + 120)
    assert d.outcome == "blocked"
    assert d.reason == "message_caps: S-1 already got 2 message(s) in the last 1d (cap 2)"
    assert g.check(plan(3, executor="crm_offer", recipient="S-2"), T0 + 120).outcome == "allowed"
    # a retry of one that was already counted is not a new message
    assert g.check(replace(sent[0], attempts=1), T0 + 120).outcome == "allowed"
    # a restart forgets nothing: the journal is the count
    j.close()
    again = guard(Journal(tmp_path / "j.db"), pol)
    assert again.check(third, T0 + 120).outcome == "blocked"
    # a day later the first two are out of the window
    assert again.check(third, T0 + 61 + 86_400).outcome == "allowed"


# --- circuit breaker ------------------------------------------------------------------------------


def test_circuit_opens_after_failures_then_half_opens_for_one_trial(journal: Journal) -> None:
    g = guard(journal, policy({"circuit_breaker": {"failures": 3, "cool_down": "1m"}}))
    for n in range(3):
        p = plan(n)
        assert g.check(p, T0).outcome == "allowed"
        g.commit(p, T0)
        g.observe(p, "retry", T0)
    assert g.breaker_state("hook", T0) == "open"
    d = g.check(plan(9), T0 + 1)
    assert d.outcome == "deferred" and d.until == T0 + 60
    assert g.check(plan(9, target="log", executor="log"), T0 + 1).outcome == "allowed"
    # half-open: one trial, the others wait for it
    trial = plan(10)
    assert g.check(trial, T0 + 60).outcome == "allowed"
    g.commit(trial, T0 + 60)
    other = g.check(plan(11), T0 + 61)
    assert other.outcome == "deferred" and "waiting for the trial" in other.reason
    g.observe(trial, "failed", T0 + 62)  # trial fails: open again, a full cool-down
    assert g.check(plan(11), T0 + 63).until == T0 + 62 + 60
    trial2 = plan(12)
    g.commit(trial2, T0 + 122)
    g.observe(trial2, "succeeded", T0 + 123)
    assert g.breaker_state("hook", T0 + 123) == "closed"
    assert g.check(plan(13), T0 + 123).outcome == "allowed"


def test_success_resets_the_failure_count(journal: Journal) -> None:
    g = guard(journal, policy({"circuit_breaker": {"failures": 2}}))
    g.observe(plan(0), "retry", T0)
    g.observe(plan(1), "succeeded", T0)
    g.observe(plan(2), "retry", T0)
    assert g.breaker_state("hook", T0) == "closed"
    g.observe(plan(3), "failed", T0)
    assert g.breaker_state("hook", T0) == "open"


def test_no_circuit_breaker_when_turned_off(journal: Journal) -> None:
    g = guard(journal, policy({"circuit_breaker": None}))
    for n in range(10):
        g.observe(plan(n), "retry", T0)
    assert g.check(plan(99), T0).outcome == "allowed"


# --- combining ------------------------------------------------------------------------------------


def test_blocked_beats_waiting_beats_deferred_and_every_verdict_is_kept(journal: Journal) -> None:
    g = guard(journal, policy({"customer_facing": ["crm_offer"],
                               "quiet_hours": {"start": "00:00", "end": "23:59",
                                               "timezone": "UTC"}},
                              approval={"required": True}))
    noon = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC).timestamp()
    d = g.check(plan(executor="crm_offer"), noon)
    assert d.outcome == "waiting"
    assert {v.guardrail: v.outcome for v in d.verdicts} == {
        "maintenance": "allowed", "approval": "waiting", "quiet_hours": "deferred",
        "circuit_breaker": "allowed"}
    blocked = g.check(plan(executor="crm_offer", planned=True), noon)
    assert blocked.outcome == "blocked" and [v.guardrail for v in blocked.deciding] == [
        "maintenance"]
    assert decide_outcome([]).outcome == "allowed"
    both = decide_outcome([GuardVerdict("a", "deferred", "x", until=5.0),
                           GuardVerdict("b", "deferred", "y", until=9.0)])
    assert both.until == 9.0 and both.reason == "a: x; b: y"


def test_an_action_whose_rule_is_gone_is_blocked(journal: Journal) -> None:
    g = guard(journal, policy())
    d = g.check(replace(plan(), rule="removed"), T0)
    assert d.outcome == "blocked" and d.verdicts[0].guardrail == "policy"
    assert "rule removed is no longer in the policy" in d.reason


def test_rows_from_before_inputs_were_kept_fall_back_to_the_payload(journal: Journal) -> None:
    g = guard(journal, policy({"customer_facing": ["crm_offer"]}))
    old = replace(plan(executor="crm_offer"), inputs={},
                  payload={"incident": {"id": "INC-1", "planned": True,
                                        "planned_by": ["mw-1"], "impact": {}}})
    assert g.check(old, T0).outcome == "blocked"


def test_a_reloaded_policy_keeps_unchanged_buckets_only(journal: Journal) -> None:
    limits = [{"name": "a", "per": "target", "rate": 1, "every": "1h"},
              {"name": "b", "per": "kind", "rate": 1, "every": "1h"}]
    g = guard(journal, policy({"rate_limits": limits}))
    g.commit(plan(0), T0)
    assert g.check(plan(1), T0).outcome == "deferred"
    g.use(policy({"rate_limits": [limits[0], {**limits[1], "rate": 5}]}))
    d = g.check(plan(1), T0)
    assert [v.outcome for v in d.verdicts if v.guardrail == "rate_limit"] == [
        "deferred", "allowed"]  # a: unchanged, still used up; b: changed, starts full
