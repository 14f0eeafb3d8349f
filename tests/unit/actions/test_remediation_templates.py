"""The remediation allowlist: parameters, rendering and config errors (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from actions.dispatcher import build_payload
from actions.executors.remediate import ApplyRecord, DeviceAccess, RemediationExecutor
from actions.policy import load_policy
from actions.remediation_templates import BUILTIN, CliTemplate, Refused, bind, lines
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ExecutorContext
from correlator.incidents import Incident, IncidentEvent
from probes.cli.config import CliProbeConfig
from probes.source import SourceError


def rendered(name: str, platform: str, incident: dict[str, Any]) -> list[str]:
    tmpl = BUILTIN[name]
    assert isinstance(tmpl, CliTemplate)
    return lines(tmpl.platforms[platform].commands, bind(tmpl.params, incident))  # type: ignore[index]


def test_bounce_port_renders_the_port_into_fixed_lines() -> None:
    assert rendered("bounce_port", "cisco_ios", {"port": "Gi0/2"}) == [
        "interface Gi0/2", "shutdown", "no shutdown"]
    assert rendered("bounce_port", "cisco_ios", {"port": "TenGigabitEthernet1/0/1"})[0] == \
        "interface TenGigabitEthernet1/0/1"


@pytest.mark.parametrize("ont", ["0/1/0/5", "0/1/0 5"])
def test_reset_ont_splits_the_ont_into_named_groups(ont: str) -> None:
    assert rendered("reset_ont", "huawei_smartax", {"port": ont}) == [
        "interface gpon 0/1", "ont reset 0 5"]


@pytest.mark.parametrize(("port", "why"), [
    (None, "the incident has no port"),
    ("", "the incident has no port"),
    ("Gi0/2\nreload", "control character"),
    ("Gi0/2\r", "control character"),
    ("Gi0/2 ; reload", "does not match"),
    ("Gi\u0660/\u0662", "does not match"),  # Arabic-Indic digits are not [0-9]
    ("Vlan10", "does not match"),
])
def test_values_that_do_not_fit_are_refused(port: str | None, why: str) -> None:
    with pytest.raises(Refused, match=why):
        bind(BUILTIN["bounce_port"].params, {"port": port, "device": "r1"})


def target(**fields: Any) -> RemediationTarget:
    return RemediationTarget.model_validate({"kind": "remediation", **fields})


def test_own_templates_join_the_allowlist() -> None:
    t = target(template="shut_vlan", templates={"shut_vlan": {
        "method": "cli", "params": {"vlan": {"pattern": "^Vlan[0-9]{1,4}$"}},
        "platforms": {"cisco_ios": {"commands": ["interface {vlan}", "shutdown"]}}}})
    assert isinstance(t.chosen, CliTemplate)
    assert lines(t.chosen.platforms["cisco_ios"].commands,
                 bind(t.chosen.params, {"port": "Vlan10"})) == ["interface Vlan10", "shutdown"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"template": "reload_everything"}, "not in the allowlist"),
    ({"template": "bounce_port", "templates": {"bounce_port": {
        "method": "snmp"}}}, "is a built-in template"),
    ({"template": "x", "templates": {"x": {"method": "cli", "platforms": {
        "cisco_ios": {"commands": ["interface {prot}"]}}}}}, "unknown variable"),
    ({"template": "x", "templates": {"x": {"method": "cli", "platforms": {
        "cisco_ios": {"commands": ["shutdown\nreload"]}}}}}, "one command per line"),
    ({"template": "x", "templates": {"x": {"method": "cli", "params": {
        "port": {"pattern": "(["}}, "platforms": {"cisco_ios": {"commands": ["x"]}}}}},
     "not a regular expression"),
    ({"template": "x", "templates": {"x": {"method": "cli", "platforms": {
        "ios_xe": {"commands": ["x"]}}}}}, "cisco_ios"),
    ({"template": "x", "templates": {"x": {"method": "snmp", "params": {}}}},
     "needs a `port` parameter"),
])
def test_bad_targets_say_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        target(**fields)


def test_concurrency_and_repeat_after() -> None:
    t = target(template="bounce_port")
    assert t.concurrency == 4 and t.repeat_after is None
    t = target(template="bounce_port", concurrency=1, repeat_after="1h")
    assert t.concurrency == 1 and t.repeat_after == 3600.0
    for bad in ({"concurrency": 0}, {"repeat_after": 0}, {"repeat_after": "soon"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            target(template="bounce_port", **bad)


def test_apply_record_survives_a_reopen(tmp_path: Path) -> None:
    plan_ = plan("Gi0/1")
    rec = ApplyRecord(tmp_path)
    assert rec.get("k") is None
    rec.begin(plan_, "r1", ["interface Gi0/1", "shutdown"], 100.0)
    rec.close()
    rec = ApplyRecord(tmp_path)  # a restart
    assert rec.get("k") == ("applying", "")
    rec.end("k", "applied", "sent 2 command(s)", 101.0)
    assert rec.get("k") == ("applied", "sent 2 command(s)")
    assert rec.last_sent("r1", ["interface Gi0/1", "shutdown"]) == 100.0
    assert rec.last_sent("r1", ["interface Gi0/2", "shutdown"]) is None
    rec.forget("k")
    assert rec.get("k") is None and rec.last_sent("r1", ["interface Gi0/1", "shutdown"]) is None
    rec.close()
    assert (tmp_path / "remediation.db").exists()


def test_policy_file_names_the_line_of_a_bad_template(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({
        "targets": {"fix": {"kind": "remediation", "template": "bounce_prot"}},
        "rules": [{"name": "r", "when": {"events": ["mitigated"]}, "do": [{"target": "fix"}]}],
    }, sort_keys=False))
    with pytest.raises(SourceError) as err:
        load_policy(path)
    text = str(err.value)
    assert f"{path}:" in text and "targets.fix" in text and "bounce_prot" in text


def test_policy_rules_can_match_the_remediation_events(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({
        "targets": {"fix": {"kind": "remediation", "template": "snmp_admin_bounce"},
                    "log": {"kind": "log"}},
        "rules": [{"name": "escalate", "when": {"events": ["remediation_failed"]},
                   "do": [{"target": "log"}]},
                  {"name": "done", "when": {"events": ["mitigated"]},
                   "do": [{"target": "log"}]}],
    }, sort_keys=False))
    assert [r.when.events for r in load_policy(path).rules] == [["remediation_failed"],
                                                                ["mitigated"]]


# --- the executor's refusals happen before any I/O ----------------------------------------


def plan(port: str | None) -> ActionPlan:
    inc = Incident(id="INC-000001", root="link:r1:x", kind="link_down", device="r1",
                   port=port, role="access", site=None, severity="minor", state="open",
                   opened_at=0, updated_at=0)
    return ActionPlan(key="k", incident_id=inc.id, event="opened", rule="r", target="fix",
                      executor="remediation",
                      payload=build_payload(IncidentEvent("opened", inc, 0), "r", "k"))


def cli(platform: str) -> CliProbeConfig:
    return CliProbeConfig.model_validate({"platform": platform, "username": "u",
                                          "password": "p", "port": 9})


@pytest.mark.parametrize(("access", "message"), [
    (None, "not configured for polling here"),
    (DeviceAccess("r1", "127.0.0.1"), "has no CLI access configured"),
    (DeviceAccess("r1", "127.0.0.1", cli=cli("juniper_junos")),
     "has no commands for platform juniper_junos"),
])
async def test_executor_blocks_devices_it_may_not_touch(access: DeviceAccess | None,
                                                         message: str) -> None:
    ex = RemediationExecutor("fix", target(template="bounce_port"), context=ExecutorContext(
        devices=lambda name: access))
    try:
        result = await ex.execute(plan("Gi0/1"), dry_run=False)
    finally:
        await ex.aclose()
    assert result.outcome == "blocked"
    assert message in result.detail


async def test_executor_blocks_a_bad_value_even_in_a_dry_run() -> None:
    access = DeviceAccess("r1", "127.0.0.1", cli=cli("cisco_ios"))
    ex = RemediationExecutor("fix", target(template="bounce_port"), context=ExecutorContext(
        devices=lambda name: access))
    try:
        bad = await ex.execute(plan("Gi0/1\nreload"), dry_run=True)
        good = await ex.execute(plan("Gi0/1"), dry_run=True)
    finally:
        await ex.aclose()
    assert bad.outcome == "blocked" and "control character" in bad.detail
    assert good.outcome == "dry_run"
    assert good.detail == ("would send to r1 (cisco_ios): interface Gi0/1; shutdown; "
                           "no shutdown")
