"""The event bus over MQTT: pollers publish Observation batches (and SNMP interface
counter tables), the core subscribes.

Topic layout (MQTT 3.1.1, QoS 1, never retained)::

    {prefix}/v1/obs/{shard}/{device}

``prefix`` is ``cluster.broker.topic_prefix`` (default ``netreflex``); ``v1`` is the
payload version; ``shard`` is the id of the poller that published (the owner of the
device for polled data; for traps and syslog, the poller that received them);
``device`` is the inventory name, percent-encoded (``/``, ``+``, ``#``, ``%`` and anything
not in ``[A-Za-z0-9_.~-]``) so it is always one topic level. The core subscribes to
``{prefix}/v1/obs/#``; a broker ACL can give each poller write access to its own
``{prefix}/v1/obs/{poller_id}/#`` only.

Payload (UTF-8 JSON, one device per message)::

    {"v": 1, "poller": "pop1", "epoch": 1718000000123456, "seq": 42,
     "observations": [[device, source, name, instance, value, ts], ...,
                      [device, source, name, instance, value, ts, {label: value}]],
     "counters": {"device": "r1", "ts": 1718000000.5, "if_index": [1, 2],
                  "name": ["ge-0/0/1", "ge-0/0/2"], "oper_status": [1, 2],
                  "in_octets": [123, null], "out_octets": [...], "in_errors": [...],
                  "out_errors": [...], "speed_mbps": [1000, null]}}

``counters`` (optional) is the device's interface table from one SNMP poll as parallel
columns (``probes.types.InterfaceCounters``, ``null`` where the agent lacks the column;
:data:`COUNTER_COLUMNS`), for the core's detectors. It rides in the message that carries
observations for the same device when one is still waiting to be sent, else alone in the
next message on the device's topic: either way it keeps its place among that device's
batches and shares their seq, dedup, buffering and drop rules. Every column must be
present and as long as ``if_index``, counters are non-negative integers or ``null``; a
table that breaks this makes the whole message malformed. A core that predates the key
ignores it (and detects nothing from counters), like any key it does not know.

``seq`` counts the poller's messages from 1; ``epoch`` changes at every start of the
poller process (its start time in microseconds), so the core tells a restart from a
replay. Readers of v1 ignore top-level keys they do not know; a change that a v1 reader
would misread gets ``v: 2``. A payload that does not decode is counted and skipped.

Delivery: at least once end to end, duplicates removed by the core. A poller keeps every
batch until the broker acknowledged it (PUBACK) and resends the unacknowledged ones, in
order, after a reconnect; while the broker is away it buffers up to ``buffer_batches``
and then drops the *oldest* (``dropped`` counter). The core acknowledges a message only
after its handler has run (so a crash redelivers rather than loses), and skips any
``seq`` at or below the highest it handled for that poller and epoch. Per device, batches
arrive in the order they were published. Both ends use a fixed client id with
``clean_session=False``, so the broker queues messages for the core while it is away.

What the broker must be told (mosquitto.conf), or it silently drops what it queues for
a disconnected core: ``max_queued_messages`` (default 1000; size it for the longest core
outage: pollers x devices x polls per minute x minutes), ``persistence true`` with
``autosave_interval`` low enough for the crash you accept losing (it saves on a clean
stop), and ``persistent_client_expiration`` longer than any outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

import aiomqtt

from collector.bus import Batch, CountersHandler, CounterTable, InProcessBus
from collector.cluster import BrokerConfig, BrokerTls
from collector.errors import CollectorError
from probes.types import InterfaceCounters, Observation

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(__name__ + ".paho")

VERSION: Final = 1
Handler = Callable[[Batch], None]


# --- topics and payloads (pure) -----------------------------------------------------------


def topic_for(prefix: str, shard: str, device: str) -> str:
    return f"{prefix}/v{VERSION}/obs/{shard}/{quote(device, safe='') or '%00'}"


def topic_filters(prefix: str, shards: Sequence[str] | None = None) -> list[str]:
    """What the core subscribes to: every shard, or only ``shards``."""
    if shards is None:
        return [f"{prefix}/v{VERSION}/obs/#"]
    return [f"{prefix}/v{VERSION}/obs/{s}/#" for s in shards]


class PayloadError(CollectorError, ValueError):
    """A message on the bus that is not a v1 batch; it is counted and skipped."""


class UnsupportedVersion(PayloadError):
    """A batch from a newer (or older) netreflex: upgrade the core first."""


class CountersError(PayloadError):
    """A ``counters`` table that does not decode; the whole message is skipped."""


# The v1 columns of a counters table, in InterfaceCounters' order (a test keeps them equal:
# a new field there needs a decision here -- optional for old pollers, or ``v: 2``).
COUNTER_COLUMNS: Final = ("if_index", "name", "oper_status", "in_octets", "out_octets",
                          "in_errors", "out_errors", "speed_mbps")


@dataclass(frozen=True, slots=True)
class Envelope:
    poller: str
    epoch: int
    seq: int
    observations: tuple[Observation, ...]
    counters: CounterTable | None = None


def encode_batch(
    observations: Sequence[Observation], *, poller: str, seq: int, epoch: int = 0,
    counters: CounterTable | None = None,
) -> bytes:
    rows: list[list[Any]] = []
    for o in observations:
        row: list[Any] = [o.device, o.source, o.name, o.instance, o.value, o.ts]
        if o.labels:
            row.append(dict(o.labels))
        rows.append(row)
    doc: dict[str, Any] = {"v": VERSION, "poller": poller, "epoch": epoch, "seq": seq,
                           "observations": rows}
    if counters is not None:
        doc["counters"] = _table_doc(counters)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _table_doc(table: CounterTable) -> dict[str, Any]:
    doc: dict[str, Any] = {"device": table.device, "ts": table.ts}
    n = len(table.counters.if_index)
    for col in COUNTER_COLUMNS:
        values = getattr(table.counters, col)
        if len(values) != n:  # caught here, on the poller, rather than rejected by the core
            raise ValueError(f"counters of {table.device}: {col} has {len(values)} values "
                             f"for {n} interfaces")
        doc[col] = values
    return doc


def decode_batch(payload: bytes | bytearray) -> Envelope:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("not a JSON object")
    if doc.get("v") != VERSION:
        raise UnsupportedVersion(f"payload version {doc.get('v')!r}; this core reads "
                                 f"v{VERSION}")
    poller, epoch, seq, rows = (doc.get(k) for k in ("poller", "epoch", "seq", "observations"))
    if not isinstance(poller, str) or not poller:
        raise PayloadError("poller: expected a non-empty string")
    if not (_is_count(epoch) and _is_count(seq)):
        raise PayloadError("epoch and seq: expected non-negative integers")
    assert isinstance(epoch, int) and isinstance(seq, int)
    if not isinstance(rows, list):
        raise PayloadError("observations: expected a list")
    table = doc.get("counters")
    return Envelope(poller, epoch, seq, tuple(_observation(i, r) for i, r in enumerate(rows)),
                    None if table is None else _counter_table(table))


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_count_or_none(v: object) -> bool:
    return v is None or _is_count(v)


_COLUMN_CHECKS: Final[Mapping[str, tuple[Callable[[object], bool], str]]] = MappingProxyType({
    "if_index": (_is_int, "an integer"), "name": (_is_str, "a string"),
    "oper_status": (_is_int, "an integer"),
    **{col: (_is_count_or_none, "a non-negative integer or null")
       for col in COUNTER_COLUMNS[3:]},
})


_COLUMN_TYPES: Final[Mapping[str, frozenset[type]]] = MappingProxyType({
    "if_index": frozenset({int}), "name": frozenset({str}), "oper_status": frozenset({int}),
    **{col: frozenset({int, type(None)}) for col in COUNTER_COLUMNS[3:]},
})


def _column_ok(col: str, values: list[Any]) -> bool:
    """What _COLUMN_CHECKS says of every value, several times faster (JSON gives exact
    types: ``type(v) is int`` leaves out booleans)."""
    if not _COLUMN_TYPES[col].issuperset(map(type, values)):
        return False
    return col in ("if_index", "name", "oper_status") or min(
        [v for v in values if v is not None], default=0) >= 0


def _counter_table(raw: object) -> CounterTable:
    if not isinstance(raw, dict):
        raise CountersError("counters: expected an object")
    device, ts = raw.get("device"), raw.get("ts")
    if not isinstance(device, str):
        raise CountersError("counters.device: expected a string")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise CountersError("counters.ts: expected a number")
    columns: dict[str, list[Any]] = {}
    for col in COUNTER_COLUMNS:
        values = raw.get(col)
        if not isinstance(values, list):
            raise CountersError(f"counters.{col}: expected a list")
        if len(values) != len(columns.get("if_index", values)):
            raise CountersError(f"counters.{col}: {len(values)} values for "
                                f"{len(columns['if_index'])} interfaces")
        if not _column_ok(col, values):  # fast; then the slow search for the culprit
            ok, what = _COLUMN_CHECKS[col]
            i = next(i for i, v in enumerate(values) if not ok(v))
            raise CountersError(f"counters.{col}[{i}]: expected {what}")
        columns[col] = values
    return CounterTable(device, float(ts), InterfaceCounters(**columns))


def _observation(i: int, row: object) -> Observation:
    if not isinstance(row, list) or len(row) not in (6, 7):
        raise PayloadError(f"observations[{i}]: expected a list of 6 or 7 items")
    device, source, name, instance, value, ts = row[:6]
    if not all(isinstance(s, str) for s in (device, source, name, instance)):
        raise PayloadError(f"observations[{i}]: device, source, name, instance: strings")
    if not isinstance(value, int | float | str):
        raise PayloadError(f"observations[{i}]: value: number or string")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise PayloadError(f"observations[{i}]: ts: number")
    if len(row) == 6:
        return Observation(device, source, name, instance, value, float(ts))
    labels = row[6]
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise PayloadError(f"observations[{i}]: labels: object of strings")
    return Observation(device, source, name, instance, value, float(ts),
                       MappingProxyType(labels))


def backoff(attempt: int, *, low: float, high: float, rng: random.Random) -> float:
    """Delay before reconnect ``attempt`` (0-based): doubling from ``low``, capped at
    ``high``, with jitter in [50 %, 100 %] so pollers do not reconnect in lockstep."""
    return float(min(high, low * 2 ** min(attempt, 30)) * rng.uniform(0.5, 1.0))


class Dedup:
    """The highest ``seq`` handled per (poller, epoch), for at most ``streams`` pairs."""

    def __init__(self, streams: int = 4096) -> None:
        self._last: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._streams = streams

    def check(self, poller: str, epoch: int, seq: int) -> int | None:
        """``None`` for a duplicate; else how many seqs were skipped before this one."""
        key = (poller, epoch)
        last = self._last.get(key)
        if last is not None and seq <= last:
            return None
        self._last[key] = seq
        self._last.move_to_end(key)
        while len(self._last) > self._streams:
            self._last.popitem(last=False)
        return 0 if last is None else seq - last - 1


# --- the connection both ends share ---------------------------------------------------------


def tls_context(tls: BrokerTls) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    ctx.check_hostname = tls.verify_hostname
    return ctx


class _Endpoint:
    """One MQTT client identity that reconnects with capped, jittered backoff."""

    def __init__(self, *, broker: BrokerConfig, client_id: str, max_inflight: int | None,
                 manual_ack: bool, rng: random.Random | None) -> None:
        self.broker = broker
        self.client_id = client_id
        self.connected = False
        self.stats: dict[str, int] = {"connects": 0, "connect_failures": 0, "disconnects": 0}
        self._max_inflight = max_inflight
        self._manual_ack = manual_ack
        self._rng = rng or random.Random()
        self._tls = tls_context(broker.tls) if broker.tls is not None else None
        self._last_error = ""

    def _new_client(self) -> aiomqtt.Client:
        b = self.broker
        client = aiomqtt.Client(
            b.host, b.effective_port, username=b.username,
            password=None if b.password is None else b.password.get_secret_value(),
            identifier=self.client_id, clean_session=False, keepalive=b.keepalive,
            timeout=b.connect_timeout, tls_context=self._tls, logger=_paho_log,
            max_inflight_messages=self._max_inflight,
        )
        client.pending_calls_threshold = (self._max_inflight or 10) + 16  # quiet its warning
        if self._manual_ack:
            # Acknowledge after the handler ran, not on receipt. aiomqtt 2.5 has no public
            # switch yet (empicano/aiomqtt#345); paho's manual_ack is public paho API.
            client._client.manual_ack_set(True)
        return client

    async def _reconnecting(self, session: Callable[[aiomqtt.Client], Awaitable[None]],
                            stop: asyncio.Event) -> None:
        """Run ``session`` on a fresh connection until it returns or ``stop`` is set."""
        attempt = 0
        while not stop.is_set():
            entered = False
            try:
                async with self._new_client() as client:
                    entered = True
                    attempt = 0
                    self._on_connected()
                    try:
                        await session(client)
                    finally:
                        self.connected = False
                return
            except (aiomqtt.MqttError, OSError) as exc:
                self._on_failure(exc, lost=entered)
            delay = backoff(attempt, low=self.broker.reconnect_min,
                            high=self.broker.reconnect_max, rng=self._rng)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()

    def _on_connected(self) -> None:
        self.connected = True
        self.stats["connects"] += 1
        self._last_error = ""
        log.info("mqtt: connected to %s:%d as %s", self.broker.host,
                 self.broker.effective_port, self.client_id)

    def _on_failure(self, exc: BaseException, *, lost: bool) -> None:
        self.connected = False
        self.stats["disconnects" if lost else "connect_failures"] += 1
        msg = str(exc) or type(exc).__name__
        if lost or msg != self._last_error:  # say it once per distinct problem
            log.warning("mqtt: %s %s:%d as %s: %s; retrying", "lost" if lost else
                        "cannot connect to", self.broker.host, self.broker.effective_port,
                        self.client_id, msg)
        self._last_error = msg


# --- poller side ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Outgoing:
    seq: int
    topic: str
    batch: Sequence[Observation]
    queued_at: float
    payload: bytes | None = field(default=None)
    counters: CounterTable | None = field(default=None)

    @property
    def device(self) -> str:
        return self.counters.device if self.counters is not None else (
            self.batch[0].device if self.batch else "?")


class MqttPublisher(_Endpoint):
    """The poller's bus: ``publish`` never waits for the broker; batches queue (bounded)
    and ``consume`` ships them, calling ``handler`` with each batch the broker took.
    ``publish_counters`` queues interface tables the same way (``tables`` counts them)."""

    def __init__(
        self,
        *,
        broker: BrokerConfig,
        poller_id: str,
        client_id: str | None = None,
        buffer_batches: int = 20_000,
        max_inflight: int = 64,
        flush_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        epoch: int | None = None,
    ) -> None:
        if max_inflight >= buffer_batches:
            raise ValueError("max_inflight must be below buffer_batches")
        super().__init__(broker=broker, client_id=client_id or f"netreflex-poller-{poller_id}",
                         max_inflight=max_inflight, manual_ack=False, rng=rng)
        self.poller_id = poller_id
        self.epoch = time.time_ns() // 1000 if epoch is None else epoch
        self.buffer_batches = buffer_batches
        self.max_inflight = max_inflight
        self.flush_timeout = flush_timeout
        self.stats.update(queued=0, delivered=0, dropped=0, dropped_observations=0,
                          unencodable=0)
        self.tables: dict[str, int] = {"queued": 0, "delivered": 0, "dropped": 0,
                                       "unencodable": 0}
        self._clock = clock
        self._seq = 0
        self._pending: deque[_Outgoing] = deque()
        self._inflight: dict[int, _Outgoing] = {}
        self._wake = asyncio.Event()
        self._finishing = asyncio.Event()
        self._give_up = asyncio.Event()
        self._failure: BaseException | None = None
        self._handler: Handler = _ignore

    # --- the bus interface ---------------------------------------------------------------

    async def publish(self, batch: Batch) -> None:
        by_device: dict[str, list[Observation]] = {}
        for obs in batch:
            by_device.setdefault(obs.device, []).append(obs)
        for device, observations in by_device.items():
            self._queue(device, observations)
        self._trim()
        self._wake.set()

    async def publish_counters(self, table: CounterTable) -> None:
        """Queue a device's interface table behind what is queued for that device: in
        the message still waiting with its observations, else in a message of its own."""
        self.tables["queued"] += 1
        last = self._pending[-1] if self._pending else None
        if (last is not None and last.counters is None and last.payload is None
                and last.batch and last.batch[0].device == table.device):
            last.counters = table  # nothing for this device is queued after it
        else:
            self._queue(table.device, (), table)
            self._trim()
        self._wake.set()

    def depth(self) -> int:
        return self.buffered()

    def buffered(self) -> int:
        """Batches not yet acknowledged by the broker."""
        return len(self._pending) + len(self._inflight)

    def oldest_age(self) -> float:
        """Seconds the oldest unacknowledged batch has waited (0 when none)."""
        oldest = [item.queued_at for item in self._oldest()]
        return max(0.0, self._clock() - min(oldest)) if oldest else 0.0

    async def consume(self, handler: Handler, stopping: asyncio.Event) -> None:
        """Ship batches until ``stopping``; then keep shipping what is buffered for up to
        ``flush_timeout`` seconds."""
        self._handler = handler
        pump = self._start_pump("mqtt-publisher")
        try:
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({pump, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            await self._finish(pump, self.flush_timeout)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    def drain_now(self, handler: Handler) -> int:
        return 0  # nothing reaches the broker synchronously; see aclose()

    async def aclose(self, timeout: float) -> int:
        """Hand what is still buffered to the broker within ``timeout`` (reconnecting if
        need be); returns the batches left undelivered, which are lost."""
        if self.buffered():
            pump = self._start_pump("mqtt-publisher-flush")
            try:
                await self._finish(pump, timeout)
            finally:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        left = self.buffered()
        if left:
            log.warning("mqtt: %d batch(es) (%d observation(s)) not delivered to the broker "
                        "before exit", left,
                        sum(len(o.batch) for o in (*self._inflight.values(), *self._pending)))
        return left

    # --- internals ---------------------------------------------------------------------

    def _queue(self, device: str, batch: Sequence[Observation],
               counters: CounterTable | None = None) -> None:
        self._seq += 1
        self._pending.append(_Outgoing(
            self._seq, topic_for(self.broker.topic_prefix, self.poller_id, device), batch,
            self._clock(), counters=counters))
        self.stats["queued"] += 1

    def _trim(self) -> None:
        """Keep at most ``buffer_batches``: drop the oldest not yet sent."""
        while len(self._pending) + len(self._inflight) > self.buffer_batches:
            lost = self._pending.popleft()
            self.stats["dropped"] += 1
            self.stats["dropped_observations"] += len(lost.batch)
            self.tables["dropped"] += lost.counters is not None
            if self.stats["dropped"] == 1 or self.stats["dropped"] % 1000 == 0:
                log.warning("mqtt: buffer full (%d batches): dropped the oldest; %d dropped so "
                            "far", self.buffer_batches, self.stats["dropped"])

    def _oldest(self) -> list[_Outgoing]:
        # in flight: sent in seq order; pending: queued in seq order (resends go first)
        first = [next(iter(self._inflight.values()))] if self._inflight else []
        return first + ([self._pending[0]] if self._pending else [])

    def _start_pump(self, name: str) -> asyncio.Task[None]:
        self._finishing.clear()
        self._give_up.clear()
        return asyncio.create_task(self._reconnecting(self._session, self._give_up), name=name)

    async def _finish(self, pump: asyncio.Task[None], timeout: float) -> None:
        """Ship what is buffered, then return; give up after ``timeout``. A bug in the
        pump is raised here, not swallowed."""
        self._finishing.set()
        if not self.buffered():
            self._give_up.set()  # nothing to ship: do not wait for a broker that is away
        self._wake.set()
        if not pump.done():
            await asyncio.wait({pump}, timeout=timeout)
        if pump.done() and not pump.cancelled():
            pump.result()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._failure = None
        sends: set[asyncio.Task[None]] = set()
        watch = asyncio.create_task(_watch(client), name="mqtt-publisher:watch")
        sender = asyncio.create_task(self._send_loop(client, sends), name="mqtt-publisher:send")
        try:
            done, _ = await asyncio.wait({watch, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # MqttError: the link is gone
        finally:
            for task in (watch, sender, *sends):
                task.cancel()
            await asyncio.gather(watch, sender, *sends, return_exceptions=True)
            # Not acknowledged: resend first, in order, on the next connection.
            for item in sorted(self._inflight.values(), key=lambda o: o.seq, reverse=True):
                self._pending.appendleft(item)
            self._inflight.clear()

    async def _send_loop(self, client: aiomqtt.Client, sends: set[asyncio.Task[None]]) -> None:
        while True:
            while self._pending and len(self._inflight) < self.max_inflight:
                item = self._pending.popleft()
                if item.payload is None:
                    try:
                        item.payload = encode_batch(item.batch, poller=self.poller_id,
                                                    seq=item.seq, epoch=self.epoch,
                                                    counters=item.counters)
                    except (TypeError, ValueError):  # a probe bug: drop the batch, not us
                        self.stats["unencodable"] += 1
                        self.tables["unencodable"] += item.counters is not None
                        log.exception("mqtt: cannot encode a batch of %d observation(s)%s "
                                      "from device %s; dropped", len(item.batch),
                                      "" if item.counters is None else " and counters",
                                      item.device)
                        continue
                self._inflight[item.seq] = item
                task = asyncio.create_task(self._send(client, item))
                sends.add(task)
                task.add_done_callback(lambda t: self._sent(t, sends))
            if self._finishing.is_set() and not self.buffered():
                return
            self._wake.clear()
            await self._wake.wait()
            if self._failure is not None:
                raise self._failure

    async def _send(self, client: aiomqtt.Client, item: _Outgoing) -> None:
        await client.publish(item.topic, item.payload, qos=1, timeout=self.broker.ack_timeout)
        if self._inflight.pop(item.seq, None) is not None:
            self.stats["delivered"] += 1
            self.tables["delivered"] += item.counters is not None
            if not item.batch:
                return  # counters alone
            try:
                self._handler(item.batch)
            except Exception:
                log.exception("mqtt: delivery handler failed (batch of %d observation(s))",
                              len(item.batch))

    def _sent(self, task: asyncio.Task[None], sends: set[asyncio.Task[None]]) -> None:
        sends.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
        self._wake.set()


async def _watch(client: aiomqtt.Client) -> None:
    """Returns never; raises MqttError when the connection drops."""
    async for _ in client.messages:
        pass
    raise aiomqtt.MqttError("message stream ended")


def _refused(code: object) -> bool:
    return bool(getattr(code, "is_failure", False)) or code == 128


def _ignore(_: Batch) -> None:
    return None


# --- core side -----------------------------------------------------------------------------


class MqttSubscriber(_Endpoint):
    """The core's bus: batches from every poller via the broker, plus batches published
    locally (by event sources running in the core), to one handler; the pollers'
    interface tables to ``on_counters`` (``tables`` counts them)."""

    def __init__(
        self,
        *,
        broker: BrokerConfig,
        client_id: str = "netreflex-core",
        shards: Sequence[str] | None = None,
        local_maxsize: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(broker=broker, client_id=client_id, max_inflight=None,
                         manual_ack=True, rng=rng)
        self.filters = topic_filters(broker.topic_prefix, shards)
        self.stats.update(received=0, handled=0, duplicates=0, malformed=0,
                          unsupported_version=0, missing=0, handler_errors=0)
        self.tables: dict[str, int] = {"handled": 0, "malformed": 0, "ignored": 0,
                                       "handler_errors": 0}
        self.on_counters: CountersHandler | None = None  # None: tables are counted, ignored
        self._local = InProcessBus(local_maxsize)
        self._dedup = Dedup()
        self._client: aiomqtt.Client | None = None
        self.subscribed = asyncio.Event()  # set once the first SUBACK arrived

    async def publish(self, batch: Batch) -> None:
        await self._local.publish(batch)

    def depth(self) -> int:
        remote = len(self._client.messages) if self._client is not None else 0
        return self._local.depth() + remote

    def drain_now(self, handler: Handler) -> int:
        return self._local.drain_now(handler)

    async def aclose(self, timeout: float) -> int:
        return 0  # unacknowledged messages stay with the broker for the next start

    async def consume(self, handler: Handler, stopping: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._local.consume(handler, stopping), name="bus:local")
            tg.create_task(self._remote(handler, stopping), name="bus:mqtt")

    async def _remote(self, handler: Handler, stopping: asyncio.Event) -> None:
        async def session(client: aiomqtt.Client) -> None:
            await self._session(client, handler)

        run = asyncio.create_task(self._reconnecting(session, stopping), name="mqtt-core")
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                run.result()  # a bug, not a lost connection: let it out
        finally:
            stop.cancel()
            run.cancel()  # what is received but not acknowledged is redelivered later
            await asyncio.gather(run, return_exceptions=True)

    async def _session(self, client: aiomqtt.Client, handler: Handler) -> None:
        self._client = client
        try:
            for topic in self.filters:
                granted = await client.subscribe(topic, qos=1, timeout=self.broker.ack_timeout)
                if any(_refused(rc) for rc in granted):
                    raise aiomqtt.MqttError(f"the broker refused a subscription to {topic}: "
                                            f"check its ACL for {self.client_id}")
            self.subscribed.set()
            async for message in client.messages:
                self.handle(message.topic.value, message.payload, handler)
                client._client.ack(message.mid, message.qos)  # see _new_client
        finally:
            self._client = None

    def handle(self, topic: str, payload: object, handler: Handler) -> None:
        """One message: decode, drop duplicates, hand over. Never raises."""
        self.stats["received"] += 1
        try:
            if not isinstance(payload, bytes | bytearray):
                raise PayloadError(f"payload of type {type(payload).__name__}")
            env = decode_batch(payload)
        except PayloadError as exc:
            kind = "unsupported_version" if isinstance(exc, UnsupportedVersion) else "malformed"
            self.stats[kind] += 1
            self.tables["malformed"] += isinstance(exc, CountersError)
            if self.stats[kind] == 1 or self.stats[kind] % 1000 == 0:
                log.warning("mqtt: skipped a message on %s (%s; %d so far): %s", topic, kind,
                            self.stats[kind], exc)
            return
        skipped = self._dedup.check(env.poller, env.epoch, env.seq)
        if skipped is None:
            self.stats["duplicates"] += 1
            return
        if skipped:
            self.stats["missing"] += skipped
            log.warning("mqtt: %d batch(es) from poller %s never arrived (seq %d to %d)",
                        skipped, env.poller, env.seq - skipped, env.seq - 1)
        if env.observations:
            self.stats["handled"] += 1
            try:
                handler(env.observations)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("mqtt: handler failed on a batch from poller %s seq %d; "
                              "skipped", env.poller, env.seq)
        if env.counters is not None:
            self._counters(env, env.counters)

    def _counters(self, env: Envelope, table: CounterTable) -> None:
        if self.on_counters is None:
            self.tables["ignored"] += 1
            return
        self.tables["handled"] += 1
        try:
            self.on_counters(table)
        except Exception:
            self.tables["handler_errors"] += 1
            log.exception("mqtt: counters handler failed on %s from poller %s seq %d; "
                          "skipped", table.device, env.poller, env.seq)


__all__ = [
    "COUNTER_COLUMNS",
    "CountersError",
    "Dedup",
    "Envelope",
    "MqttPublisher",
    "MqttSubscriber",
    "PayloadError",
    "UnsupportedVersion",
    "backoff",
    "decode_batch",
    "encode_batch",
    "tls_context",
    "topic_filters",
    "topic_for",
]
