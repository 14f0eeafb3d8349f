"""Remediation against real devices on loopback: fakenos over SSH (netmiko) and net-snmp
snmpd with a writable ifAdminStatus (pysnmp SET), then the daemon's wiring: a verified
fix marks the incident mitigated and its event reaches policy; a failed one escalates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import SecretStr

from actions.dispatcher import Dispatcher, build_executors, build_payload
from actions.executors.remediate import DeviceAccess, RemediationExecutor
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext
from collector.config import load_config
from collector.daemon import Daemon
from collector.reload import _close_when_idle
from correlator.incidents import Incident, IncidentEvent
from probes.snmp.config import SnmpV2c
from probes.types import IF_OPER_STATUS, STATUS_DOWN, Observation
from tests.support.fakenos_host import FakeCliDevice
from tests.support.receiver import WebhookReceiver
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

    def context(self, access: DeviceAccess | None) -> dict[str, Any]:
        """The ExecutorContext fields remediation uses: one device, and hooks that record."""
        def hook(kind: str) -> Any:
            def call(incident_id: str, *, by: str, detail: str, ts: float) -> None:
                assert ts > 0
                self.calls.append((kind, incident_id, by, detail))
            return call

        return {"devices": lambda name: access if access and name == access.name else None,
                "on_mitigated": hook("mitigated"),
                "on_remediation_failed": hook("remediation_failed")}


def incident(device: str, port: str | None, **fields: Any) -> Incident:
    return Incident(**{"id": "INC-000007", "root": f"link:{device}:{port}",
                       "kind": "link_down", "device": device, "port": port,
                       "role": "access", "site": "north", "severity": "major",
                       "state": "open", "opened_at": 1.0, "updated_at": 1.0, **fields})


def plan_for(device: str, port: str | None, *, target: str = "fix",
             attempts: int = 0) -> ActionPlan:
    inc = incident(device, port)
    payload = build_payload(IncidentEvent("opened", inc, 1.0), "fix-links", "k1")
    return ActionPlan(key="k1", incident_id=inc.id, event="opened", rule="fix-links",
                      target=target, executor="remediation", payload=payload,
                      attempts=attempts)


def still_open(incident_id: str) -> Incident:
    """The correlator's answer while the incident is open and not mitigated."""
    return incident("r1", "Gi0/2", id=incident_id)


async def run(ex: RemediationExecutor, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
    try:
        return await ex.execute(plan, dry_run=dry_run)
    finally:
        await ex.aclose()


def executor(template: str, access: DeviceAccess | None, hooks: Hooks, *,
             state_dir: Path | None = None,
             lookup: Callable[[str], Incident | None] | None = still_open,
             **fields: Any) -> RemediationExecutor:
    cfg = {"kind": "remediation", "template": template, "timeout": 5, "settle": 0.05,
           "verify_attempts": 2, "verify_interval": 0.05, **fields}
    return RemediationExecutor("fix", RemediationTarget.model_validate(cfg),
                               state_dir=state_dir,
                               context=ExecutorContext(**hooks.context(access),
                                                       incident=lookup))


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


# --- safety: ended incidents, restarts, lost SNMP replies, last attempts ----------------


@pytest.mark.parametrize(("now", "why"), [
    ({"state": "resolved", "resolved_at": 5.0}, "is resolved now"),
    ({"state": "merged"}, "is merged now"),
    ({"mitigated_at": 5.0, "mitigated_by": "night-shift"}, "was mitigated already"),
    (None, "is not known"),
], ids=["resolved", "merged", "mitigated", "unknown"])
async def test_an_incident_that_ended_while_the_action_waited_is_not_fixed(
        ios: FakeCliDevice, now: dict[str, Any] | None, why: str) -> None:
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks,
                  lookup=lambda iid: None if now is None else incident("r1", "Gi0/2", **now))
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "blocked"
    assert result.detail.startswith("bounce_port on r1: nothing sent: incident INC-000007 ")
    assert why in result.detail
    assert ios.received == [] and hooks.calls == []


async def test_without_an_incident_lookup_nothing_is_sent(ios: FakeCliDevice) -> None:
    ex = executor("bounce_port", cli_access(ios), Hooks(), lookup=None)
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "blocked" and "cannot be looked up" in result.detail
    assert ios.received == []


async def test_a_failure_before_sending_escalates_on_the_last_attempt() -> None:
    with FakeCliDevice("cisco_ios") as dev:
        access = cli_access(dev)
    # stopped: the port refuses connections, so nothing is sent
    hooks = Hooks()
    first = await run(executor("bounce_port", access, hooks, max_attempts=2),
                      plan_for("r1", "Gi0/2", attempts=0), dry_run=False)
    assert first.outcome == "retry" and "connection refused" in first.detail
    assert hooks.calls == []
    last = await run(executor("bounce_port", access, hooks, max_attempts=2),
                     plan_for("r1", "Gi0/2", attempts=1), dry_run=False)
    assert last.outcome == "retry"  # the dispatcher fails it: no attempts left
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]
    assert "connection refused" in hooks.calls[0][3]


ROOT = Path(__file__).resolve().parents[2]
KILLED_MID_APPLY = """
import asyncio, sys
from pathlib import Path
from actions.dispatcher import Dispatcher, build_executors, build_payload
from actions.executors.remediate import DeviceAccess, RemediationExecutor
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ExecutorContext
from correlator.incidents import Incident, IncidentEvent
from probes.cli.config import CliProbeConfig

port, password, state = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
inc = Incident(id="INC-000007", root="link:r1:Gi0/2", kind="link_down", device="r1",
               port="Gi0/2", role="access", site="north", severity="major", state="open",
               opened_at=1.0, updated_at=1.0)
plan = ActionPlan(key="k1", incident_id=inc.id, event="opened", rule="fix-links",
                  target="fix", executor="remediation",
                  payload=build_payload(IncidentEvent("opened", inc, 1.0), "fix-links", "k1"))
access = DeviceAccess(name="r1", address="127.0.0.1", cli=CliProbeConfig(
    platform="cisco_ios", port=port, username="noc-reader", password=password))
ex = RemediationExecutor("fix", RemediationTarget(kind="remediation", template="bounce_port",
                                                  timeout=60), state_dir=state,
                         context=ExecutorContext(devices=lambda name: access,
                                                 incident=lambda iid: inc))
asyncio.run(ex.execute(plan, dry_run=False))
"""


async def test_killed_while_sending_the_fix_is_never_sent_again(ios: FakeCliDevice,
                                                                tmp_path: Path) -> None:
    """kill -9 in the middle of the apply step: the action is still `running` in the
    journal, so the restarted daemon calls execute again -- which must not bounce the
    port a second time, and must tell a person."""
    ios.hang("shutdown")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_MID_APPLY, str(ios.port), ios.password, str(tmp_path),
        cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while "shutdown" not in ios.received:
            assert proc.returncode is None and time.monotonic() < deadline, "never got there"
            await asyncio.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        await proc.wait()
        ios.release("shutdown")
    sent = list(ios.received)
    hooks = Hooks()
    ex = executor("bounce_port", cli_access(ios), hooks, state_dir=tmp_path)
    result = await run(ex, plan_for("r1", "Gi0/2"), dry_run=False)
    assert result.outcome == "blocked"
    assert result.detail == ("bounce_port on r1: may have been applied before a restart (it "
                             "was being sent when the daemon stopped); check by hand")
    assert ios.received == sent  # nothing more reached the device
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]


async def test_a_stop_between_the_two_sets_brings_the_port_up_and_resume_only_verifies(
        tmp_path: Path) -> None:
    slow = {"slow_bounce": {"method": "snmp", "down_for": 1.5}}
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN)]
    with SnmpdAgent(ifs, writable=True) as agent:
        hooks = Hooks()
        ex = executor("slow_bounce", snmp_access(agent), hooks, state_dir=tmp_path,
                      timeout=4, templates=slow)
        task = asyncio.create_task(ex.execute(plan_for("sw1", "Gi0/2"), dry_run=False))
        deadline = time.monotonic() + 10
        while not agent.read_back():  # the down SET arrived: now stop (a shutdown drain)
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ex.aclose()
        after_stop = agent.read_back()
        admin = agent.interfaces[2].admin
        # restarted: the journal still says running, so execute runs again
        again = executor("slow_bounce", snmp_access(agent), hooks, state_dir=tmp_path,
                         timeout=4, templates=slow)
        result = await run(again, plan_for("sw1", "Gi0/2"), dry_run=False)
        final = agent.read_back()
    # the cancellation waited for the up SET instead of leaving the port down
    assert [s["value"] for s in after_stop] == [2, 1] and admin == 1
    assert result.outcome == "succeeded", result.detail
    assert result.detail.startswith("mitigated: slow_bounce on sw1: ifOperStatus.2 is up")
    assert final == after_stop  # verified only: not bounced twice
    assert [c[0] for c in hooks.calls] == ["mitigated"]


class DropSetDown(asyncio.DatagramProtocol):
    """A UDP relay in front of snmpd that loses the agent's replies to `SET
    ifAdminStatus.2 = down(2)` (v2c: the request is readable on the wire): the agent
    applies the SET, the manager never hears so."""

    # OID 1.3.6.1.2.1.2.2.1.7.2 followed by INTEGER 2, BER-encoded
    DOWN = bytes.fromhex("2b060102010202010702" "020102")

    def __init__(self, agent: tuple[str, int]) -> None:
        self.agent = agent
        self.client: tuple[str, int] | None = None
        self.dropping = 0
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.agent:
            if self.dropping:
                self.dropping -= 1
                self.dropped += 1
            elif self.client is not None:
                self.transport.sendto(data, self.client)
            return
        self.client = addr
        if self.DOWN in data:
            self.dropping += 1
        self.transport.sendto(data, self.agent)


async def test_a_lost_reply_to_the_down_set_still_brings_the_port_up_and_escalates() -> None:
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN)]
    with SnmpdAgent(ifs, writable=True) as agent:
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_datagram_endpoint(
            lambda: DropSetDown((agent.address, agent.port)), local_addr=("127.0.0.1", 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            access = DeviceAccess(name="sw1", address="127.0.0.1",
                                  snmp=agent.v2c_credentials(), snmp_port=port,
                                  if_index=lambda name: 2)
            hooks = Hooks()
            ex = executor("quick_bounce", access, hooks, timeout=2, templates=QUICK)
            result = await run(ex, plan_for("sw1", "Gi0/2"), dry_run=False)
        finally:
            transport.close()
        sets = agent.read_back()
    assert relay.dropped >= 1
    # not "retry": the agent did take the port down; it was brought back up
    assert result.outcome == "failed", result.detail
    assert "may have been applied, so the port was set up again" in result.detail
    assert {s["value"] for s in sets[:-1]} == {2} and sets[-1]["value"] == 1
    assert agent.interfaces[2].admin == 1
    assert [c[0] for c in hooks.calls] == ["remediation_failed"]


# --- the dispatcher: slots of its own; a reload closes a retired executor when idle -----


async def test_a_slow_remediation_does_not_hold_the_slots_pages_need(tmp_path: Path) -> None:
    """One shared slot (concurrency=1): the bounce is in its settle wait when a page is
    due; the page goes out at once, and a reload that retires the bounce's executor
    closes it only after the bounce ended."""
    ifs = [Interface(1, "Gi0/1"), Interface(2, "Gi0/2", oper=STATUS_DOWN)]
    link = incident("sw1", "Gi0/2")
    box = incident("sw2", None, id="INC-000008", root="device:sw2",
                   kind="device_unreachable")
    with SnmpdAgent(ifs, writable=True) as agent, WebhookReceiver() as receiver:
        pol = Policy.model_validate({
            "targets": {
                "bounce": {"kind": "remediation", "template": "quick_bounce",
                           "templates": QUICK, "timeout": 4, "settle": 3,
                           "verify_attempts": 1},
                "page": {"kind": "webhook", "url": receiver.url},
            },
            "rules": [
                {"name": "fix", "when": {"kind": ["link_down"]}, "do": [{"target": "bounce"}]},
                {"name": "tell", "when": {"kind": ["device_unreachable"]},
                 "do": [{"target": "page"}]},
            ],
        })
        hooks = Hooks()
        context = ExecutorContext(**hooks.context(snmp_access(agent)),
                                  incident={link.id: link, box.id: box}.get)
        executors = build_executors(pol, state_dir=tmp_path, context=context)
        journal = Journal(tmp_path / "journal.db")
        d = Dispatcher(pol, journal, executors, concurrency=1, faults=FaultInjector())
        stopping = asyncio.Event()
        runner = asyncio.create_task(d.run(stopping))
        closer: asyncio.Task[None] | None = None
        try:
            (fix,) = d.submit(IncidentEvent("opened", link, time.time()))
            deadline = time.monotonic() + 10
            while len(agent.read_back()) < 2:  # down and up: now it settles for 3 s
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            (page,) = d.submit(IncidentEvent("opened", box, time.time()))
            paged = time.monotonic()
            while not receiver.deliveries:
                assert time.monotonic() - paged < 2, "the page waited for the bounce"
                await asyncio.sleep(0.02)
            row = journal.get(fix.key)
            assert row is not None and row.state == "running"  # still settling
            # a reload retires the bounce's executor: it is closed only once idle
            closer = asyncio.create_task(_close_when_idle(d, executors["bounce"], bound=20))
            await asyncio.sleep(0.3)
            assert not closer.done()
            await asyncio.wait_for(closer, 15)
            row = journal.get(fix.key)
            paged_row = journal.get(page.key)
        finally:
            stopping.set()
            await runner
            if closer is not None and not closer.done():
                closer.cancel()
            for ex in executors.values():
                await ex.aclose()
            journal.close()
    assert row is not None and row.state == "succeeded", row
    assert paged_row is not None and paged_row.state == "succeeded"
    assert [c[0] for c in hooks.calls] == ["mitigated"]


async def test_the_same_fix_is_not_sent_again_within_repeat_after(ios: FakeCliDevice,
                                                                  tmp_path: Path) -> None:
    """A slow flapper: the port is down again (a new incident, a new action) 20 minutes
    after it was bounced; with repeat_after: 1h it is left for a person."""
    hooks = Hooks()
    clock = [1000.0]

    def bounce() -> RemediationExecutor:
        ex = executor("bounce_port", cli_access(ios), hooks, state_dir=tmp_path,
                      repeat_after="1h")
        ex.context.clock = lambda: clock[0]
        return ex

    first = await run(bounce(), plan_for("r1", "Gi0/2"), dry_run=False)
    sent = list(ios.received)
    clock[0] += 1200
    again = dataclasses.replace(plan_for("r1", "Gi0/2"), key="k2")
    second = await run(bounce(), again, dry_run=False)
    clock[0] += 2400  # an hour after the first
    third = await run(bounce(), dataclasses.replace(again, key="k3"), dry_run=False)
    assert first.outcome == "succeeded", first.detail
    assert second.outcome == "blocked"
    assert second.detail == ("bounce_port on r1: nothing sent: the same fix went to r1 20m "
                             "ago (repeat_after 1h): an element that keeps failing needs a "
                             "person")
    assert third.outcome == "succeeded", third.detail
    assert ios.received == sent * 2
