"""Streaming telemetry from one device over gNMI: Capabilities, Get, Subscribe STREAM.

What the notifications mean is in :mod:`probes.gnmi.parse`; the blocking gRPC calls run
on a thread per dial (:mod:`probes.gnmi.session`). This is the loop side: it parses what
the thread hands over, publishes one batch per wake-up, and watches the clock:

- a stream that says nothing -- no update, no sync, no heartbeat -- for
  ``silence_deadline`` is taken for dead (a gRPC stream can stall without any error) and
  redialled;
- a stream that ends or breaks is redialled at once when it had lasted, else after the
  backoff;
- a dial that fails waits ``backoff`` (capped, jittered) before the next one.

``REACHABLE`` 1 (reason ``ok``) is published each time a stream is (re)established,
ahead of the initial state. ``REACHABLE`` 0 when a dial fails because the device is not
there (reason ``refused``, ``timeout``, ``unreachable``). A target that answers but will
not serve us (``auth``, ``tls``, ``closed``, ``encoding``, ``protocol``,
``stream_ended``) is reachable: 1 with that reason, as the SNMP poller does for rejected
credentials -- a typo in the config must not look like an outage to the correlator. Each
is published when it changes, not at every retry. A stream that breaks publishes
nothing by itself: the redial that follows decides.

The password travels in gRPC metadata (``username`` / ``password``, as gNMI targets
expect) and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from probes.errors import ProbeError, ProbeTimeout
from probes.gnmi import parse
from probes.gnmi.config import GnmiBackoff, GnmiProbeConfig
from probes.gnmi.session import DialFailure, Handoff, Worker, classify, target_for
from probes.types import REACHABLE, Observation, Publish

if TYPE_CHECKING:
    from probes.types import EventSource

log = logging.getLogger(__name__)

STAT_KEYS: Final = (
    *parse.STAT_KEYS,
    "responses",  # SubscribeResponses received
    "syncs",  # sync_responses received
    "batches",  # publish calls
    "dials",  # connection attempts
    "connects",  # streams established (a first response received)
    "reconnects",  # dials after the first one
    "dial_failures",  # dials that did not get a stream, whatever the reason
    "auth_failures",  # ... because the target rejected the credentials
    "tls_failures",  # ... because TLS could not be set up
    "timeouts",  # ... because the target did not answer in connect_timeout
    "stream_ends",  # streams the target ended
    "stream_errors",  # streams that broke (a gRPC error)
    "silence_timeouts",  # streams that said nothing for silence_deadline
    "get_failures",  # initial Gets refused (the stream's first updates give the state)
    "queue_full",  # times reading from the target paused: queue_size responses waited
    "threads_abandoned",  # dial threads that did not stop in time when closing
)
"""``stats`` keys, all monotonic counters."""

THREAD_JOIN_TIMEOUT: Final = 2.0  # seconds to wait for a dial's thread when closing it
MAX_BATCH: Final = 256  # responses parsed per publish (then the loop runs other tasks)
_DEVICE_ABSENT: Final = frozenset({"refused", "timeout", "unreachable"})


def backoff_delay(
    failures: int, backoff: GnmiBackoff, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failures + 1`` failed dials in a row."""
    base = min(backoff.maximum, backoff.initial * backoff.multiplier ** min(failures, 64))
    return base * (1.0 - backoff.jitter * rand())


class GnmiProbe:
    """An :class:`probes.types.EventSource` for one device's gNMI telemetry."""

    def __init__(self, *, device: str, address: str, config: GnmiProbeConfig) -> None:
        """Reads the TLS files now: a missing, unreadable or non-PEM one is a
        :class:`probes.errors.ProbeConfigError`."""
        self.name = f"gnmi:{device}"
        self.device = device
        self.config = config
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.connected = asyncio.Event()  # set while a stream is established
        self.last_error: ProbeError | None = None
        self.last_reason = ""  # reason code of the last failure ("" before any)
        self.supported_models: list[str] = []  # name@version, from the last Capabilities
        self.encoding: str | None = None  # in use on the last dial
        self._target = target_for(device, address, config)
        self._state = parse.ParseState(self.stats)
        self._reported: tuple[int, str] | None = None  # the last REACHABLE published

    def __repr__(self) -> str:
        return f"GnmiProbe(device={self.device!r}, target={self._target.address!r})"

    async def run(self, publish: Publish, stopping: asyncio.Event) -> None:
        """Stream until ``stopping`` is set, redialling as needed. Never raises for device
        trouble (see ``stats``, ``last_error``); cancelling it closes the dial too."""
        failures = 0  # dials in a row that did not give a lasting stream
        while not stopping.is_set():
            if self.stats["dials"]:
                self.stats["reconnects"] += 1
            started = time.monotonic()
            failure = await self._dial(publish, stopping)
            if failure is None:
                break
            await self._failed(publish, failure)
            lasted = time.monotonic() - started >= self.config.backoff.maximum
            if failure.established and lasted:
                failures, delay = 0, 0.0
            else:
                failures += 1
                delay = backoff_delay(failures - 1, self.config.backoff)
            log.debug("%s: redial in %.2f s", self.name, delay)
            try:
                async with asyncio.timeout(delay):
                    await stopping.wait()
            except TimeoutError:
                pass

    async def _dial(self, publish: Publish, stopping: asyncio.Event) -> DialFailure | None:
        """One dial and its stream: None when stopping, else why it ended."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        handoff = Handoff(loop, cfg.queue_size)
        worker = Worker(self._target, handoff, f"{self.name}-grpc")
        watcher = loop.create_task(stopping.wait(), name=f"{self.name}-stopping")
        watcher.add_done_callback(lambda _: handoff.wake())
        self.stats["dials"] += 1
        self._state.new_stream()
        established = subscribed = False
        initial: list[Observation] = []
        last = loop.time()
        full = 0
        worker.start()
        try:
            while True:
                batch = handoff.take(MAX_BATCH)
                if handoff.full != full:
                    self.stats["queue_full"] += handoff.full - full
                    full = handoff.full
                if not batch:
                    if stopping.is_set():
                        return None
                    quiet = cfg.silence_deadline if subscribed else cfg.connect_timeout + 1.0
                    try:
                        async with asyncio.timeout_at(last + quiet):
                            await handoff.wait()
                    except TimeoutError:
                        return self._silent(established, subscribed)
                    continue
                last = loop.time()
                now = time.time()
                out: list[Observation] = []
                ended: DialFailure | None = None
                for kind, payload in batch:
                    if kind == "response":
                        if not established:
                            established = True
                            self._established(now, out, initial)
                        self.stats["responses"] += 1
                        if parse.parse_response(payload, self._state, device=self.device,
                                                now=now, out=out):
                            self.stats["syncs"] += 1
                    elif kind == "capabilities":
                        self._capabilities(*payload)
                    elif kind == "get":
                        parse.parse_get_response(payload, self._state, device=self.device,
                                                 now=now, out=initial)
                    elif kind == "get_failed":
                        self.stats["get_failures"] += 1
                        log.warning("%s: initial Get refused (%s); the stream's first "
                                    "updates give the state instead", self.name, payload)
                    elif kind == "subscribed":
                        subscribed = True
                    elif kind == "end":
                        ended = self._ended(established)
                    elif kind == "error":
                        ended = None if stopping.is_set() else self._error(payload, established)
                        if ended is None:
                            return None
                if out:
                    self.stats["batches"] += 1
                    await publish(out)
                if ended is not None:
                    return ended
                if len(handoff):
                    await asyncio.sleep(0)  # a backlog: let the rest of the daemon run
        finally:
            watcher.cancel()
            self.connected.clear()
            worker.abort()
            if not await worker.joined(THREAD_JOIN_TIMEOUT):
                self.stats["threads_abandoned"] += 1
                log.warning("%s: gNMI thread did not stop within %.0f s; left behind",
                            self.name, THREAD_JOIN_TIMEOUT)

    def _established(self, now: float, out: list[Observation],
                     initial: list[Observation]) -> None:
        self.stats["connects"] += 1
        self.connected.set()
        again = " again" if self.last_error is not None else ""
        log.info("%s: streaming from %s%s", self.name, self._target.address, again)
        self._reported = (1, "ok")
        out.append(Observation(self.device, parse.SOURCE, REACHABLE, "", 1, now,
                               {"reason": "ok"}))
        out.extend(initial)
        initial.clear()

    def _capabilities(self, caps: Any, encoding: str) -> None:
        self.encoding = encoding
        self.supported_models = [f"{m.name}@{m.version}" if m.version else m.name
                                 for m in caps.supported_models]
        log.debug("%s: gNMI %s, encoding %s, %d models: %s", self.name,
                  caps.gNMI_version or "?", encoding, len(self.supported_models),
                  ", ".join(self.supported_models))

    def _silent(self, established: bool, subscribed: bool) -> DialFailure:
        where = self._target.address
        if subscribed:
            self.stats["silence_timeouts"] += 1
            msg = (f"{self.device}: no gNMI update, sync or heartbeat from {where} for "
                   f"{self.config.silence_deadline:g} s: redialling")
            return DialFailure("silent", ProbeTimeout(
                msg, device=self.device, operation="gnmi subscribe"), established)
        self.stats["timeouts"] += 1
        msg = (f"{self.device}: gNMI target {where} did not answer the dial in "
               f"{self.config.connect_timeout:g} s")
        return DialFailure("timeout", ProbeTimeout(msg, device=self.device,
                                                   operation="gnmi dial"))

    def _ended(self, established: bool) -> DialFailure:
        self.stats["stream_ends"] += 1
        msg = f"{self.device}: gNMI target {self._target.address} ended the stream"
        return DialFailure("stream_ended", ProbeError(
            msg, device=self.device, operation="gnmi subscribe"), established)

    def _error(self, exc: BaseException, established: bool) -> DialFailure:
        failure = classify(exc, self._target, established)
        if established:
            self.stats["stream_errors"] += 1
        elif failure.reason == "auth":
            self.stats["auth_failures"] += 1
        elif failure.reason == "tls":
            self.stats["tls_failures"] += 1
        elif failure.reason == "timeout":
            self.stats["timeouts"] += 1
        return failure

    async def _failed(self, publish: Publish, failure: DialFailure) -> None:
        self.last_error = failure.error
        self.last_reason = failure.reason
        if failure.established:
            log.warning("%s", failure.error)
            return  # the redial decides whether the device is gone
        self.stats["dial_failures"] += 1
        report = (0 if failure.reason in _DEVICE_ABSENT else 1, failure.reason)
        if report == self._reported:
            log.debug("%s", failure.error)
            return
        self._reported = report
        # reachable but refusing us is a config problem: louder than a device gone
        log.log(logging.ERROR if report[0] else logging.WARNING, "%s", failure.error)
        self.stats["batches"] += 1
        await publish([Observation(self.device, parse.SOURCE, REACHABLE, "", report[0],
                                   time.time(), {"reason": failure.reason})])


if TYPE_CHECKING:

    def _is_an_event_source(probe: GnmiProbe) -> EventSource:
        return probe
