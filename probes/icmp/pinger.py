"""ICMP echo over gufo-ping: one poller per device, and ``ping_many`` for CPE batches.

The I/O is here; what the echoes mean is in :mod:`probes.icmp.parse`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from gufo.ping import Ping, SelectionPolicy

from probes.errors import ProbeConfigError
from probes.icmp import parse
from probes.icmp.config import PingProbeConfig
from probes.icmp.parse import PingStats
from probes.types import PollResult

if TYPE_CHECKING:
    from probes.types import Poller

Privileged = Literal["auto", "yes", "no"]

# DGRAM first: it needs no privilege, and a raw socket receives a copy of every ICMP
# packet the host gets, so many raw sockets cost O(sockets x packets).
_POLICIES: Final[dict[str, SelectionPolicy]] = {
    "auto": SelectionPolicy.DGRAM_RAW,
    "no": SelectionPolicy.DGRAM,
    "yes": SelectionPolicy.RAW,
}
# Thousands of replies arrive in bursts on one socket; the default buffer drops them.
_RECV_BUFFER: Final = 4 * 1024 * 1024
_FIX_SYSCTL: Final = 'sysctl -w net.ipv4.ping_group_range="0 2147483647"'
_FIX_CAP: Final = "grant CAP_NET_RAW (the netreflex systemd unit does: AmbientCapabilities=)"


def _family(address: str, device: str) -> socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ProbeConfigError(
            f"{device}: ping address {address!r} is not an IP address "
            "(put the IP in the inventory; the ping probe does not resolve names)",
            device=device,
            operation="icmp ping",
        ) from None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _can_open(family: socket.AddressFamily, kind: socket.SocketKind) -> bool:
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        socket.socket(family, kind, proto).close()
    except PermissionError:
        return False
    return True


def _permission_error(privileged: Privileged, device: str) -> ProbeConfigError:
    gid = os.getgid()
    if privileged == "no":
        what = f"unprivileged ICMP sockets are off for gid {gid} (privileged: no)"
        fix = f"{_FIX_SYSCTL}, or set privileged: auto and {_FIX_CAP}"
    elif privileged == "yes":
        what = "raw ICMP sockets need CAP_NET_RAW (privileged: yes)"
        fix = f"{_FIX_CAP}, or set privileged: auto and {_FIX_SYSCTL}"
    else:
        what = (
            f"neither unprivileged ICMP (net.ipv4.ping_group_range excludes gid {gid}) "
            "nor raw sockets (no CAP_NET_RAW) are permitted"
        )
        fix = f"either {_FIX_SYSCTL} (persist it in /etc/sysctl.d/) or {_FIX_CAP}"
    return ProbeConfigError(
        f"{device or 'ping'}: cannot open an ICMP socket: {what}; fix: {fix}",
        device=device,
        operation="icmp ping",
    )


def check_permission(
    privileged: Privileged, family: socket.AddressFamily = socket.AF_INET, *, device: str = ""
) -> Literal["dgram", "raw"]:
    """Which socket kind this process may open, or ProbeConfigError naming both fixes."""
    if privileged != "yes" and _can_open(family, socket.SOCK_DGRAM):
        return "dgram"
    if privileged != "no" and _can_open(family, socket.SOCK_RAW):
        return "raw"
    raise _permission_error(privileged, device)


class PingEngine:
    """One gufo-ping engine (one socket per address family), shared by many targets.

    Lives in one event loop (the one of its first ``ping``). gufo-ping resolves an
    unanswered echo between ``timeout`` and ``2 * timeout``. gufo breaks if an echo is
    cancelled while in flight, so each echo runs in its own task that is shielded from
    the caller's cancellation and always finishes by itself.
    """

    def __init__(
        self, *, privileged: Privileged = "auto", timeout: float = 1.0, device: str = ""
    ) -> None:
        self._privileged = privileged
        self._timeout = timeout
        self._device = device
        self._ping: Ping | None = None
        self._inflight: set[asyncio.Task[float | None]] = set()

    async def ping(self, address: str, *, size: int) -> float | None:
        """Round-trip time in seconds, or ``None`` if no answer (or no route)."""
        if self._ping is None:
            self._ping = Ping(
                policy=_POLICIES[self._privileged],
                timeout=self._timeout,
                recv_buffer_size=_RECV_BUFFER,
                send_buffer_size=_RECV_BUFFER,
            )
        task = asyncio.ensure_future(self._ping.ping(address, size=size))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except PermissionError as exc:  # socket opened lazily, on the first echo
            raise _permission_error(self._privileged, self._device) from exc

    async def aclose(self) -> None:
        """Let in-flight echoes finish (at most ``2 * timeout``), then close the sockets."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=2 * self._timeout + 0.5)
        ping, self._ping = self._ping, None
        if ping is None:
            return
        # gufo-ping 0.7 never removes its fd reader (its __del__ looks up the wrong
        # attribute), so the loop would keep the socket open forever.
        loop = asyncio.get_running_loop()
        for sock in getattr(ping, "_Ping__sockets", {}).values():
            fd = getattr(sock, "_PingSocket__sock_fd", None)
            handler = getattr(sock, "_timeout_handler", None)
            if handler is not None:
                handler.cancel()
            if fd is not None:
                loop.remove_reader(fd)


async def _echoes(engine: PingEngine, address: str, config: PingProbeConfig) -> list[float | None]:
    rtts: list[float | None] = []
    for i in range(config.count):
        if i and config.interval:
            await asyncio.sleep(config.interval)
        rtts.append(await engine.ping(address, size=config.size))
    return rtts


class PingPoller:
    """Pings one device ``count`` times per poll; REACHABLE, RTT, jitter and loss.

    Permissions are checked at construction (ProbeConfigError naming both fixes). Pass
    ``engine`` to share one socket between many pollers in one loop (its ``timeout`` and
    ``privileged`` then win); otherwise the poller owns one.
    """

    def __init__(
        self,
        *,
        device: str,
        address: str,
        config: PingProbeConfig,
        engine: PingEngine | None = None,
    ) -> None:
        check_permission(config.privileged, _family(address, device), device=device)
        self.device = device
        self._address = address
        self._config = config
        self._owns_engine = engine is None
        self._engine = engine or PingEngine(
            privileged=config.privileged, timeout=config.timeout, device=device
        )

    async def poll(self) -> PollResult:
        rtts = await _echoes(self._engine, self._address, self._config)
        ts = time.time()
        stats = parse.summarize(rtts)
        result = PollResult(
            device=self.device, ts=ts, observations=parse.observations(self.device, stats, ts)
        )
        if not stats.reachable:
            result.error = "timeout"
            result.detail = (
                f"0/{stats.sent} echo replies from {self._address} "
                f"within {self._config.timeout:g} s each"
            )
        return result

    async def aclose(self) -> None:
        if self._owns_engine:
            await self._engine.aclose()


async def ping_many(
    addresses: Sequence[str],
    *,
    config: PingProbeConfig,
    concurrency: int,
    engine: PingEngine | None = None,
) -> dict[str, PingStats]:
    """Ping every address ``config.count`` times through one engine, ``concurrency`` at once.

    An address listed more than once is pinged once per occurrence and its echoes pooled.
    Bad addresses or missing permissions raise ProbeConfigError before anything is sent;
    unanswered targets are results (``received == 0``), never exceptions.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1 (got {concurrency})")
    for family in {_family(a, "ping_many") for a in addresses}:
        check_permission(config.privileged, family)
    own = engine is None
    eng = engine or PingEngine(privileged=config.privileged, timeout=config.timeout)
    rtts: dict[str, list[float | None]] = {a: [] for a in addresses}
    todo = iter(addresses)

    async def worker() -> None:
        for address in todo:  # shared iterator: each address goes to one worker
            rtts[address].extend(await _echoes(eng, address, config))

    try:
        async with asyncio.TaskGroup() as tg:
            for n in range(min(concurrency, len(addresses))):
                tg.create_task(worker(), name=f"ping_many-{n}")
    finally:
        if own:
            await eng.aclose()
    return {a: parse.summarize(r) for a, r in rtts.items()}


if TYPE_CHECKING:

    def _is_a_poller(poller: PingPoller) -> Poller:
        return poller
