"""SLA credits without sockets: the schedule's arithmetic, the target's validation (with
file:line), planned time inside an outage, and the TMF678 body."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions.credit_config import credit_terms, money, tier_warnings
from actions.credit_ledger import CreditLedger, CreditRow, month_of
from actions.executors.credit import planned_seconds, request_id, tmf678_body
from actions.policy import Policy, load_policy
from actions.targets import SlaCreditTarget
from correlator.incidents import Impact, Incident
from correlator.inventory import Device, Inventory, Subscriber
from correlator.maintenance import MaintenanceWindow, MatchSpec, Scope, target_of
from correlator.silences import Maintenance, covered_seconds
from correlator.store import IncidentStore
from probes.source import SourceError

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()  # a Tuesday


def target(**kw: Any) -> SlaCreditTarget:
    return SlaCreditTarget.model_validate({
        "kind": "sla_credit", "url": "http://127.0.0.1:1/tmf", "schedule_version": "v1",
        "currency": "EUR",
        "schedule": {"business": [{"minutes": 60, "percent": 5},
                                  {"minutes": 240, "percent": 10}],
                     "gold": [{"minutes": 15, "percent": 20}, {"minutes": 60, "percent": 60}]},
        **kw})


@pytest.mark.parametrize(("tier", "minutes", "fee", "kw", "used", "expected"), [
    ("business", 59.9, 100.0, {}, 0.0, (0.0, 0.0, False)),     # below the first step
    ("business", 60, 100.0, {}, 0.0, (5.0, 5.0, False)),       # on the step
    ("business", 239, 100.0, {}, 0.0, (5.0, 5.0, False)),
    ("business", 240, 100.0, {}, 0.0, (10.0, 10.0, False)),
    ("business", 10_000, 100.0, {}, 0.0, (10.0, 10.0, False)),  # the last step holds
    ("gold", 90, 100.0, {}, 0.0, (60.0, 60.0, False)),
    ("gold", 90, 100.0, {"cap_percent": 25}, 0.0, (25.0, 25.0, True)),  # per-outage cap
    ("gold", 90, 100.0, {"monthly_cap_percent": 70}, 30.0, (60.0, 40.0, True)),  # monthly
    ("gold", 90, 100.0, {"monthly_cap_percent": 70}, 80.0, (60.0, 0.0, True)),  # used up
    ("gold", 20, 49.99, {}, 0.0, (20.0, 10.0, False)),  # 9.998 -> 10.00
    ("gold", 20, 0.125, {}, 0.0, (20.0, 0.03, False)),  # 0.025 rounds half up
    ("gold", 0, 100.0, {}, 0.0, (0.0, 0.0, False)),  # fully planned
    ("gold", -5, 100.0, {}, 0.0, (0.0, 0.0, False)),
])
def test_credit_terms(tier: str, minutes: float, fee: float, kw: dict[str, Any], used: float,
                      expected: tuple[float, float, bool]) -> None:
    terms = credit_terms(target(**kw), tier, minutes, fee, credited_this_month=used)
    assert terms is not None
    assert (terms.percent, terms.amount, terms.capped) == expected


def test_a_tier_without_a_schedule_gets_none() -> None:
    assert credit_terms(target(), "residential", 600, 30.0) is None


def test_money_rounds_half_up() -> None:
    assert [money(v) for v in (12.345, 0.005, 2.675, 1e-9)] == [12.35, 0.01, 2.68, 0.0]


@pytest.mark.parametrize(("kw", "message"), [
    ({"schedule": {"business": [{"minutes": 60, "percent": 10},
                                {"minutes": 30, "percent": 20}]}},
     "steps must go up in both minutes and percent (60 min 10% is followed by 30 min 20%)"),
    ({"schedule": {"business": [{"minutes": 60, "percent": 10},
                                {"minutes": 90, "percent": 10}]}}, "steps must go up"),
    ({"schedule": {"business": [{"minutes": 60, "percent": 101}]}}, "less than or equal to 100"),
    ({"schedule": {"business": [{"minutes": 0, "percent": 5}]}}, "greater than 0"),
    ({"schedule": {"business": []}}, "give at least one step"),
    ({"schedule": {}}, "at least 1 item"),
    ({"currency": "euro"}, "should match pattern"),
    ({"outage_kinds": ["link_down", "link_dwon"]}, "unknown incident kind 'link_dwon'"),
    ({"cap_percent": 0}, "greater than 0"),
])
def test_bad_targets_fail_with_the_line(tmp_path: Path, kw: dict[str, Any],
                                        message: str) -> None:
    tgt = {"kind": "sla_credit", "url": "http://127.0.0.1:1/tmf", "schedule_version": "v1",
           "currency": "EUR", "schedule": {"business": [{"minutes": 60, "percent": 5}]}, **kw}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"targets": {"billing": tgt}}, sort_keys=False))
    with pytest.raises(SourceError) as err:
        load_policy(path)
    text = str(err.value)
    assert message in text
    assert text.startswith(f"{path}:") and "targets.billing" in text


def test_outage_kinds_default_to_outages_only() -> None:
    kinds = target().outage_kinds
    assert "device_unreachable" in kinds and "link_down" in kinds and "flapping" not in kinds


def inventory() -> Inventory:
    subs = [Subscriber(sid, None, None, "olt1", "p1", None, None, None, 50.0, tier, None,
                       0.1, None, None, True, False)
            for sid, tier in (("s1", "business"), ("s2", "residential"))]
    return Inventory({"olt1": Device("olt1", "access", "cab-1", (), None)}, subs)


def test_schedule_tiers_nobody_has_are_warned_about_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "targets:\n"
        "  billing:\n"
        "    kind: sla_credit\n"
        "    url: http://127.0.0.1:1/tmf\n"
        "    schedule_version: v1\n"
        "    currency: EUR\n"
        "    schedule:\n"
        "      business: [{minutes: 60, percent: 5}]\n"
        "      platinum: [{minutes: 60, percent: 5}]\n")
    (warning,) = tier_warnings(path, load_policy(path), inventory())
    assert str(warning).startswith(f"{path}:9: targets.billing.schedule.platinum: warning: "
                                   "no subscriber in the inventory has this SLA tier "
                                   "(tiers: business, residential)")
    assert tier_warnings(path, Policy(), inventory()) == []


# --- planned time inside an outage ----------------------------------------------------------


def test_covered_seconds_is_the_union_clipped_to_the_outage() -> None:
    assert covered_seconds([], 0, 100) == 0
    assert covered_seconds([(10, 30), (20, 40), (90, 200), (-50, 5)], 0, 100) == 45
    assert covered_seconds([(100, 200), (-10, 0)], 0, 100) == 0
    assert covered_seconds([(-10, 500)], 0, 100) == 100


def incident(minutes: float, **kw: Any) -> Incident:
    return Incident(id="INC-1", root="device:olt1", kind="device_unreachable", device="olt1",
                    port=None, role="access", site="cab-1", severity="major",
                    state="resolved", opened_at=T0, updated_at=T0 + minutes * 60,
                    resolved_at=T0 + minutes * 60,
                    impact=Impact(subscribers=("s1",), subscribers_by_tier={"business": 1}),
                    **kw)


def window(wid: str, start: float, end: float, **match: Any) -> MaintenanceWindow:
    spec = MatchSpec(**(match or {"devices": ["olt1"]}))
    return MaintenanceWindow(wid, "work", None, "UTC", spec, Scope.of(spec), start=start,
                             end=end, duration=end - start)


def test_planned_seconds_counts_windows_and_silences_set_up_before_the_outage(
        tmp_path: Path) -> None:
    inv = inventory()
    store = IncidentStore(tmp_path / "incidents.db")
    now = [T0 - 600]
    maint = Maintenance(inv, store, clock=lambda: now[0], windows=[
        window("mw-1", T0 + 3000, T0 + 3600),                     # 10 min inside
        window("mw-other", T0, T0 + 7200, devices=["olt1"], sites=["elsewhere"]),  # not it
    ])
    # a silence from 10 min before the outage, ended early at minute 20 (it counts)
    early = maint.create_silence({"devices": ["olt1"]}, reason="swap", created_by="ops",
                                 duration=7200)
    now[0] = T0 + 1200
    maint.expire_silence(early.id, by="ops")
    # one set up at minute 30, during the outage: repair work, not planned (does not count)
    now[0] = T0 + 1800
    maint.create_silence({"devices": ["olt1"]}, reason="fixing", created_by="ops",
                         duration=3600)
    inc = incident(90)
    assert inc.resolved_at is not None
    got = maint.planned_seconds(target_of(inv, inc), inc.opened_at, inc.resolved_at)
    assert got == 1200 + 600
    assert planned_seconds(inc, inv, maint) == 1800
    store.close()


def test_without_maintenance_state_the_incident_says_how_long_it_was_planned() -> None:
    inv = inventory()
    assert planned_seconds(incident(90), inv, None) == 0
    assert planned_seconds(incident(90, planned=True, planned_until=T0 + 600), inv, None) == 600
    assert planned_seconds(incident(90, planned=True), inv, None) == 5400


# --- the ledger and the request ----------------------------------------------------------------


def row(**kw: Any) -> CreditRow:
    base: dict[str, Any] = dict(
        outage="INC-1", contract="s1", account="BA-1", target="billing", action_key="nrx-a",
        request_id=request_id("INC-1", "s1"), month=month_of(T0), minutes=95.5, percent=10.0,
        amount=12.5, cap_percent=30.0, currency="EUR", schedule_version="v1", approver=None,
        state="requested", created_at=T0)
    return CreditRow(**{**base, **kw})


def test_the_ledger_keeps_the_first_claim_per_outage_and_contract() -> None:
    ledger = CreditLedger(None)
    first = ledger.claim(row())
    again = ledger.claim(row(action_key="nrx-b", amount=99.0))
    assert again == first and again.action_key == "nrx-a" and again.amount == 12.5
    ledger.complete("INC-1", "s1", "accepted", T0 + 1, billing_id="acbr-1")
    ledger.complete("INC-1", "s1", "rejected", T0 + 2)  # never backwards
    got = ledger.get("INC-1", "s1")
    assert got is not None and got.state == "accepted" and got.billing_id == "acbr-1"
    ledger.claim(row(outage="INC-2", amount=7.0))
    ledger.claim(row(outage="INC-3", amount=3.0))
    ledger.complete("INC-3", "s1", "rejected", T0 + 3)
    assert ledger.credited_in_month("s1", month_of(T0), besides="INC-9") == 19.5
    assert ledger.credited_in_month("s1", month_of(T0), besides="INC-2") == 12.5
    assert ledger.credited_in_month("s1", "2026-04", besides="INC-9") == 0
    ledger.close()


def test_request_ids_depend_on_outage_and_contract_only() -> None:
    assert request_id("INC-1", "s1") == request_id("INC-1", "s1")
    assert len({request_id("INC-1", "s1"), request_id("INC-1", "s2"),
                request_id("INC-2", "s1")}) == 3


def test_tmf678_body_is_a_negative_applied_billing_rate() -> None:
    body = tmf678_body(row(approver="carol"), {"sla_tier": "business"},
                       {"id": "INC-1", "title": "access device olt1 unreachable",
                        "opened_at": T0, "resolved_at": T0 + 5730}, T0 + 6000)
    assert body["@type"] == "AppliedCustomerBillingRate"
    assert body["id"] == request_id("INC-1", "s1")
    assert body["taxExcludedAmount"] == {"unit": "EUR", "value": -12.5}
    assert body["billingAccount"]["id"] == "BA-1"
    assert body["periodCoverage"] == {"startDateTime": "2026-03-10T12:00:00.000Z",
                                      "endDateTime": "2026-03-10T13:35:30.000Z"}
    assert "access device olt1 unreachable (incident INC-1), 95.5 minute(s)" in \
        body["description"]
    chars = {c["name"]: c["value"] for c in body["characteristic"]}
    assert chars == {"incidentId": "INC-1", "subscriberId": "s1", "slaTier": "business",
                     "outageMinutes": 95.5, "creditPercent": 10.0, "capPercent": 30.0,
                     "scheduleVersion": "v1", "approvedBy": "carol"}
