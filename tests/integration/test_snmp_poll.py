"""SnmpPoller against a real net-snmp snmpd on loopback (v2c and v3 authPriv SHA/AES)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from probes.snmp import SnmpPoller, SnmpV2c, SnmpV3
from probes.types import (
    DEVICE_RESTARTED,
    IF_OPER_STATUS,
    REACHABLE,
    STATUS_DOWN,
    PollResult,
)
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.integration

IF_OPER_STATUS_COL = "1.3.6.1.2.1.2.2.1.8"

INTERFACES = [
    Interface(1, "ge-0/0/1", alias="uplink core1", speed_mbps=10_000,
              in_octets=2**40 + 7, out_octets=2**33, in_errors=3, out_errors=4),
    Interface(2, "ge-0/0/2", alias="cust ACME"),
    Interface(3, "ge-0/0/3", alias="spare", admin=2, oper=2),
    Interface(17, "xe-1/0/0", alias="", descr="TenGigE1/0/0", speed_mbps=100_000),
]
N = len(INTERFACES)
STATUS_ROWS = 6 * N


@pytest.fixture
def agent() -> Iterator[SnmpdAgent]:
    with SnmpdAgent(INTERFACES, sys_name="lab-edge-1") as running:
        yield running


def poller_for(
    agent: SnmpdAgent, credentials: SnmpV2c | SnmpV3, *, timeout: float = 2.0
) -> SnmpPoller:
    return SnmpPoller(
        device="edge1",
        address=agent.address,
        port=agent.port,
        credentials=credentials,
        timeout=timeout,
    )


def oper(result: PollResult) -> dict[str, tuple[int | float | str, dict[str, str]]]:
    return {
        o.instance: (o.value, dict(o.labels))
        for o in result.observations
        if o.name == IF_OPER_STATUS
    }


def reachable(result: PollResult) -> tuple[int | float | str, str]:
    (obs,) = [o for o in result.observations if o.name == REACHABLE]
    return obs.value, obs.labels["reason"]


@pytest.fixture(params=["v2c", "v3"])
def credentials(request: pytest.FixtureRequest, agent: SnmpdAgent) -> SnmpV2c | SnmpV3:
    return agent.v2c_credentials() if request.param == "v2c" else agent.v3_credentials()


async def test_first_poll_is_a_baseline_with_names_and_admin(
    agent: SnmpdAgent, credentials: SnmpV2c | SnmpV3
) -> None:
    poller = poller_for(agent, credentials)
    result = await poller.poll()
    assert result.ok, result.detail
    assert reachable(result) == (1, "ok")
    assert oper(result) == {
        "ge-0/0/1": (1, {"admin": "up", "if_index": "1", "alias": "uplink core1"}),
        "ge-0/0/2": (1, {"admin": "up", "if_index": "2", "alias": "cust ACME"}),
        "ge-0/0/3": (2, {"admin": "down", "if_index": "3", "alias": "spare"}),
        "xe-1/0/0": (1, {"admin": "up", "if_index": "17", "alias": ""}),
    }
    assert poller.sys_name == "lab-edge-1"
    assert result.varbinds == 3 + STATUS_ROWS + 4 * N
    await poller.aclose()


async def test_port_down_is_exactly_one_change(
    agent: SnmpdAgent, credentials: SnmpV2c | SnmpV3
) -> None:
    poller = poller_for(agent, credentials)
    await poller.poll()
    assert oper(await poller.poll()) == {}
    agent.set_oper(2, STATUS_DOWN)
    result = await poller.poll()
    assert result.ok, result.detail
    assert [(o.name, o.instance, o.value) for o in result.observations] == [
        (REACHABLE, "", 1),
        (IF_OPER_STATUS, "ge-0/0/2", STATUS_DOWN),
    ]
    assert oper(await poller.poll()) == {}


async def test_counters_come_through(agent: SnmpdAgent) -> None:
    poller = poller_for(agent, agent.v2c_credentials())
    await poller.poll()
    agent.update(2, in_octets=5_000_000_000, in_errors=9)
    result = await poller.poll()
    counters = result.counters
    assert counters is not None
    assert counters.if_index == [1, 2, 3, 17]
    assert counters.name == ["ge-0/0/1", "ge-0/0/2", "ge-0/0/3", "xe-1/0/0"]
    assert counters.in_octets[:2] == [2**40 + 7, 5_000_000_000]  # 64-bit counters
    assert counters.out_octets[0] == 2**33
    assert counters.in_errors[:2] == [3, 9] and counters.out_errors[0] == 4
    assert counters.speed_mbps == [10_000, 1000, 1000, 100_000]
    assert counters.oper_status == [1, 1, 2, 1]


async def test_names_are_not_rewalked_until_the_table_changes(agent: SnmpdAgent) -> None:
    poller = poller_for(agent, agent.v2c_credentials())
    await poller.poll()
    again = await poller.poll()
    assert again.varbinds == 2 + STATUS_ROWS  # GET + status columns only
    assert poller.name_reads == 1
    agent.set_interfaces([*INTERFACES, Interface(18, "xe-1/0/1", alias="new")])
    grown = await poller.poll()
    assert poller.name_reads == 2
    assert oper(grown) == {"xe-1/0/1": (1, {"admin": "up", "if_index": "18", "alias": "new"})}


async def test_v3_wrong_auth_key_is_auth_not_timeout(agent: SnmpdAgent) -> None:
    poller = poller_for(agent, agent.v3_credentials(auth_key="wrong-auth-key"), timeout=1.0)
    result = await poller.poll()
    assert result.error == "auth"
    assert reachable(result) == (1, "auth")
    assert "wrong-auth-key" not in result.detail


async def test_stopped_agent_is_a_quick_timeout(agent: SnmpdAgent) -> None:
    poller = poller_for(agent, agent.v2c_credentials(), timeout=0.3)
    assert (await poller.poll()).ok
    agent.stop()
    started = time.monotonic()
    result = await poller.poll()
    assert result.error == "timeout"
    assert reachable(result) == (0, "timeout")
    assert time.monotonic() - started < 1.0


async def test_wrong_type_from_the_agent_is_bad_type_and_state_is_kept(
    agent: SnmpdAgent,
) -> None:
    poller = poller_for(agent, agent.v2c_credentials())
    await poller.poll()
    oid = f"{IF_OPER_STATUS_COL}.2"
    agent.override(oid, "string", "down")
    result = await poller.poll()
    assert result.error == "bad_type"
    assert oid in result.detail
    assert reachable(result) == (1, "bad_type")
    agent.clear_overrides()
    assert oper(await poller.poll()) == {}


async def test_a_poll_under_asyncio_timeout_always_ends_on_time(agent: SnmpdAgent) -> None:
    """Deadlines spread over a poll's duration: a poll either finishes before its deadline
    or raises TimeoutError -- never returns late (gufo's wait_for swallows cancellations
    on Python 3.11; the poller re-raises them) -- and no change is lost or doubled."""
    poller = poller_for(agent, agent.v3_credentials())
    await poller.poll()
    started = time.monotonic()
    await poller.poll()
    steady = time.monotonic() - started
    agent.set_oper(1, STATUS_DOWN)
    rng = random.Random(8)
    timed_out = late = 0
    reports: list[tuple[int | float | str, dict[str, str]]] = []
    for _ in range(100):
        try:
            async with asyncio.timeout(rng.uniform(0.0, 1.5 * steady)) as deadline:
                result = await poller.poll()
            late += deadline.expired()
            reports += oper(result).values()
        except TimeoutError:
            timed_out += 1
    assert late == 0
    assert timed_out > 0
    result = await poller.poll()
    assert result.ok, result.detail
    reports += oper(result).values()
    assert [(v, labels["if_index"]) for v, labels in reports] == [(STATUS_DOWN, "1")]


async def test_agent_restart_is_reported(agent: SnmpdAgent) -> None:
    poller = poller_for(agent, agent.v2c_credentials())
    await poller.poll()
    await asyncio.sleep(1.0)  # let sysUpTime grow past what a fresh agent will report
    assert not any(o.name == DEVICE_RESTARTED for o in (await poller.poll()).observations)
    agent.restart()
    result = await poller.poll()
    assert result.ok, result.detail
    names = [o.name for o in result.observations]
    assert names[:2] == [REACHABLE, DEVICE_RESTARTED]
    assert names.count(IF_OPER_STATUS) == N  # a fresh baseline
    assert poller.name_reads == 2
