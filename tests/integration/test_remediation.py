"""Remediation against real devices on loopback: fakenos over SSH (netmiko) and net-snmp
snmpd with a writable ifAdminStatus (pysnmp SET), then the daemon's wiring: a verified
fix marks the incident mitigated and its event reaches policy; a failed one escalates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from actions.dispatcher import build_payload
from actions.executors.remediate import DeviceAccess, RemediationExecutor
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext
from collector.config import load_config
from collector.daemon import Daemon
from correlator.incidents import Incident, IncidentEvent
from probes.snmp.config import SnmpV2c
from probes.types import IF_OPER_STATUS, STATUS_DOWN, Observation
from tests.support.fakenos_host import FakeCliDevice
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

IOS_UP = """GigabitEthernet0/2 is up, line protocol is up
  Hardware is iGbE, address is 5254.0012.3456 (bia 5254.0012.3456)
"""
IOS_DOWN = IOS_UP.replace("line protocol is up", "line protocol is down")
BOUNCE = ("interface Gi0/2", "shutdown", "no shutdown")
ADMIN_2 = ".1.3.6.1.2.1.2.2.1.7.2"
# snmp_admin_bounce waits 2 s between down and up; the tests' own allowlist entry less
QUICK = {"quick_bounce": {"method": "snmp", "down_for": 0.1}}


class Hooks:
    """What the executor told the daemon (``mark_mitigated`` / ``remediation_failed``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    def extra(self, access: DeviceAccess | None) -> dict[str, Any]:
        def hook(kind: str) -> Any:
            def call(incident_id: str, *, by: str, detail: str, ts: float) -> None:
                assert ts > 0
                self.calls.append((kind, incident_id, by, detail))
            return call

        return {"devices": lambda name: access if access and name == access.name else None,
                "mark_mitigated": hook("mitigated"),
                "remediation_failed": hook("remediation_failed")}


def plan_for(device: str, port: str | None, *, target: str = "fix") -> ActionPlan:
    inc = Incident(id="INC-000007", root=f"link:{device}:{port}", kind="link_down",
                   device=device, port=port, role="access", site="north",
                   severity="major", state="open", opened_at=1.0, updated_at=1.0)
    payload = build_payload(IncidentEvent("opened", inc, 1.0), "fix-links", "k1")
    return ActionPlan(key="k1", incident_id=inc.id, event="opened", rule="fix-links",
                      target=target, executor="remediation", payload=payload)


async def run(ex: RemediationExecutor, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
    try:
        return await ex.execute(plan, dry_run=dry_run)
    finally:
        await ex.aclose()


def executor(template: str, access: DeviceAccess | None, hooks: Hooks,
             **fields: Any) -> RemediationExecutor:
    cfg = {"kind": "remediation", "template": template, "timeout": 5, "settle": 0.05,
           "verify_attempts": 2, "verify_interval": 0.05, **fields}
    return RemediationExecutor("fix", RemediationTarget.model_validate(cfg),
                               context=ExecutorContext(extra=hooks.extra(access)))


# --- CLI over SSH (fakenos) -----------------------------------------------------------


@pytest.fixture
def ios() -> Iterator[FakeCliDevice]:
    with FakeCliDevice("cisco_ios", {"show interfaces Gi0/2": IOS_UP},
                       config_commands=BOUNCE) as dev:
        yield dev


def cli_access(dev: FakeCliDevice, **overrides: Any) -> DeviceAccess:
    return DeviceAccess(name="r1", address=dev.address, cli=dev.config(**overrides))


async def test_bounce_port_sends_exactly_the_template_and_verifies(ios: FakeCliDevice) -> None:
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks)
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "succeeded", result.detail
    assert result.detail.startswith("mitigated: bounce_port on r1:")
    assert ios.received == ["configure terminal", "interface Gi0/2", "shutdown",
                            "no shutdown", "end", "show interfaces Gi0/2"]
    assert hooks.calls == [("mitigated", "INC-000007", "fix", result.detail)]


async def test_port_still_down_is_not_mitigated_and_escalates(ios: FakeCliDevice) -> None:
    ios.set_output("show interfaces Gi0/2", IOS_DOWN)
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks, verify_attempts=3)
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "failed"
    assert result.detail.startswith("not mitigated: bounce_port on r1:")
    assert "after 3 check(s)" in result.detail
    assert ios.calls["show interfaces Gi0/2"] == 3
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]


@pytest.mark.parametrize("port", ["Gi0/2\nreload", "Gi0/2 ; reload", "Po1", "Gi0/2\r"])
async def test_bad_port_value_is_blocked_and_nothing_is_sent(ios: FakeCliDevice,
                                                             port: str) -> None:
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks)
    result = await run(ex, plan_for("r1", port), dry_run=False)
    assert result.outcome == "blocked"
    assert "parameter port" in result.detail
    assert ios.received == []
    assert hooks.calls == []


async def test_hung_session_is_cut_at_the_timeout(ios: FakeCliDevice) -> None:
    ios.hang("shutdown")
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks, timeout=3)
    started = time.monotonic()
    try:
        result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    finally:
        ios.release("shutdown")
    elapsed = time.monotonic() - started
    # something was sent: a half-applied fix is never retried on its own
    assert result.outcome == "failed", result.detail
    assert "no answer in 3 s (sending the configuration)" in result.detail
    assert elapsed < 5
    assert "no shutdown" not in ios.received
    # the port may be left shut: escalate
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]
    assert hooks.calls[0][3].startswith("not mitigated: bounce_port on r1: no answer in 3 s")


async def test_wrong_password_fails_without_retry_and_leaks_nothing(
        ios: FakeCliDevice) -> None:
    ex = executor("bounce_port", cli_access(ios, password=SecretStr("wrong-pw-123")),
                  Hooks())
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "failed"
    assert "authentication failed" in result.detail
    assert "wrong-pw-123" not in result.detail and ios.password not in result.detail
    assert ios.received == []


async def test_dry_run_says_what_it_would_send(ios: FakeCliDevice) -> None:
    ex = executor("bounce_port", cli_access(ios), Hooks())
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=True)
    assert result.outcome == "dry_run"
    assert "interface Gi0/2; shutdown; no shutdown" in result.detail
    assert ios.received == []


async def test_reset_ont_on_smartax() -> None:
    ont_info = "  F/S/P                   : 0/1/0\n  ONT-ID                  : 5\n" \
               "  Run state               : online\n"
    with FakeCliDevice("huawei_smartax", {"display ont info 0 1 0 5": ont_info},
                       config_commands=("interface gpon 0/1", "ont reset 0 5")) as olt:
        ex = executor("reset_ont", DeviceAccess(name="olt1", address=olt.address,
                                                cli=olt.config()), hooks := Hooks())
        result = await run(ex, plan_for("olt1", "0/1/0/5"), dry_run=False)
    assert result.outcome == "succeeded", result.detail
    assert olt.received == ["config", "interface gpon 0/1", "ont reset 0 5", "return",
                            "display ont info 0 1 0 5"]
    assert [c[0] for c in hooks.calls] == ["mitigated"]


async def test_device_without_cli_access_is_blocked(ios: FakeCliDevice) -> None:
    hooks = Hooks()
    passive = DeviceAccess(name="r1", address=ios.address)  # no CLI, no SNMP: passive
    for access in (passive, None):
        ex = executor("bounce_port", access, hooks)
        result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
        assert result.outcome == "blocked"
    assert ios.received == []


# --- SNMP SET (snmpd, writable ifAdminStatus) ------------------------------------------


def snmp_access(agent: SnmpdAgent, *, v3: bool = False, known: bool = True) -> DeviceAccess:
    creds = agent.v3_credentials() if v3 else agent.v2c_credentials()
    return DeviceAccess(name="sw1", address=agent.address, snmp=creds, snmp_port=agent.port,
                        if_index=(lambda port: {"Gi0/1": 1, "Gi0/2": 2}.get(port)) if known
                        else None)


@pytest.mark.parametrize("v3", [False, True], ids=["v2c", "v3"])
async def test_snmp_admin_bounce_mitigates(v3: bool) -> None:
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN)]
    with SnmpdAgent(ifs, writable=True) as agent:
        hooks = Hooks()
        ex = executor("snmp_admin_bounce", snmp_access(agent, v3=v3), hooks, timeout=4)
        result = await run(ex, plan_for("sw1", "Gi0/2"), dry_run=False)
        sets = agent.read_back()
    assert result.outcome == "succeeded", result.detail
    assert result.detail == ("mitigated: snmp_admin_bounce on sw1: ifOperStatus.2 is up "
                             "after 1 check(s)")
    assert sets == [{"oid": ADMIN_2, "value": 2}, {"oid": ADMIN_2, "value": 1}]
    assert agent.interfaces[2].admin == 1 and agent.interfaces[2].oper == 1
    assert [c[0] for c in hooks.calls] == ["mitigated"]


async def test_snmp_port_that_stays_down_is_not_mitigated() -> None:
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN, oper_after_up=2)]
    with SnmpdAgent(ifs, writable=True) as agent:
        hooks = Hooks()
        # the poller has not read this device yet: the ifIndex comes from an ifName walk
        ex = executor("quick_bounce", snmp_access(agent, known=False), hooks, timeout=4,
                      templates=QUICK)
        result = await run(ex, plan_for("sw1", "Gi0/2"), dry_run=False)
        sets = agent.read_back()
    assert result.outcome == "failed"
    assert result.detail == ("not mitigated: quick_bounce on sw1: ifOperStatus.2 is down "
                             "after 2 check(s)")
    assert [s["value"] for s in sets] == [2, 1]  # it was brought back up administratively
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]


async def test_read_only_agent_refuses_and_nothing_changes() -> None:
    with SnmpdAgent([Interface(2, "Gi0/2", oper=STATUS_DOWN)]) as agent:  # rocommunity
        ex = executor("quick_bounce", snmp_access(agent), Hooks(), timeout=4, templates=QUICK)
        result = await run(ex, plan_for("sw1", "Gi0/2"), dry_run=False)
        sets = agent.read_back()
    assert result.outcome == "failed"
    assert "noAccess" in result.detail and "write access" in result.detail
    assert sets == []


# --- the daemon's wiring: events reach policy ------------------------------------------


def write_config(tmp: Path, agent: SnmpdAgent, log_file: Path) -> Path:
    (tmp / "subscribers.csv").write_text(
        "id,device,port,monthly_revenue,sla_tier\nS-1,sw1,Gi0/2,30,residential\n")
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"sw1": {"role": "access", "site": "north",
                            "ports": ["Gi0/1", "Gi0/2"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {
            "bounce": {"kind": "remediation", "template": "quick_bounce",
                       "templates": QUICK, "timeout": 4, "settle": 0.05, "verify_attempts": 2,
                       "verify_interval": 0.05},
            "escalation": {"kind": "log", "path": str(log_file)},
        },
        "rules": [
            {"name": "bounce-links", "when": {"events": ["opened"], "kind": ["link_down"]},
             "do": [{"target": "bounce"}]},
            {"name": "tell-noc", "when": {"events": ["mitigated", "remediation_failed"]},
             "do": [{"target": "escalation"}]},
        ],
        "guardrails": {"remediation": ["remediation"]},
    }, sort_keys=False))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": None,
                   "api_listen": None},
        "credentials": {"lab": {"version": "2c", "community": agent.community}},
        "devices": {"sw1": {"address": agent.address,
                            "probes": [{"kind": "snmp", "credentials": "lab",
                                        "port": agent.port}]}},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def port(status: int) -> Observation:
    return Observation(device="sw1", source="trap", name=IF_OPER_STATUS, instance="Gi0/2",
                       value=status, ts=time.time(), labels={"admin": "up"})


@pytest.mark.parametrize("stays_down", [False, True], ids=["fixed", "still-down"])
async def test_daemon_marks_mitigated_or_escalates(tmp_path: Path, stays_down: bool) -> None:
    log_file = tmp_path / "noc.jsonl"
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN,
                                            oper_after_up=STATUS_DOWN if stays_down else 1)]
    with SnmpdAgent(ifs, writable=True) as agent:
        d = Daemon(load_config(write_config(tmp_path, agent, log_file)))
        try:
            assert isinstance(d.settings.config.credentials["lab"], SnmpV2c)
            d._handle(d.correlator.observe([port(STATUS_DOWN)]))
            access = d._device_access("sw1")
            assert access is not None and d._device_access("ghost") is None
            assert access.if_index is not None and access.if_index("Gi0/2") is None
            if not stays_down:  # the ifIndex as the poller read it (else: an ifName walk)
                job = d.jobs[0]
                await d._on_poll(job, await job.poller.poll(), 0.0, 0)
                assert access.if_index("Gi0/2") == 2
            assert await d.dispatcher.run_once() == 1  # the bounce
            assert await d.dispatcher.run_once() == 1  # the event it raised, to the NOC
            rows = {r.rule: r for r in d.journal.query(limit=10)}
            inc = d.correlator.open_incidents()[0]
        finally:
            for ex in d.dispatcher.executors.values():
                await ex.aclose()
            d._close_stores()
        sets = agent.read_back()
    assert [s["value"] for s in sets] == [2, 1]
    event = "remediation_failed" if stays_down else "mitigated"
    assert rows["bounce-links"].state == ("failed" if stays_down else "succeeded")
    assert rows["tell-noc"].event == event and rows["tell-noc"].state == "succeeded"
    line = json.loads(log_file.read_text().splitlines()[0])
    assert line["event"] == event and line["incident"]["id"] == inc.id
    if stays_down:
        assert inc.mitigated_at is None
    else:
        assert inc.mitigated_by == "bounce" and inc.mitigated_at is not None
        assert inc.timeline[-1].text.startswith("mitigated by bounce: mitigated: ")
        assert line["incident"]["mitigated_by"] == "bounce"
