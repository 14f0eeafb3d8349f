"""PingPoller and ping_many against loopback (127.0.0.0/8 only: no packet leaves the host)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from probes.errors import ProbeConfigError
from probes.icmp import (
    JITTER_MS,
    LOSS_RATIO,
    RTT_MS,
    PingEngine,
    PingPoller,
    PingProbeConfig,
    check_permission,
    ping_many,
)
from probes.types import REACHABLE

pytestmark = pytest.mark.integration

FAST = PingProbeConfig(count=3, interval=0.0, timeout=1.0)


def _icmp_allowed() -> bool:
    try:
        check_permission("auto")
    except ProbeConfigError:
        return False
    return True


needs_icmp = pytest.mark.skipif(not _icmp_allowed(), reason="no ICMP socket permitted here")


@needs_icmp
async def test_loopback_is_reachable():
    poller = PingPoller(device="lo", address="127.0.0.1", config=FAST)
    try:
        result = await poller.poll()
    finally:
        await poller.aclose()
    assert result.ok, result.detail
    obs = {o.name: o for o in result.observations}
    assert obs[REACHABLE].value == 1
    assert obs[RTT_MS].value > 0
    assert float(obs[RTT_MS].labels["min"]) <= obs[RTT_MS].value <= float(obs[RTT_MS].labels["max"])
    assert obs[JITTER_MS].value >= 0
    assert obs[LOSS_RATIO].value == 0.0


@needs_icmp
async def test_poll_cancelled_mid_echo_leaves_engine_usable():
    engine = PingEngine(timeout=1.0)
    poller = PingPoller(device="lo", address="127.0.0.2", config=FAST, engine=engine)
    try:
        task = asyncio.ensure_future(poller.poll())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await poller.poll()
        assert result.ok
    finally:
        await engine.aclose()


@needs_icmp
async def test_aclose_releases_sockets():
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    for _ in range(20):
        poller = PingPoller(device="lo", address="127.0.0.1", config=FAST)
        await poller.poll()
        await poller.aclose()
        del poller
    import gc

    gc.collect()
    assert fds() <= before + 2


@needs_icmp
async def test_ping_many_thousand_targets_bounded():
    addresses = [f"127.0.0.{i % 8 + 1}" for i in range(1000)]
    config = PingProbeConfig(count=1, timeout=1.0)
    t0 = time.perf_counter()
    stats = await ping_many(addresses, config=config, concurrency=200)
    elapsed = time.perf_counter() - t0
    assert set(stats) == {f"127.0.0.{i}" for i in range(1, 9)}
    assert sum(s.sent for s in stats.values()) == 1000
    assert all(s.loss_ratio == 0.0 and s.rtt_avg_ms > 0 for s in stats.values())
    print(f"ping_many: {1000 / elapsed:.0f} targets/s (count=1, concurrency=200)")


@needs_icmp
async def test_ping_many_thousand_copies_of_one_address():
    stats = await ping_many(["127.0.0.1"] * 1000, config=FAST, concurrency=100)
    assert stats["127.0.0.1"].sent == 3000
    assert stats["127.0.0.1"].received == 3000


async def test_bad_address_is_config_error():
    with pytest.raises(ProbeConfigError, match="not an IP address"):
        PingPoller(device="cpe1", address="cpe1.example", config=FAST)
    with pytest.raises(ProbeConfigError):
        await ping_many(["127.0.0.1", "nope"], config=FAST, concurrency=10)


def _deny_icmp(monkeypatch, deny_kinds):
    # Simulated: the real checks need a host where both kinds are forbidden, which a
    # root test run cannot be. We patch socket creation, the thing the check relies on.
    real = socket.socket

    def fake(family=-1, type=-1, proto=-1, fileno=None):
        if proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
            if type in deny_kinds:
                raise PermissionError(13, "Permission denied")
            return real(socket.AF_INET, socket.SOCK_DGRAM)  # allowed: any socket will do
        return real(family, type, proto, fileno)

    monkeypatch.setattr(socket, "socket", fake)


def test_neither_dgram_nor_raw_names_both_fixes(monkeypatch):
    _deny_icmp(monkeypatch, {socket.SOCK_DGRAM, socket.SOCK_RAW})
    with pytest.raises(ProbeConfigError) as err:
        PingPoller(device="cpe1", address="127.0.0.1", config=FAST)
    msg = str(err.value)
    assert 'net.ipv4.ping_group_range="0 2147483647"' in msg
    assert "CAP_NET_RAW" in msg and "systemd unit" in msg
    assert err.value.device == "cpe1"


def test_privileged_no_without_ping_group_range(monkeypatch):
    _deny_icmp(monkeypatch, {socket.SOCK_DGRAM})
    with pytest.raises(ProbeConfigError, match="ping_group_range"):
        PingPoller(device="cpe1", address="127.0.0.1",
                   config=PingProbeConfig(privileged="no"))
    # auto falls back to raw
    assert check_permission("auto") == "raw"


async def test_ping_many_checks_permission_first(monkeypatch):
    _deny_icmp(monkeypatch, {socket.SOCK_DGRAM, socket.SOCK_RAW})
    with pytest.raises(ProbeConfigError, match="CAP_NET_RAW"):
        await ping_many(["127.0.0.1"], config=FAST, concurrency=1)
