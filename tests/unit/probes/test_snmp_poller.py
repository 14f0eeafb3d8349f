"""SnmpPoller with a fake gufo session: error mapping, state keeping, cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest
from gufo.snmp import (
    Aes128Key,
    Aes256Key,
    DesKey,
    Md5Key,
    NoSuchInstance,
    Sha1Key,
    Sha512Key,
    SnmpAuthError,
    SnmpDecodeError,
    SnmpError,
)
from pydantic import SecretStr

from probes.errors import ProbeConfigError
from probes.snmp import SnmpPoller, SnmpV2c, SnmpV3, parse
from probes.snmp.parse import IF_HC_IN_OCTETS, IF_OPER_STATUS_COL, NAME_COLUMNS, SYS_UPTIME
from probes.types import IF_OPER_STATUS, REACHABLE, PollResult
from tests.unit.probes.snmp_fakes import FakeAgent, load_snmprec

COMMUNITY = "s3cret-community"


def v2c() -> SnmpV2c:
    return SnmpV2c(version="2c", community=SecretStr(COMMUNITY))


def v3(**overrides: object) -> SnmpV3:
    fields: dict[str, object] = {
        "version": "3",
        "user": "nr",
        "auth_key": SecretStr("authpass123"),
        "priv_key": SecretStr("privpass123"),
    }
    fields.update(overrides)
    return SnmpV3.model_validate(fields)


def make(agent: FakeAgent, credentials: SnmpV2c | SnmpV3 | None = None) -> SnmpPoller:
    poller = SnmpPoller(
        device="sw1",
        address="192.0.2.1",
        port=161,
        credentials=credentials or v2c(),
        timeout=0.5,
    )
    poller._connect = agent.connect  # type: ignore[method-assign]
    return poller


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent(load_snmprec("cisco-c3560.snmprec"))


def reachable(result: PollResult) -> tuple[int | float | str, str]:
    obs = [o for o in result.observations if o.name == REACHABLE]
    assert len(obs) == 1
    return obs[0].value, obs[0].labels["reason"]


def changes(result: PollResult) -> list[tuple[str, int | float | str]]:
    return [(o.instance, o.value) for o in result.observations if o.name == IF_OPER_STATUS]


async def test_first_poll_is_a_baseline_then_only_changes(agent: FakeAgent) -> None:
    poller = make(agent)
    first = await poller.poll()
    assert first.ok, first.detail
    assert first.observations[0].name == REACHABLE
    assert reachable(first) == (1, "ok")
    assert len(changes(first)) == 57
    assert poller.sys_name == "DUMSYS-04"
    assert first.counters is not None and len(first.counters.if_index) == 57
    # GET of 3 scalars + 6 status columns (Null0 lacks 2 HC rows) + 4 name columns
    assert first.varbinds == 3 + (6 * 57 - 2) + 4 * 57

    second = await poller.poll()
    assert second.ok
    assert changes(second) == []
    assert reachable(second) == (1, "ok")
    assert second.varbinds == 2 + (6 * 57 - 2)
    assert poller.name_reads == 1
    assert agent.sessions == 1
    assert parse.SYS_NAME not in agent.requests[agent.requests.index(SYS_UPTIME, 1):]


async def test_port_down_is_one_change_and_counters_move(agent: FakeAgent) -> None:
    poller = make(agent)
    await poller.poll()
    agent.set(f"{IF_OPER_STATUS_COL}.10149", 2)
    agent.set(f"{IF_HC_IN_OCTETS}.10149", 1050166720685 + 1_000)
    result = await poller.poll()
    assert changes(result) == [("Gi0/49", 2)]
    assert result.counters is not None
    gi49 = result.counters.if_index.index(10149)
    assert result.counters.in_octets[gi49] == 1050166720685 + 1_000
    assert result.counters.oper_status[gi49] == 2


@pytest.mark.parametrize(
    ("exc", "error", "answered", "reconnects"),
    [
        (TimeoutError(), "timeout", 0, True),
        (OSError(101, "Network is unreachable"), "socket", 0, True),
        (SnmpAuthError("authentication failed"), "auth", 1, True),
        (SnmpDecodeError("invalid data"), "decode", 1, False),
        (SnmpError("genErr"), "decode", 1, False),
        (NoSuchInstance("no such instance"), "no_such_object", 1, False),
    ],
)
async def test_device_trouble_is_a_result_and_keeps_the_last_state(
    agent: FakeAgent, exc: BaseException, error: str, answered: int, reconnects: bool
) -> None:
    poller = make(agent)
    await poller.poll()
    agent.fail[IF_OPER_STATUS_COL] = exc
    agent.set(f"{IF_OPER_STATUS_COL}.10150", 2)
    failed = await poller.poll()
    assert failed.error == error
    assert reachable(failed) == (answered, error)
    assert changes(failed) == [] and failed.counters is None
    assert IF_OPER_STATUS_COL in failed.detail  # what we were doing
    assert agent.sessions == 1
    del agent.fail[IF_OPER_STATUS_COL]
    recovered = await poller.poll()
    assert recovered.ok
    assert changes(recovered) == [("Gi0/50", 2)]
    assert agent.sessions == (2 if reconnects else 1)


async def test_bad_type_names_the_oid_and_emits_nothing_bogus(agent: FakeAgent) -> None:
    poller = make(agent)
    await poller.poll()
    oid = f"{IF_OPER_STATUS_COL}.10150"
    agent.set(oid, b"down")
    failed = await poller.poll()
    assert failed.error == "bad_type"
    assert oid in failed.detail
    assert reachable(failed) == (1, "bad_type")
    agent.set(oid, 1)
    assert changes(await poller.poll()) == []


async def test_missing_uptime_is_no_such_object(agent: FakeAgent) -> None:
    agent.delete(SYS_UPTIME)
    result = await make(agent).poll()
    assert result.error == "no_such_object"
    assert result.varbinds == 2  # ifTableLastChange and sysName did answer


async def test_endless_walk_is_decode(agent: FakeAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("probes.snmp.poller._MAX_ROWS", 100)
    agent.endless = IF_OPER_STATUS_COL
    result = await make(agent).poll()
    assert result.error == "decode"
    assert "did not end" in result.detail


async def test_names_are_reread_after_a_restart(agent: FakeAgent) -> None:
    poller = make(agent)
    await poller.poll()
    agent.set(SYS_UPTIME, 100)
    result = await poller.poll()
    assert [o.name for o in result.observations[:2]] == [REACHABLE, "device_restarted"]
    assert poller.name_reads == 2
    assert sum(r in NAME_COLUMNS for r in agent.requests) == 8


async def test_cancelled_poll_leaves_state_and_session_usable(agent: FakeAgent) -> None:
    poller = make(agent)
    await poller.poll()
    agent.set(f"{IF_OPER_STATUS_COL}.10151", 2)
    agent.hang = "*"
    task = asyncio.create_task(poller.poll())
    await agent.in_flight.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    agent.hang = None
    result = await poller.poll()
    assert changes(result) == [("Gi0/51", 2)]  # not lost, not doubled
    assert agent.sessions == 1


@pytest.mark.parametrize("where", [SYS_UPTIME, IF_OPER_STATUS_COL, IF_HC_IN_OCTETS, "refresh"])
async def test_cancellation_swallowed_by_the_library_still_ends_the_poll(
    agent: FakeAgent, where: str
) -> None:
    poller = make(agent, v3())
    await poller.poll()
    poller._session = None  # so that the next poll rediscovers ("refresh")
    agent.set(f"{IF_OPER_STATUS_COL}.10151", 2)
    agent.hang, agent.swallow_cancel = where, True
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await poller.poll()
    assert where in agent.requests[-2:]  # it hung there (a GET has 2 OIDs), then stopped
    agent.hang = None
    result = await poller.poll()
    assert changes(result) == [("Gi0/51", 2)]


async def test_v3_discovers_on_open_and_resyncs_after_idle(agent: FakeAgent) -> None:
    poller = make(agent, v3())
    assert (await poller.poll()).ok
    assert agent.refreshes == 1
    assert (await poller.poll()).ok
    assert agent.refreshes == 1
    poller._last_exchange -= 600
    assert (await poller.poll()).ok
    assert agent.refreshes == 2


async def test_v3_auth_failure_reopens_the_session(agent: FakeAgent) -> None:
    poller = make(agent, v3())
    agent.fail["refresh"] = SnmpAuthError("authentication failed")
    failed = await poller.poll()
    assert failed.error == "auth"
    assert reachable(failed) == (1, "auth")
    assert "SNMPv3 engine discovery" in failed.detail
    del agent.fail["refresh"]
    assert (await poller.poll()).ok
    assert agent.sessions == 2


async def test_secrets_stay_out_of_results_and_logs(
    agent: FakeAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    poller = make(agent)
    agent.fail[SYS_UPTIME] = TimeoutError()
    failed = await poller.poll()
    del agent.fail[SYS_UPTIME]
    ok = await poller.poll()
    text = repr(failed) + repr(ok) + repr(vars(poller))
    assert COMMUNITY not in text
    assert failed.detail.startswith("192.0.2.1:161: no answer in 0.5 s")
    assert caplog.records == []  # the scheduler logs; the probe does not


async def test_concurrent_polls_of_one_device_are_refused(agent: FakeAgent) -> None:
    poller = make(agent)
    agent.hang = "*"
    first = asyncio.create_task(poller.poll())
    await agent.in_flight.wait()
    with pytest.raises(RuntimeError, match="already running"):
        await poller.poll()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    agent.hang = None
    assert (await poller.poll()).ok


async def test_aclose_drops_the_session(agent: FakeAgent) -> None:
    poller = make(agent)
    await poller.poll()
    await poller.aclose()
    assert (await poller.poll()).ok
    assert agent.sessions == 2


@pytest.mark.parametrize(
    ("auth", "priv", "auth_cls", "priv_cls"),
    [
        ("SHA", "AES", Sha1Key, Aes128Key),
        ("MD5", "DES", Md5Key, DesKey),
        ("SHA512", "AES256", Sha512Key, Aes256Key),
    ],
)
async def test_v3_protocols_map_to_gufo_keys(
    auth: str, priv: str, auth_cls: type, priv_cls: type
) -> None:
    poller = SnmpPoller(
        device="r1", address="2001:db8::1", port=161,
        credentials=v3(auth_protocol=auth, priv_protocol=priv), timeout=1,
    )
    user = poller._user
    assert user is not None
    assert type(user.auth_key) is auth_cls and type(user.priv_key) is priv_cls
    assert user.get_auth_key() == b"authpass123"


def test_v3_without_priv_key_is_auth_no_priv() -> None:
    poller = SnmpPoller(
        device="r1", address="192.0.2.1", port=161, credentials=v3(priv_key=None), timeout=1
    )
    assert poller._user is not None and poller._user.priv_key is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": "router1.example.net"}, "not an IP address"),
        ({"credentials": v3(priv_protocol=None)}, "priv_protocol"),
        ({"credentials": v3(engine_id="80zz")}, "engine_id must be hex"),
        ({"timeout": 0}, "timeout must be > 0"),
    ],
)
def test_unusable_settings_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "device": "r1", "address": "192.0.2.1", "port": 161, "credentials": v2c(), "timeout": 1,
    }
    args.update(kwargs)
    with pytest.raises(ProbeConfigError, match=message) as err:
        SnmpPoller(**args)  # type: ignore[arg-type]
    assert err.value.device == "r1"


def test_engine_id_is_parsed_from_hex() -> None:
    poller = SnmpPoller(
        device="r1", address="192.0.2.1", port=161,
        credentials=v3(engine_id="0x80001f8804abcd"), timeout=1,
    )
    assert poller._engine_id == bytes.fromhex("80001f8804abcd")
