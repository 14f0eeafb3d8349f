"""The policy file's guardrails: what it accepts, and errors with file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from actions.policy import load_policy
from probes.source import SourceError

HEAD = """targets:
  noc: {kind: webhook, url: 'http://127.0.0.1:8080/x'}
  offers: {kind: crm_offer, url: 'http://127.0.0.1:8080/o', offer_code: SORRY10}
rules:
  - name: page
    do: [{target: noc}]
    approval: {required: true, expires_after: 30m}
"""


def load(tmp_path: Path, guardrails: str) -> object:
    f = tmp_path / "policy.yaml"
    f.write_text(HEAD + "guardrails:\n" + guardrails)
    return load_policy(f)


def problems(tmp_path: Path, guardrails: str) -> list[str]:
    with pytest.raises(SourceError) as err:
        load(tmp_path, guardrails)
    return str(err.value).splitlines()


def test_a_full_guardrails_section(tmp_path: Path) -> None:
    pol = load(tmp_path, """\
  remediation: [tmf621_dispatch]
  customer_facing: [crm_offer]
  approval_expires_after: 2h
  approvals:
    - name: core-devices
      when: {role: [core]}
    - name: big-credits
      when: {executors: [crm_offer], min_amount: 100}
      expires_after: 900
  rate_limits:
    - {name: offers, per: kind, executors: [crm_offer], rate: 30, every: 1m, burst: 60}
    - {name: each-subscriber, per: subscriber, rate: 1, every: 1h}
  blast_radius: {max_down_share: 0.2}
  quiet_hours: {start: "21:00", end: "08:00", timezone: Europe/Lisbon}
  message_caps: {max: 3, window: 1d}
  circuit_breaker: {failures: 5, cool_down: 2m}
""")
    g = pol.guardrails  # type: ignore[attr-defined]
    assert pol.rules[0].approval.expires_after == 1800  # type: ignore[attr-defined]
    assert g.approval_expires_after == 7200
    assert [a.name for a in g.approvals] == ["core-devices", "big-credits"]
    assert g.rate_limits[0].every == 60 and g.rate_limits[0].capacity == 60
    assert g.rate_limits[1].capacity == 1
    assert g.quiet_hours.start == dt.time(21, 0) and g.quiet_hours.end == dt.time(8, 0)
    assert g.message_caps.window == 86_400 and g.circuit_breaker.cool_down == 120


def test_defaults_keep_a_circuit_breaker_and_nothing_else(tmp_path: Path) -> None:
    g = load(tmp_path, "  {}\n").guardrails  # type: ignore[attr-defined]
    assert g.circuit_breaker is not None and g.circuit_breaker.failures == 5
    assert g.approvals == [] and g.rate_limits == [] and g.quiet_hours is None
    assert g.block_during_maintenance is True


def test_unknown_executor_kinds_targets_and_rules_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    got = problems(tmp_path, """\
  customer_facing: [crm_offer, carrier_pigeon]
  approvals:
    - name: g
      when:
        targets: [pager]
        rules: [page, nope]
  rate_limits:
    - {name: r, per: kind, executors: [carrier_pigeon], rate: 1}
""")
    assert got[0].startswith(f"{f}:9: guardrails.customer_facing[1]: unknown executor kind "
                             "(executor kinds: crm_offer, email, log, ")
    assert got[0].endswith("(got 'carrier_pigeon')")
    assert got[1] == f"{f}:13: guardrails.approvals[0].when.targets[0]: unknown target " \
                     "(targets: noc, offers) (got 'pager')"
    assert got[2] == f"{f}:14: guardrails.approvals[0].when.rules[1]: unknown rule " \
                     "(rules: page) (got 'nope')"
    assert got[3].startswith(f"{f}:16: guardrails.rate_limits[0].executors[0]: unknown "
                             "executor kind")


@pytest.mark.parametrize(("guardrails", "line", "message"), [
    ("  quiet_hours: {start: '21:00', end: '08:00', timezone: Europe/Atlantis}\n", 9,
     "guardrails.quiet_hours.timezone: unknown time zone: use an IANA name"),
    ("  quiet_hours:\n    start: '22:00'\n    end: '22:00'\n    timezone: UTC\n", 9,
     "guardrails.quiet_hours: start and end are both 22:00: quiet hours would never end"),
    ("  quiet_hours: {start: '25:00', end: '08:00', timezone: UTC}\n", 9,
     'guardrails.quiet_hours.start: expected a local time of day as "HH:MM"'),
    ("  message_caps: {max: 0}\n", 9,
     "guardrails.message_caps.max: Input should be greater than or equal to 1"),
    ("  rate_limits:\n    - {name: a, per: device, rate: 1}\n", 10,
     "guardrails.rate_limits[0].per: Input should be 'kind', 'target' or 'subscriber'"),
    ("  rate_limits:\n    - {name: a, per: kind, rate: 1, every: soon}\n", 10,
     "guardrails.rate_limits[0].every: expected a duration such as 90m"),
    ("  blast_radius: {max_down_share: 1.5}\n", 9,
     "guardrails.blast_radius.max_down_share: Input should be less than or equal to 1"),
    ("  approvals:\n    - name: a\n      when: {}\n", 11,
     "guardrails.approvals[0].when: say which actions need approval"),
    ("  approvals:\n    - {name: a, when: {role: [core]}}\n    - {name: a, when: {role: [x]}}\n",
     8, "guardrails: approvals: name 'a' is used twice"),
    ("  approval_expires_after: -5\n", 9,
     "guardrails.approval_expires_after: Input should be greater than 0"),
    ("  quiet_hour: {}\n", 9, "guardrails.quiet_hour: unknown key"),
])
def test_impossible_guardrails_are_check_errors(tmp_path: Path, guardrails: str, line: int,
                                                message: str) -> None:
    f = tmp_path / "policy.yaml"
    (got,) = problems(tmp_path, guardrails)
    assert got.startswith(f"{f}:{line}: {message}"), got


def test_rule_approval_errors(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("targets: {log: {kind: log}}\nrules:\n  - name: r\n    do: [{target: log}]\n"
                 "    approval: {required: yes, expires: 1h}\n")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    assert str(err.value) == f"{f}:5: rules[0].approval.expires: unknown key (check the " \
                             "spelling; see the example in etc/)"
