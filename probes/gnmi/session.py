"""One gNMI dial, on its own thread: Capabilities, Get, Subscribe, handed to the loop.

gRPC is used through its synchronous client (pygnmi's generated stubs), which blocks: a
:class:`Worker` thread makes the calls and puts what arrives into a :class:`Handoff`, a
bounded queue read by the event loop. The loop ends a dial with :meth:`Worker.abort`,
which closes the channel (that cancels every call on it) and wakes the thread.

Also here: the requests a dial sends, and what its errors mean (:func:`classify`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc  # type: ignore[import-untyped]
from pygnmi.spec.v080 import gnmi_pb2 as pb  # type: ignore[import-untyped]
from pygnmi.spec.v080.gnmi_pb2_grpc import gNMIStub  # type: ignore[import-untyped]

from probes.errors import ProbeAuthError, ProbeConfigError, ProbeError, ProbeTimeout
from probes.gnmi.config import GnmiProbeConfig
from probes.gnmi.paths import parse_elems

_MAX_MESSAGE: Final = 64 * 1024 * 1024  # bytes; a Get of every counter can be large
_ENCODINGS: Final[dict[str, int]] = {
    "json": pb.JSON, "proto": pb.PROTO, "ascii": pb.ASCII, "json_ietf": pb.JSON_IETF,
}
_PREFERRED: Final[tuple[int, ...]] = (pb.JSON_IETF, pb.JSON, pb.PROTO)
_MODES: Final[dict[str, int]] = {
    "on_change": pb.ON_CHANGE, "sample": pb.SAMPLE, "target_defined": pb.TARGET_DEFINED,
}
_OPTIONAL_GET: Final = frozenset({
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
})
_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to dial one device (built once per probe)."""

    device: str
    address: str  # host:port, [v6]:port
    config: GnmiProbeConfig
    credentials: Any  # grpc.ChannelCredentials, None for plaintext
    metadata: tuple[tuple[str, str], ...]  # username / password, sent with every call

    def channel(self) -> Any:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.enable_retries", 0),
        ]
        if self.credentials is None:
            return grpc.insecure_channel(self.address, options=options)
        tls = self.config.tls
        if tls is not None and tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", tls.server_name_override))
        return grpc.secure_channel(self.address, self.credentials, options=options)


def target_for(device: str, address: str, config: GnmiProbeConfig) -> Target:
    """Reads the TLS files: a missing, unreadable or non-PEM one is a ProbeConfigError."""
    host = f"[{address}]" if ":" in address else address
    metadata: tuple[tuple[str, str], ...] = ()
    if config.username is not None:
        password = "" if config.password is None else config.password.get_secret_value()
        metadata = (("username", config.username), ("password", password))
    return Target(device, f"{host}:{config.port}", config,
                  _credentials(device, config), metadata)


def _credentials(device: str, config: GnmiProbeConfig) -> Any:
    if config.insecure:
        return None
    tls = config.tls
    if tls is None:  # GnmiProbeConfig refuses this; built by hand, say so
        raise ProbeConfigError(
            f"{device}: gNMI needs tls: (with ca_file: for a private CA) or insecure: true "
            "for plaintext", device=device, operation="gnmi dial")

    def read(field: str, path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ProbeConfigError(f"{device}: tls.{field} {path}: {exc.strerror}",
                                   device=device, operation="gnmi dial") from None
        if b"-----BEGIN " not in data:
            raise ProbeConfigError(
                f"{device}: tls.{field} {path} is not PEM (expected a -----BEGIN ... block)",
                device=device, operation="gnmi dial")
        return data

    return grpc.ssl_channel_credentials(
        root_certificates=read("ca_file", tls.ca_file),
        private_key=read("key_file", tls.key_file),
        certificate_chain=read("cert_file", tls.cert_file),
    )


# --- requests ----------------------------------------------------------------------------------


def _path(text: str) -> Any:
    origin, names, keys = parse_elems(text)
    return pb.Path(origin=origin, elem=[pb.PathElem(name=n, key=k)
                                        for n, k in zip(names, keys, strict=True)])


def get_request(config: GnmiProbeConfig, encoding: int) -> Any:
    return pb.GetRequest(path=[_path(p.path) for p in config.paths], type=pb.GetRequest.ALL,
                         encoding=encoding)


def subscribe_request(config: GnmiProbeConfig, encoding: int) -> Any:
    subs = []
    for spec in config.paths:
        sub = pb.Subscription(path=_path(spec.path), mode=_MODES[spec.mode])
        if spec.mode == "sample":
            sub.sample_interval = int(config.interval(spec) * _NS)
        elif config.heartbeat_interval is not None:
            sub.heartbeat_interval = int(config.heartbeat_interval * _NS)
        subs.append(sub)
    return pb.SubscribeRequest(subscribe=pb.SubscriptionList(
        subscription=subs, mode=pb.SubscriptionList.STREAM, encoding=encoding))


def encoding_names(codes: list[int]) -> list[str]:
    known = pb.Encoding.values()
    return [pb.Encoding.Name(c).lower() if c in known else str(c) for c in codes]


def choose_encoding(target: Target, supported: list[int]) -> int:
    """The configured encoding, or the first of json_ietf, json, proto the target offers
    (json_ietf when it does not say). Raises Refused when there is none we can use."""
    offered = ", ".join(encoding_names(supported))
    wanted = target.config.encoding
    if wanted is not None:
        chosen = _ENCODINGS[wanted]
        if supported and chosen not in supported:
            raise Refused("encoding", (
                f"{target.device}: gNMI target {target.address} does not support encoding "
                f"{wanted} (it offers {offered}); change encoding:"))
        return chosen
    if not supported:
        return int(pb.JSON_IETF)
    for code in _PREFERRED:
        if code in supported:
            return code
    raise Refused("encoding", (
        f"{target.device}: gNMI target {target.address} offers only {offered}; netreflex reads "
        "json_ietf, json or proto"))


# --- why a dial ended --------------------------------------------------------------------------


class Refused(Exception):
    """The target answered but cannot be used as configured."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DialFailure:
    """Why a dial or a stream ended: ``reason`` a short code, ``error`` what to do."""

    reason: str
    error: ProbeError
    established: bool = False  # a stream had been running


def classify(exc: BaseException, target: Target, established: bool) -> DialFailure:
    """A worker's exception as a reason code and a ProbeError that says what to do.

    Reasons: ``auth``, ``tls``, ``encoding``, ``timeout``, ``refused``, ``closed``,
    ``unreachable``, ``stream_error`` (a running stream broke), ``protocol`` (anything else).
    """
    dev, where = target.device, target.address
    op = "gnmi subscribe" if established else "gnmi dial"
    if isinstance(exc, Refused):
        return DialFailure(exc.reason, ProbeConfigError(str(exc), device=dev, operation=op))
    if not isinstance(exc, grpc.RpcError) or not hasattr(exc, "code"):
        return DialFailure("stream_error" if established else "protocol", ProbeError(
            f"{dev}: gNMI with {where} failed: {exc!r}", device=dev, operation=op), established)
    code, details = exc.code(), exc.details() or ""
    low = details.lower()
    tls_words = ("tls", "ssl", "handshake", "certificate", "verification")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) and not any(
            w in low for w in tls_words):
        user = target.config.username
        who = f"user {user!r}" if user else "no credentials (username: is not set)"
        return DialFailure("auth", ProbeAuthError(
            f"{dev}: gNMI target {where} rejected {who} ({code.name}: {details}); check "
            "username and password", device=dev, operation=op), established)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DialFailure("timeout", ProbeTimeout(
            f"{dev}: gNMI target {where} did not answer within {target.config.connect_timeout:g} s",
            device=dev, operation=op), established)
    if any(w in low for w in tls_words):
        hint = ("check tls.ca_file (the CA that signed the target's certificate) and "
                "tls.server_name_override (a name in its certificate)")
        if "wrong_version_number" in low:
            hint = "the target does not speak TLS: if it is plaintext, set insecure: true"
        return DialFailure("tls", ProbeConfigError(
            f"{dev}: TLS with gNMI target {where} failed: {details} -- {hint}", device=dev,
            operation=op), established)
    if established:
        return DialFailure("stream_error", ProbeError(
            f"{dev}: gNMI target {where} broke the stream: {code.name}: {details}", device=dev,
            operation=op), established)
    if code == grpc.StatusCode.UNAVAILABLE:
        if "refused" in low:
            reason, what = "refused", "refused the connection (is gNMI enabled, on this port?)"
        elif "socket closed" in low:
            reason, what = "closed", "closed the connection at once"
            if target.config.insecure:
                what += (" (a TLS-only target does this to plaintext: drop insecure: true and "
                         "set tls:)")
        else:
            reason, what = "unreachable", "is unreachable"
        return DialFailure(reason, ProbeError(f"{dev}: gNMI target {where} {what}: {details}",
                                              device=dev, operation=op))
    return DialFailure("protocol", ProbeError(
        f"{dev}: gNMI with {where} failed: {code.name}: {details}", device=dev, operation=op))


# --- the thread side ---------------------------------------------------------------------------


class Handoff:
    """A bounded queue from one thread to the event loop.

    The thread blocks in :meth:`put` while ``size`` items wait (and gives up once the
    hand-off is closed); the loop takes everything waiting at once and frees the slots.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._slots = threading.Semaphore(size)
        self._items: collections.deque[tuple[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self.closed = threading.Event()
        self.full = 0  # times the thread found the queue full (written by the thread only)

    def put(self, kind: str, payload: Any = None) -> bool:
        """From the thread. False once closed: the thread should stop."""
        if not self._slots.acquire(blocking=False):
            self.full += 1
            while not self._slots.acquire(timeout=0.25):
                if self.closed.is_set():
                    return False
        if self.closed.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._push, (kind, payload))
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _push(self, item: tuple[str, Any]) -> None:
        self._items.append(item)
        self._ready.set()

    def take(self, limit: int) -> list[tuple[str, Any]]:
        """From the loop: up to ``limit`` waiting items, oldest first (maybe none)."""
        items = self._items
        if len(items) <= limit:
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(limit)]
        for _ in batch:
            self._slots.release()
        return batch

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self) -> None:
        """Until something arrives or :meth:`wake` is called."""
        if not self._items:
            self._ready.clear()
            await self._ready.wait()

    def wake(self) -> None:
        self._ready.set()

    def close(self) -> None:
        self.closed.set()


class Worker:
    """The thread that makes one dial's blocking gRPC calls.

    It puts into the hand-off, in order: ``("capabilities", (response, encoding name))``,
    ``("get", response)`` or ``("get_failed", text)``, ``("subscribed", None)``, then
    ``("response", SubscribeResponse)`` for each one, and last ``("end", None)`` or
    ``("error", exception)``.
    """

    def __init__(self, target: Target, handoff: Handoff, name: str) -> None:
        self._target = target
        self._handoff = handoff
        self._lock = threading.Lock()
        self._channel: Any = None
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        with self._lock:
            self._channel = self._target.channel()
        self._thread.start()

    def abort(self) -> None:
        """From the loop: stop handing over, close the channel (cancelling its calls)."""
        self._handoff.close()
        with self._lock:
            channel = self._channel
        if channel is not None:
            channel.close()

    async def joined(self, timeout: float) -> bool:
        """Wait (on the loop) for the thread to end; False if it did not in ``timeout``."""
        if not self._thread.is_alive():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._done.wait()
        return not self._thread.is_alive() or self._done.is_set()

    def _main(self) -> None:
        put = self._handoff.put
        target = self._target
        md, timeout = target.metadata, target.config.connect_timeout
        try:
            stub = gNMIStub(self._channel)
            caps = stub.Capabilities(pb.CapabilityRequest(), metadata=md, timeout=timeout)
            encoding = choose_encoding(target, list(caps.supported_encodings))
            if not put("capabilities", (caps, encoding_names([encoding])[0])):
                return
            if target.config.initial_get:
                try:
                    reply = stub.Get(get_request(target.config, encoding), metadata=md,
                                     timeout=timeout)
                except grpc.RpcError as exc:
                    if exc.code() not in _OPTIONAL_GET:
                        raise
                    if not put("get_failed", f"{exc.code().name}: {exc.details()}"):
                        return
                else:
                    if not put("get", reply):
                        return
            request = subscribe_request(target.config, encoding)
            stream = stub.Subscribe(self._requests(request), metadata=md)
            if not put("subscribed"):
                return
            for response in stream:
                if not put("response", response):
                    return
            put("end")
        except Exception as exc:  # noqa: BLE001 -- handed to the loop, which decides
            if not self._handoff.closed.is_set():
                put("error", exc)
        finally:
            with self._lock:
                channel, self._channel = self._channel, None
            if channel is not None:
                channel.close()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                self._loop.call_soon_threadsafe(self._done.set)

    def _requests(self, first: Any) -> Iterator[Any]:
        """The Subscribe request stream: the subscription, then nothing until the dial is
        aborted (returning half-closes the call)."""
        yield first
        self._handoff.closed.wait()
