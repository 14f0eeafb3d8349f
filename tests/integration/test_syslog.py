"""SyslogReceiver on loopback, fed by util-linux ``logger`` (the independent sender)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from probes.errors import ProbeConfigError
from probes.syslog import STAT_KEYS, Rule, SyslogConfig, SyslogReceiver
from probes.types import IF_OPER_STATUS, Observation

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("logger") is None,
                       reason="util-linux logger is missing (apt-get install bsdutils)"),
]

LINK_DOWN = "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down"
HOSTNAME = socket.gethostname()


class Resolver:
    def __init__(self, devices: dict[str, str] | None = None) -> None:
        self.devices = devices if devices is not None else {"127.0.0.1": "edge1"}

    def device_for_address(self, address: str) -> str | None:
        return self.devices.get(address)

    def interface_name(self, device: str, if_index: int) -> str | None:
        return None


class Bus:
    """What the receiver published, and when."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.observations: list[Observation] = []
        self.batches = 0
        self.at: list[float] = []

    async def publish(self, batch: Sequence[Observation]) -> None:
        self.batches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.observations.extend(batch)
        self.at.extend(time.monotonic() for _ in batch)


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(receiver: SyslogReceiver, bus: Bus) -> AsyncIterator[SyslogReceiver]:
    stopping = asyncio.Event()
    task = asyncio.create_task(receiver.run(bus.publish, stopping), name="syslog-under-test")
    try:
        async with asyncio.timeout(5):
            await receiver.ready.wait()
        yield receiver
    finally:
        stopping.set()
        async with asyncio.timeout(5):
            await task


def receiver_for(resolver: Resolver | None = None, **config: Any) -> SyslogReceiver:
    settings: dict[str, Any] = {"udp": "127.0.0.1:0", "tcp": "127.0.0.1:0", **config}
    return SyslogReceiver(config=SyslogConfig(**settings), resolver=resolver or Resolver())


async def logger(port: int, *args: str, message: str = LINK_DOWN) -> None:
    proc = await asyncio.create_subprocess_exec(
        "logger", "--server", "127.0.0.1", "--port", str(port), "-t", "myprog",
        "-p", "local7.err", *args, message,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()


def consistent(stats: dict[str, int]) -> bool:
    return stats["received"] == sum(stats[k] for k in (
        "matched", "unmatched", "malformed", "unknown_sender", "dropped_overload"))


SENDERS = [
    pytest.param(("--udp", "--rfc3164"), id="udp-rfc3164"),
    pytest.param(("--udp", "--rfc5424"), id="udp-rfc5424"),
    pytest.param(("--tcp", "--rfc3164"), id="tcp-rfc3164"),
    pytest.param(("--tcp", "--rfc5424"), id="tcp-rfc5424"),
    pytest.param(("--tcp", "--rfc5424", "--octet-count"), id="tcp-rfc5424-octet-count"),
]


@pytest.mark.parametrize("args", SENDERS)
async def test_cisco_link_down_becomes_one_observation(args: tuple[str, ...]) -> None:
    bus = Bus()
    async with serving(receiver_for(), bus) as rx:
        address = rx.udp_address if "--udp" in args else rx.tcp_address
        assert address is not None and address[1] > 0
        before = time.time()
        await logger(address[1], *args)
        sent = time.monotonic()
        await wait_until(lambda: rx.stats["matched"] == 1)
        assert bus.observations == [Observation(
            "edge1", "syslog", IF_OPER_STATUS, "Gi0/1", 2, bus.observations[0].ts,
            {"admin": "up", "rule": "cisco-ios-link-down"})]
        assert before <= bus.observations[0].ts <= time.time()
        assert bus.at[0] - sent < 1.0  # reaches the bus within a second
        await asyncio.sleep(0.05)
        assert {k: v for k, v in rx.stats.items() if v} == {
            "received": 1, "matched": 1, "observations": 1,
            **({"tcp_accepted": 1} if "--tcp" in args else {})}
        assert set(rx.stats) == set(STAT_KEYS)


async def test_unknown_sender_is_counted_and_dropped() -> None:
    bus = Bus()
    async with serving(receiver_for(Resolver({})), bus) as rx:
        assert rx.udp_address is not None
        await logger(rx.udp_address[1], "--udp", "--rfc3164")
        await wait_until(lambda: rx.stats["unknown_sender"] == 1)
        assert bus.observations == [] and rx.stats["matched"] == 0


async def test_the_hostname_identifies_the_device_behind_a_relay() -> None:
    bus = Bus()
    async with serving(receiver_for(Resolver({HOSTNAME: "edge9"})), bus) as rx:
        assert rx.udp_address is not None
        await logger(rx.udp_address[1], "--udp", "--rfc5424")
        await wait_until(lambda: rx.stats["matched"] == 1)
        assert [o.device for o in bus.observations] == ["edge9"]
    untrusting = receiver_for(Resolver({HOSTNAME: "edge9"}), trust_hostname=False)
    async with serving(untrusting, bus) as rx:
        assert rx.udp_address is not None
        await logger(rx.udp_address[1], "--udp", "--rfc5424")
        await wait_until(lambda: rx.stats["unknown_sender"] == 1)


async def test_garbage_is_counted_and_the_next_message_still_works() -> None:
    bus = Bus()
    async with serving(receiver_for(), bus) as rx:
        assert rx.udp_address is not None and rx.tcp_address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00\xff\xfe garbage", rx.udp_address)
            s.sendto(b"", rx.udp_address)
        await wait_until(lambda: rx.stats["malformed"] == 2)
        await logger(rx.udp_address[1], "--udp")
        await wait_until(lambda: rx.stats["matched"] == 1)

        _, writer = await asyncio.open_connection(*rx.tcp_address)
        writer.write(b"this is not syslog\n\x00\xff\n<13>Jan  1 00:00:00 h t: "
                     + LINK_DOWN.encode() + b"\n")
        await writer.drain()
        await wait_until(lambda: rx.stats["matched"] == 2)
        assert rx.stats["malformed"] == 4
        writer.close()
        await logger(rx.tcp_address[1], "--tcp")
        await wait_until(lambda: rx.stats["matched"] == 3)
        assert [o.instance for o in bus.observations] == ["Gi0/1"] * 3
        assert consistent(rx.stats)


async def test_rules_can_be_swapped_while_serving() -> None:
    bus = Bus()
    async with serving(receiver_for(), bus) as rx:
        assert rx.udp_address is not None
        await logger(rx.udp_address[1], "--udp", message="PORT 7 DEAD")
        await wait_until(lambda: rx.stats["unmatched"] == 1)
        rx.set_rules([Rule(name="site", match=r"PORT (?P<p>\d+) DEAD", kind="link_down",
                           interface="port{p}")])
        await logger(rx.udp_address[1], "--udp", message="PORT 7 DEAD")
        await wait_until(lambda: rx.stats["matched"] == 1)
        assert [(o.instance, o.labels["rule"]) for o in bus.observations] == [("port7", "site")]


async def test_udp_flood_is_dropped_and_counted_without_blocking_the_loop() -> None:
    bus = Bus(delay=0.02)  # a slow bus: 20 ms per batch
    rx = receiver_for(queue_size=200, batch_size=50)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    def flood(address: tuple[str, int], count: int) -> None:
        line = ("<187>45: *Mar  1 00:00:01.123: " + LINK_DOWN).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                s.sendto(line, address)

    async with serving(rx, bus):
        assert rx.udp_address is not None
        tick = asyncio.create_task(ticker())
        await asyncio.to_thread(flood, rx.udp_address, 20_000)
        await wait_until(lambda: rx.queued == 0, timeout=20)
        tick.cancel()
        stats = dict(rx.stats)
    assert stats["dropped_overload"] > 0
    assert stats["matched"] == len(bus.observations) > 0
    assert consistent(stats) and stats["received"] <= 20_000
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.3f}s"


async def test_tcp_sender_is_slowed_down_not_dropped() -> None:
    bus = Bus(delay=0.01)
    rx = receiver_for(queue_size=100, batch_size=20)
    count = 3000
    line = b"<187>" + LINK_DOWN.encode() + b"\n"
    async with serving(rx, bus):
        assert rx.tcp_address is not None
        _, writer = await asyncio.open_connection(*rx.tcp_address)
        writer.write(line * count)
        await writer.drain()
        await wait_until(lambda: rx.stats["matched"] == count, timeout=30)
        writer.close()
    assert rx.stats["dropped_overload"] == 0 and rx.stats["received"] == count


async def test_hung_tcp_client_does_not_stall_others_and_is_closed_when_idle() -> None:
    bus = Bus()
    rx = receiver_for(tcp_idle_timeout=0.3)
    async with serving(rx, bus):
        assert rx.tcp_address is not None
        reader, writer = await asyncio.open_connection(*rx.tcp_address)
        writer.write(b"120 <13>a frame that never ends")  # and then nothing
        await writer.drain()
        await logger(rx.tcp_address[1], "--tcp")
        await wait_until(lambda: rx.stats["matched"] == 1, timeout=1)
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # we were disconnected
        assert rx.stats["tcp_idle_closed"] == 1
        writer.close()


async def test_connections_beyond_the_limit_are_refused() -> None:
    bus = Bus()
    rx = receiver_for(max_tcp_connections=2)
    async with serving(rx, bus):
        assert rx.tcp_address is not None
        first = await asyncio.open_connection(*rx.tcp_address)
        second = await asyncio.open_connection(*rx.tcp_address)
        await wait_until(lambda: rx.stats["tcp_accepted"] == 2)
        third_reader, third_writer = await asyncio.open_connection(*rx.tcp_address)
        async with asyncio.timeout(3):
            with contextlib.suppress(ConnectionResetError):
                assert await third_reader.read() == b""
        assert rx.stats["tcp_rejected"] == 1
        for _, writer in (first, second):
            writer.write(b"<13>" + LINK_DOWN.encode() + b"\n")
            await writer.drain()
        await wait_until(lambda: rx.stats["matched"] == 2)
        for _, writer in (first, second, (third_reader, third_writer)):
            writer.close()


async def test_a_taken_port_is_a_config_error_that_says_so() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        rx = receiver_for(udp=f"127.0.0.1:{port}", tcp=None)
        with pytest.raises(ProbeConfigError, match=f"udp 127.0.0.1:{port}: Address already "
                           "in use; another program"):
            await rx.run(Bus().publish, asyncio.Event())
        assert not rx.ready.is_set()


async def test_stopping_finishes_what_was_queued() -> None:
    bus = Bus(delay=0.05)
    rx = receiver_for(batch_size=10)
    async with serving(rx, bus):
        assert rx.udp_address is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"<187>" + LINK_DOWN.encode(), rx.udp_address)
        await wait_until(lambda: rx.stats["received"] == 50)
    assert len(bus.observations) == 50 and rx.stats["dropped_overload"] == 0


def test_logger_is_util_linux() -> None:
    """The tests above rely on util-linux logger's --server, --tcp and --rfc5424."""
    version = subprocess.run(["logger", "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert "util-linux" in version
