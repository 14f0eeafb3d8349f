"""TrapReceiver on loopback, with net-snmp's snmptrap / snmpinform as the independent sender.

The receiver runs on the test's event loop; the senders are subprocesses
(``asyncio.create_subprocess_exec``). Every port is picked by the kernel (listen on port
0). v1/v2c tests run with both decoders (netreflex's own and pysnmp's), v3 always goes
through pysnmp.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pyasn1.codec.ber import encoder as ber_encoder
from pysnmp.proto.api import v2c as api_v2c

from probes.errors import ProbeConfigError
from probes.snmp.trap_config import TrapReceiverConfig
from probes.snmp.traps import BGP_PEER_STATE, TrapReceiver
from probes.types import DEVICE_RESTARTED, IF_OPER_STATUS, Observation

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("snmptrap") is None, reason="net-snmp tools not installed"),
]

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
LINK_UP = "1.3.6.1.6.3.1.1.5.4"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
WARM_START = "1.3.6.1.6.3.1.1.5.2"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"

# Two v3 users with different algorithms; each device (engine ID) is listed for traps.
USER1 = ("noc", "SHA", "authpass123", "AES", "privpass123")
USER2 = ("ops", "SHA-512", "auth2pass456", "AES-256", "priv2pass456")
ENGINE_A = "80001f8803aabbccddee01"  # edge1's snmpEngineID
ENGINE_B = "80001f8803aabbccddee02"  # another device, same address in this test

INVENTORY = {"127.0.0.1": "edge1", "10.1.2.3": "core1", "::1": "edge6"}
INTERFACES = {("edge1", 2): "ge-0/0/2", ("core1", 5): "xe-1/0/5", ("edge6", 2): "ge-0/0/2"}


class Inventory:
    def device_for_address(self, address: str) -> str | None:
        return INVENTORY.get(address)

    def interface_name(self, device: str, if_index: int) -> str | None:
        return INTERFACES.get((device, if_index))


@dataclass
class Bus:
    """A publish() that records what arrives, when, and can be held shut."""

    observations: list[tuple[float, Observation]] = field(default_factory=list)
    batches: int = 0
    gate: asyncio.Event | None = None
    fail: bool = False

    async def publish(self, batch: Sequence[Observation]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker went away")
        self.batches += 1
        now = time.monotonic()
        self.observations.extend((now, o) for o in batch)

    def named(self, name: str) -> list[Observation]:
        return [o for _, o in self.observations if o.name == name]


@dataclass
class Running:
    receiver: TrapReceiver
    bus: Bus
    port: int
    host: str = "127.0.0.1"

    @property
    def target(self) -> str:
        return f"udp6:[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


async def until(predicate: Callable[[], bool], what: str, running: Running, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; stats={running.receiver.stats}")
        await asyncio.sleep(0.01)


def config(**overrides: Any) -> TrapReceiverConfig:
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "communities": ["public", "second-community"],
        "v3_users": [
            {"user": USER1[0], "auth_protocol": "SHA", "auth_key": USER1[2],
             "priv_protocol": "AES", "priv_key": USER1[4], "engine_ids": [ENGINE_A]},
            {"user": USER2[0], "auth_protocol": "SHA512", "auth_key": USER2[2],
             "priv_protocol": "AES256", "priv_key": USER2[4], "engine_ids": [ENGINE_B]},
        ],
        "engine_id": "0x80004fb80574657374",
    }
    base.update(overrides)
    return TrapReceiverConfig.model_validate(base)


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Any]]:
    """``await make(bus=None, **config overrides)`` starts a receiver; all stop at the end
    (and must stop promptly)."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def make(bus: Bus | None = None, **overrides: Any) -> Running:
        bus = bus or Bus()
        receiver = TrapReceiver(config=config(**overrides), resolver=Inventory())
        stopping = asyncio.Event()
        task = asyncio.create_task(receiver.run(bus.publish, stopping), name="trap receiver")
        started.append((stopping, task))
        ready = asyncio.create_task(receiver.ready.wait())
        await asyncio.wait({ready, task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            started.pop()
            task.result()  # raises what run() raised
        assert receiver.local_address is not None, "receiver did not bind within 5 s"
        host, port = receiver.local_address
        return Running(receiver, bus, port, host)

    yield make
    for stopping, _ in started:
        stopping.set()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in started)), timeout=10)


async def send(*argv: str, env: dict[str, str] | None = None) -> float:
    """Run a net-snmp command; fail with its output unless it exits 0. Returns when done."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MIBS": "", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    if proc.returncode != 0:
        pytest.fail(f"{argv[0]} exited {proc.returncode}: {err.decode()} {out.decode()}")
    return time.monotonic()


def link_down(if_index: int, *, admin: int = 1, oper: int = 2) -> list[str]:
    return [LINK_DOWN, f"{IF_INDEX}.{if_index}", "i", str(if_index),
            f"{IF_ADMIN}.{if_index}", "i", str(admin), f"{IF_OPER}.{if_index}", "i", str(oper)]


def v3(user: tuple[str, str, str, str, str], engine_id: str | None = None) -> list[str]:
    name, auth, auth_key, priv, priv_key = user
    args = ["-v3", "-u", name, "-l", "authPriv", "-a", auth, "-A", auth_key, "-x", priv,
            "-X", priv_key]
    return args + (["-e", "0x" + engine_id] if engine_id else [])


# --- v1 / v2c (both decoders) ------------------------------------------------------------

DECODERS = pytest.mark.parametrize("decoder", ["native", "pysnmp"])


@DECODERS
async def test_v2c_link_down_names_the_interface_and_arrives_within_a_second(
    receivers: Callable[..., Any], decoder: str
) -> None:
    r: Running = await receivers(decoder=decoder)
    sent = await send("snmptrap", "-v2c", "-c", "public", r.target, "", *link_down(2))
    await until(lambda: bool(r.bus.named(IF_OPER_STATUS)), "linkDown", r)
    ((arrived, obs),) = r.bus.observations
    assert (obs.device, obs.source, obs.instance, obs.value) == ("edge1", "trap", "ge-0/0/2", 2)
    assert dict(obs.labels) == {"admin": "up", "if_index": "2"}
    assert arrived - sent < 1.0
    assert r.receiver.stats["notifications"] == 1 and r.receiver.stats["published"] == 1


@DECODERS
async def test_v1_link_down_uses_the_agent_addr_and_falls_back_to_ifdescr(
    receivers: Callable[..., Any], decoder: str
) -> None:
    r: Running = await receivers(decoder=decoder)
    # agent-addr 10.1.2.3 is core1 although the datagram comes from 127.0.0.1
    await send("snmptrap", "-v1", "-c", "second-community", r.target, "1.3.6.1.4.1.9.1.1",
               "10.1.2.3", "2", "0", "", f"{IF_INDEX}.5", "i", "5", f"{IF_INDEX}.77", "i", "77")
    await send("snmptrap", "-v1", "-c", "public", r.target, "1.3.6.1.4.1.9.1.1", "10.1.2.3",
               "3", "0", "", f"{IF_INDEX}.6", "i", "6", "1.3.6.1.2.1.2.2.1.2.6", "s", "Gi0/6")
    await until(lambda: len(r.bus.observations) == 2, "two v1 traps", r)
    down, up = (o for _, o in r.bus.observations)
    assert (down.device, down.instance, down.value) == ("core1", "xe-1/0/5", 2)
    assert (up.device, up.instance, up.value) == ("core1", "Gi0/6", 1)


@DECODERS
async def test_v2c_inform_is_acknowledged(receivers: Callable[..., Any], decoder: str) -> None:
    r: Running = await receivers(decoder=decoder)
    # snmpinform exits non-zero unless the receiver answered
    await send("snmpinform", "-v2c", "-c", "public", "-r", "0", "-t", "2", r.target, "",
               WARM_START)
    await until(lambda: bool(r.bus.named(DEVICE_RESTARTED)), "warmStart INFORM", r)
    assert r.bus.named(DEVICE_RESTARTED)[0].labels["kind"] == "warm_start"
    assert r.receiver.stats["informs"] == 1


@DECODERS
async def test_wrong_community_is_counted_and_ignored(
    receivers: Callable[..., Any], decoder: str
) -> None:
    r: Running = await receivers(decoder=decoder)
    await send("snmptrap", "-v2c", "-c", "not-ours", r.target, "", *link_down(2))
    await until(lambda: r.receiver.stats["bad_community"] == 1, "bad_community", r)
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", COLD_START)
    await until(lambda: bool(r.bus.observations), "the next, good trap", r)
    assert [o.name for _, o in r.bus.observations] == [DEVICE_RESTARTED]


@DECODERS
async def test_unknown_sender_is_counted_not_published(
    receivers: Callable[..., Any], decoder: str, caplog: pytest.LogCaptureFixture
) -> None:
    r: Running = await receivers(decoder=decoder)
    for _ in range(3):
        await send("snmptrap", "--clientaddr=127.0.0.2", "-v2c", "-c", "public", r.target, "",
                   *link_down(2))
    await until(lambda: r.receiver.stats["unknown_sender"] == 3, "unknown_sender", r)
    assert r.bus.observations == []
    warnings = [rec.getMessage() for rec in caplog.records if "127.0.0.2" in rec.getMessage()]
    assert len(warnings) == 1  # rate-limited


@DECODERS
async def test_garbage_datagrams_do_not_break_the_next_trap(
    receivers: Callable[..., Any], decoder: str
) -> None:
    r: Running = await receivers(decoder=decoder)
    garbage = [
        b"",
        b"\x00",
        os.urandom(300),
        b"\x30\x82\xff\xff\x02\x01\x01",  # length past the end
        b"\x30\x0b\x02\x01\x01\x04\x06public",  # no PDU
        b"\x30\x10\x02\x01\x00\x04\x06public\xa7\x03\x02\x01\x00",  # v1 with a v2 PDU
        bytes.fromhex("300e020103300902010002010004010102"),  # v3, header cut short
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in garbage:
            s.sendto(datagram, ("127.0.0.1", r.port))
    await until(lambda: r.receiver.stats["received"] >= len(garbage), "garbage read", r)
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", *link_down(2))
    await until(lambda: bool(r.bus.named(IF_OPER_STATUS)), "the trap after garbage", r)
    assert r.receiver.stats["malformed"] >= len(garbage) - 1  # b"" may not count as read
    assert r.receiver.stats["notifications"] == 1


# --- v3 (pysnmp) -------------------------------------------------------------------------


async def test_v3_auth_priv_traps_from_two_users(receivers: Callable[..., Any]) -> None:
    r: Running = await receivers()
    await send("snmptrap", *v3(USER1, ENGINE_A), r.target, "", *link_down(2))
    await send("snmptrap", *v3(USER2, ENGINE_B), r.target, "", COLD_START)
    await until(lambda: len(r.bus.observations) == 2, "two v3 traps", r)
    names = {o.name: o for _, o in r.bus.observations}
    assert names[IF_OPER_STATUS].instance == "ge-0/0/2"
    assert names[DEVICE_RESTARTED].labels["kind"] == "cold_start"


async def test_v3_inform_uses_our_engine_id(receivers: Callable[..., Any]) -> None:
    r: Running = await receivers()
    # no -e: snmpinform discovers the receiver's engine ID first, then sends
    await send("snmpinform", *v3(USER2), "-r", "1", "-t", "2", r.target, "", WARM_START)
    await send("snmpinform", *v3(USER1), "-r", "1", "-t", "2", r.target, "", *link_down(2, oper=7))
    await until(lambda: len(r.bus.observations) == 2, "two v3 INFORMs", r)
    assert r.bus.named(IF_OPER_STATUS)[0].value == 7
    assert r.receiver.stats["informs"] == 2
    assert r.receiver.stats["auth_failed"] == 0  # discovery is not a failure


async def test_v3_wrong_key_or_unlisted_engine_is_auth_failed(
    receivers: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    r: Running = await receivers()
    wrong_key = (USER1[0], USER1[1], "not-the-key", USER1[3], USER1[4])
    await send("snmptrap", *v3(wrong_key, ENGINE_A), r.target, "", COLD_START)
    await send("snmptrap", *v3(USER1, "80001f88039999999999"), r.target, "", COLD_START)
    await until(lambda: r.receiver.stats["auth_failed"] == 2, "auth_failed", r)
    await send("snmptrap", *v3(USER1, ENGINE_A), r.target, "", COLD_START)
    await until(lambda: bool(r.bus.observations), "the good v3 trap", r)
    assert len(r.bus.observations) == 1
    assert any("80001f88039999999999" in rec.getMessage() for rec in caplog.records)


# --- load, shutdown, IPv6 ----------------------------------------------------------------


def v2c_trap(if_index: int) -> bytes:
    """A linkDown datagram (community public), pre-encoded with pysnmp for load tests."""
    pdu = api_v2c.SNMPv2TrapPDU()
    api_v2c.apiTrapPDU.set_defaults(pdu)
    api_v2c.apiTrapPDU.set_varbinds(pdu, [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), api_v2c.TimeTicks(4242)),
        ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), api_v2c.ObjectIdentifier(LINK_DOWN)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, if_index), api_v2c.Integer(if_index)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, if_index), api_v2c.Integer(2)),
    ])
    msg = api_v2c.Message()
    api_v2c.apiMessage.set_defaults(msg)
    api_v2c.apiMessage.set_community(msg, "public")
    api_v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(ber_encoder.encode(msg))


async def test_a_burst_beyond_the_queue_drops_and_counts_without_blocking(
    receivers: Callable[..., Any],
) -> None:
    gate = asyncio.Event()
    r: Running = await receivers(Bus(gate=gate), max_queue=50, batch_size=10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick = asyncio.create_task(ticker())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(200):
            s.sendto(v2c_trap(1 + i % 100), ("127.0.0.1", r.port))
    stats = r.receiver.stats
    await until(lambda: stats["received"] + stats["kernel_drops"] >= 200, "the burst", r)
    # 50 queued, up to one batch (10) held by the blocked publish(), the rest dropped
    assert stats["received"] - 60 <= stats["dropped_overload"] <= stats["received"] - 50
    assert ticks > 0  # the loop kept running while publish() was blocked
    gate.set()
    kept = stats["received"] - stats["dropped_overload"]
    await until(lambda: stats["published"] == kept, "the queue drained", r)
    assert r.bus.batches >= kept // 10  # batch_size 10
    tick.cancel()


async def test_stopping_publishes_what_is_queued_then_returns() -> None:
    gate = asyncio.Event()
    bus = Bus(gate=gate)
    receiver = TrapReceiver(config=config(), resolver=Inventory())
    stopping = asyncio.Event()
    task = asyncio.create_task(receiver.run(bus.publish, stopping))
    await asyncio.wait_for(receiver.ready.wait(), 5)
    assert receiver.local_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(20):
            s.sendto(v2c_trap(1 + i), receiver.local_address)
    running = Running(receiver, bus, receiver.local_address[1])
    await until(lambda: receiver.stats["notifications"] == 20, "20 queued", running)
    stopping.set()
    gate.set()
    await asyncio.wait_for(task, timeout=5)
    assert receiver.stats["published"] == 20 and receiver.stats["dropped_shutdown"] == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the port is free again
        s.bind(receiver.local_address)


async def test_publish_failure_is_counted_and_reception_goes_on(
    receivers: Callable[..., Any],
) -> None:
    bus = Bus(fail=True)
    r: Running = await receivers(bus)
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", COLD_START)
    await until(lambda: r.receiver.stats["publish_failed"] == 1, "publish_failed", r)
    bus.fail = False
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", COLD_START)
    await until(lambda: len(r.bus.observations) == 1, "the next trap", r)
    assert r.receiver.stats["publish_failed"] == 1  # the failed one counted, not retried
    assert len(r.bus.named(DEVICE_RESTARTED)) == 1  # the next one got through


async def test_a_resolver_that_raises_costs_one_notification() -> None:
    class Flaky(Inventory):
        calls = 0

        def device_for_address(self, address: str) -> str | None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise KeyError("inventory reload in progress")
            return super().device_for_address(address)

    bus = Bus()
    receiver = TrapReceiver(config=config(), resolver=Flaky())
    stopping = asyncio.Event()
    task = asyncio.create_task(receiver.run(bus.publish, stopping))
    await asyncio.wait_for(receiver.ready.wait(), 5)
    assert receiver.local_address is not None
    running = Running(receiver, bus, receiver.local_address[1])
    for _ in range(2):
        await send("snmptrap", "-v2c", "-c", "public", running.target, "", COLD_START)
    await until(lambda: len(bus.observations) == 1, "the second trap", running)
    assert receiver.stats["errors"] == 1
    stopping.set()
    await asyncio.wait_for(task, 5)


async def test_ipv6_listener(receivers: Callable[..., Any]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    r: Running = await receivers(listen="[::1]:0")
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", *link_down(2))
    await until(lambda: bool(r.bus.observations), "a trap over IPv6", r)
    assert r.bus.observations[0][1].device == "edge6"


async def test_a_port_in_use_is_a_config_error(receivers: Callable[..., Any]) -> None:
    r: Running = await receivers()
    with pytest.raises(ProbeConfigError, match=r"cannot listen for SNMP traps on 127\.0\.0\.1"):
        await receivers(listen=f"127.0.0.1:{r.port}")


async def test_bgp_backward_transition_over_the_wire(receivers: Callable[..., Any]) -> None:
    r: Running = await receivers()
    await send("snmptrap", "-v2c", "-c", "public", r.target, "", "1.3.6.1.2.1.15.0.2",
               "1.3.6.1.2.1.15.3.1.7.192.0.2.9", "a", "192.0.2.9",
               "1.3.6.1.2.1.15.3.1.14.192.0.2.9", "x", "0602",
               "1.3.6.1.2.1.15.3.1.2.192.0.2.9", "i", "2")
    await until(lambda: bool(r.bus.named(BGP_PEER_STATE)), "bgp_peer_state", r)
    obs = r.bus.named(BGP_PEER_STATE)[0]
    assert (obs.device, obs.instance, obs.value) == ("edge1", "192.0.2.9", 2)
