"""The syslog listener: UDP and TCP on the caller's loop, a bounded queue, batch publish.

The socket callbacks do almost nothing: they stamp each message with its time of arrival
and append it to one bounded queue (UDP: up to 256 datagrams per wake-up of the loop; TCP:
an asyncio protocol per connection cuts the stream into messages, see
:class:`probes.syslog.parse.TcpFramer`). One worker task takes up to ``batch_size``
messages at a time, parses them, finds the device, applies the rules and publishes the
batch's Observations in one call, yielding to the loop after every batch. Nothing waits
for a timer: a message is on the bus as soon as the worker gets to it.

Overload: beyond ``queue_size`` waiting messages, UDP datagrams are dropped and counted
(``dropped_overload``; what the kernel drops before we read is not seen -- netstat -su).
TCP messages are never dropped: a connection whose messages do not fit stops being read
(``pause_reading``: TCP flow control slows the sender down) until the queue is half
empty. A TCP sender that says nothing for ``tcp_idle_timeout`` is disconnected, and at
most ``max_tcp_connections`` are served: a slow or hung client holds one slot and a
bounded buffer, never the loop.

Which device sent a message: the sender's source address, through
:meth:`DeviceResolver.device_for_address`; when that is not a known device and
``trust_hostname`` is set, the message's HOSTNAME is asked the same way (a relay in
between, or a device that writes its own name or loopback address there) -- so the
resolver must answer None, not raise, for a name it does not know. A message from no
known device is counted as ``unknown_sender`` and dropped before the rules run.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from probes.errors import ProbeConfigError
from probes.syslog.config import Rule, SyslogConfig, configured_rules, split_endpoint
from probes.syslog.match import Matcher
from probes.syslog.parse import SyslogParseError, TcpFramer, parse_message
from probes.types import DeviceResolver, Observation, Publish

log = logging.getLogger(__name__)

STAT_KEYS: Final = (
    "received",  # messages that arrived (datagrams, TCP frames), dropped ones included
    "matched",  # ... that a rule turned into an Observation
    "unmatched",  # ... from a known device that no rule matched
    "malformed",  # ... that are not syslog (no <PRI>, empty)
    "unknown_sender",  # ... from an address / HOSTNAME that is no known device
    "dropped_overload",  # ... dropped because the queue was full
    "truncated",  # ... longer than max_message_size, cut (also counted above)
    "observations",  # Observations published
    "tcp_accepted",  # TCP connections served
    "tcp_rejected",  # TCP connections refused: max_tcp_connections reached
    "tcp_idle_closed",  # TCP connections closed after tcp_idle_timeout of silence
)
"""``stats`` keys, all monotonic counters. received = matched + unmatched + malformed +
unknown_sender + dropped_overload (+ those still queued)."""

DRAIN_TIMEOUT: Final = 2.0  # seconds to finish what is queued when stopping
UDP_BURST: Final = 256  # datagrams read per readiness callback


class _RateLimitedLog:
    """At most one warning per key per ``interval``; the next one says how many were held."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            log.warning(fmt + " (and %d more like it in the last %.0fs)", *args, held,
                        self.interval)
        else:
            log.warning(fmt, *args)


def _host(address: str) -> str:
    """The sender's address as the inventory writes it (no IPv4-mapped IPv6 prefix)."""
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


class SyslogReceiver:
    """An :class:`probes.types.EventSource` for syslog over UDP and TCP."""

    def __init__(
        self,
        *,
        config: SyslogConfig,
        resolver: DeviceResolver,
        rules: Sequence[Rule] | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "syslog",
    ) -> None:
        """``rules`` defaults to the configured ones (the site's ``rules_file``, then the
        built-in rules); reading them raises :class:`probes.source.SourceError`."""
        self.name = name
        self.config = config
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.ready = asyncio.Event()  # set once listening; see udp_address / tcp_address
        self.udp_address: tuple[str, int] | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._resolver = resolver
        self._matcher = Matcher(configured_rules(config) if rules is None else rules)
        self._clock = clock
        self._queue: deque[tuple[bytes, str, float]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._udp: _UdpReader | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_TcpConnection] = set()
        self._paused: set[_TcpConnection] = set()
        self._log = _RateLimitedLog()

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Use these rules from the next batch on (SIGHUP: validate first, then swap)."""
        self._matcher = Matcher(rules)

    @property
    def queued(self) -> int:
        """Messages waiting to be parsed (a gauge, for metrics)."""
        return len(self._queue)

    async def run(self, publish: Publish, stopping: asyncio.Event) -> None:
        """Listen until ``stopping`` is set, then finish the queue (for up to
        DRAIN_TIMEOUT seconds). Raises ProbeConfigError if it cannot listen."""
        self._closing = False
        try:
            await self._listen()
            self.ready.set()
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(self._work(publish), name=f"{self.name}-worker")
                sweeper = None
                if self._server is not None:
                    sweeper = tg.create_task(self._sweep(), name=f"{self.name}-idle-sweep")
                await stopping.wait()
                self._stop_listening()
                if sweeper is not None:
                    sweeper.cancel()
                self._closing = True
                self._wake.set()
                try:
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        await asyncio.shield(worker)
                except TimeoutError:
                    worker.cancel()
                    log.warning("%s: stopped with %d message(s) not processed", self.name,
                                len(self._queue))
        finally:
            self._stop_listening()
            lost = len(self._queue)
            for conn in self._paused:
                lost += len(conn.pending)
                self.stats["received"] += len(conn.pending)
                conn.pending.clear()
            self._paused.clear()
            self.stats["dropped_overload"] += lost
            self._queue.clear()
            self.ready.clear()

    # --- listening -----------------------------------------------------------------------

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        if cfg.udp is not None:
            host, port = split_endpoint(cfg.udp)
            try:
                self._udp = _UdpReader(self, loop, host, port)
            except OSError as exc:
                raise _listen_error("udp", cfg.udp, port, exc) from exc
            host, port = self._udp.sock.getsockname()[:2]
            self.udp_address = (host, port)
            log.info("%s: listening on udp %s:%d", self.name, host, port)
        if cfg.tcp is not None:
            host, port = split_endpoint(cfg.tcp)
            try:
                self._server = await loop.create_server(
                    lambda: _TcpConnection(self), host, port, reuse_address=True,
                    backlog=min(cfg.max_tcp_connections, 1024),
                )
            except OSError as exc:
                self._stop_listening()
                raise _listen_error("tcp", cfg.tcp, port, exc) from exc
            host, port = self._server.sockets[0].getsockname()[:2]
            self.tcp_address = (host, port)
            log.info("%s: listening on tcp %s:%d", self.name, host, port)

    def _stop_listening(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._connections):
            conn.close()

    # --- the queue -----------------------------------------------------------------------

    def _put(self, data: bytes, host: str) -> None:
        """Queue one UDP datagram, or drop it if the queue is full."""
        self.stats["received"] += 1
        if len(self._queue) >= self.config.queue_size:
            self.stats["dropped_overload"] += 1
            self._log.warning("overload", "%s: queue full (%d messages): dropping UDP "
                              "messages", self.name, self.config.queue_size)
            return
        self._queue.append((data, host, self._clock()))
        if not self._wake.is_set():
            self._wake.set()

    def _put_frames(self, conn: _TcpConnection) -> None:
        """Queue what a TCP connection has framed, as far as there is room; pause the
        connection while frames wait (TCP flow control then slows the sender down)."""
        pending = conn.pending
        queue = self._queue
        room = self.config.queue_size - len(queue)
        if room > 0 and pending:
            now = self._clock()
            host = conn.peer
            n = min(room, len(pending))
            queue.extend((pending.popleft(), host, now) for _ in range(n))
            self.stats["received"] += n
            if not self._wake.is_set():
                self._wake.set()
        if pending:
            if conn not in self._paused:
                self._paused.add(conn)
                conn.pause()
        elif conn in self._paused:
            self._paused.discard(conn)
            conn.resume()

    async def _work(self, publish: Publish) -> None:
        queue = self._queue
        batch_size = self.config.batch_size
        while True:
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            observations = self._process(batch)
            if self._paused and len(queue) <= self.config.queue_size // 2:
                for conn in list(self._paused):
                    self._put_frames(conn)
            if observations:
                await publish(observations)
            await asyncio.sleep(0)  # let the loop read sockets between batches, always

    def _process(self, batch: Sequence[tuple[bytes, str, float]]) -> list[Observation]:
        stats = self.stats
        lookup = self._resolver.device_for_address
        devices: dict[str, str | None] = {}  # this batch's lookups
        trust_hostname = self.config.trust_hostname
        interface_name = self._resolver.interface_name
        match = self._matcher.match
        out: list[Observation] = []
        for data, host, ts in batch:
            try:
                message = parse_message(data)
            except SyslogParseError as exc:
                stats["malformed"] += 1
                self._log.warning("malformed", "%s: not a syslog message from %s (%s): %.100r",
                                  self.name, host, exc, data)
                continue
            device = devices[host] if host in devices else devices.setdefault(host, lookup(host))
            if device is None and trust_hostname and message.hostname:
                name = message.hostname
                device = devices[name] if name in devices else devices.setdefault(
                    name, lookup(name))
            if device is None:
                stats["unknown_sender"] += 1
                self._log.warning("unknown_sender", "%s: message from %s (HOSTNAME %s), which "
                                  "is no device in the inventory", self.name, host,
                                  message.hostname or "-")
                continue
            obs = match(message, device=device, ts=ts, interface_name=interface_name)
            if obs is None:
                stats["unmatched"] += 1
                continue
            stats["matched"] += 1
            out.append(obs)
            log.debug("%s: device=%s %s %s=%s (rule %s)", self.name, device, obs.name,
                      obs.instance, obs.value, obs.labels.get("rule"))
        stats["observations"] += len(out)
        return out

    async def _sweep(self) -> None:
        """Close TCP connections that have said nothing for tcp_idle_timeout."""
        timeout = self.config.tcp_idle_timeout
        period = min(max(timeout / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn not in self._paused and now - conn.last_active > timeout:
                    self.stats["tcp_idle_closed"] += 1
                    log.info("%s: closing idle tcp connection from %s", self.name, conn.peer)
                    conn.close()


def _listen_error(proto: str, endpoint: str, port: int, exc: OSError) -> ProbeConfigError:
    hint = ""
    if exc.errno == errno.EACCES and 0 < port < 1024:
        hint = ("; ports below 1024 need CAP_NET_BIND_SERVICE (AmbientCapabilities= in the "
                "unit) or a higher port")
    elif exc.errno == errno.EADDRINUSE:
        hint = "; another program (rsyslog? journald?) listens there: stop it or pick a port"
    return ProbeConfigError(
        f"cannot listen for syslog on {proto} {endpoint}: {exc.strerror}{hint}",
        operation="listen",
    )


class _UdpReader:
    """A non-blocking UDP socket read straight from the loop's selector: each time it is
    readable, up to UDP_BURST datagrams are taken in one callback. (asyncio's datagram
    transport reads one datagram per loop iteration, which costs about three times as
    much CPU per message under load.)"""

    def __init__(self, receiver: SyslogReceiver, loop: asyncio.AbstractEventLoop, host: str,
                 port: int) -> None:
        self.receiver = receiver
        self.loop = loop
        self.max_size = receiver.config.max_message_size
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                     receiver.config.udp_receive_buffer)
            except OSError as exc:  # pragma: no cover - depends on the kernel
                log.info("%s: cannot set SO_RCVBUF: %s", receiver.name, exc)
            self.sock.bind((host, port))
            loop.add_reader(self.sock.fileno(), self._readable)
        except BaseException:
            self.sock.close()
            raise

    def _readable(self) -> None:
        receiver = self.receiver
        put = receiver._put
        recvfrom = self.sock.recvfrom
        limit = self.max_size
        for _ in range(UDP_BURST):
            try:
                data, addr = recvfrom(limit + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors reported on the socket: not ours to mend
                log.debug("%s: udp socket error: %s", receiver.name, exc)
                return
            if len(data) > limit:
                data = data[:limit]
                receiver.stats["truncated"] += 1
            put(data, _host(addr[0]))

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class _TcpConnection(asyncio.Protocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver
        self.framer = TcpFramer(max_size=receiver.config.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_active = time.monotonic()
        self.pending: deque[bytes] = deque()  # framed, waiting for room in the queue

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        receiver = self.receiver
        peer = transport.get_extra_info("peername")
        self.peer = _host(str(peer[0])) if peer else "?"
        if len(receiver._connections) >= receiver.config.max_tcp_connections \
                or receiver._closing:
            receiver.stats["tcp_rejected"] += 1
            receiver._log.warning("tcp_rejected", "%s: refusing tcp connection from %s: "
                                  "max_tcp_connections (%d) reached", receiver.name, self.peer,
                                  receiver.config.max_tcp_connections)
            transport.abort()
            return
        self.transport = transport
        receiver.stats["tcp_accepted"] += 1
        receiver._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        receiver = self.receiver
        framer = self.framer
        self.pending.extend(framer.feed(data))
        if framer.truncated:
            receiver.stats["truncated"] += framer.truncated
            framer.truncated = 0
        receiver._put_frames(self)

    def eof_received(self) -> bool:
        self.pending.extend(self.framer.flush())
        self.receiver._put_frames(self)
        return False  # close our side; frames still pending are queued later

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver._connections.discard(self)
        self.transport = None

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
