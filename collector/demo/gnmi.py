"""A gNMI target on loopback: grpc.aio on pygnmi's generated stubs. The demo runs one
(``DemoGnmiTarget``: one device's interface states) and the tests drive the same code.

It serves Capabilities, Get and Subscribe (STREAM with SAMPLE / ON_CHANGE and heartbeats,
ONCE, POLL) from a flat store of leaves that the caller drives::

    async with GnmiTarget(username="netreflex", password="s3cret") as target:
        target.set("/interfaces/interface[name=Ethernet1]/state/oper-status", "UP")
        ...                                   # point a client at 127.0.0.1:target.port
        target.set("/interfaces/interface[name=Ethernet1]/state/oper-status", "DOWN")
        target.go_silent()                    # open streams stop sending, stay open
        await target.stop()                   # the device goes away ...
        await target.start()                  # ... and comes back on the same port

Leaves are sent the way many targets send them: one Notification per parent container,
the container as ``prefix`` and the leaf name as the update's path, with
``Notification.timestamp`` always set (pygnmi's parser fails on 0). Values are JSON_IETF
(RFC 7951: 64-bit integers as strings) unless the client asks for JSON or PROTO. Module
prefixes on requested path elements (``openconfig-interfaces:interfaces``) are ignored.

It is written independently of ``probes.gnmi`` (its own path parser and encoder), so the
probe is checked against something it does not share code with. Streams end when the
client's request iterator ends (pygnmi's ``Subscriber.close()`` only half-closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import grpc  # type: ignore[import-untyped]
from pygnmi.spec.v080 import gnmi_pb2 as pb  # type: ignore[import-untyped]
from pygnmi.spec.v080.gnmi_pb2_grpc import (  # type: ignore[import-untyped]
    add_gNMIServicer_to_server,
    gNMIServicer,
)

__all__ = ["DemoGnmiTarget", "GnmiTarget", "parse_path"]

Elem = tuple[str, tuple[tuple[str, str], ...]]
Key = tuple[Elem, ...]

MODELS = (
    ("openconfig-interfaces", "OpenConfig working group", "3.7.1"),
    ("openconfig-network-instance", "OpenConfig working group", "4.4.1"),
    ("openconfig-platform", "OpenConfig working group", "0.24.0"),
    ("openconfig-platform-transceiver", "OpenConfig working group", "0.14.0"),
    ("openconfig-system", "OpenConfig working group", "2.1.0"),
    ("openconfig-alarms", "OpenConfig working group", "0.3.2"),
)


def parse_path(text: str) -> Key:
    """``/a/b[k=v]/c`` -> ((a, ()), (b, ((k, v),)), (c, ())); ``]`` and ``\\`` escaped."""
    elems: list[Elem] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "/":
            i += 1
            continue
        j = i
        while j < n and text[j] not in "/[":
            j += 1
        name = text[i:j]
        keys: list[tuple[str, str]] = []
        while j < n and text[j] == "[":
            eq = text.index("=", j)
            k = text[j + 1 : eq]
            j = eq + 1
            value = []
            while text[j] != "]":
                if text[j] == "\\":
                    j += 1
                value.append(text[j])
                j += 1
            keys.append((k, "".join(value)))
            j += 1
        elems.append((name, tuple(sorted(keys))))
        i = j
    return tuple(elems)


def to_path(key: Iterable[Elem]) -> Any:
    return pb.Path(elem=[pb.PathElem(name=name, key=dict(keys)) for name, keys in key])


def from_path(path: Any) -> Key:
    return tuple((e.name.split(":")[-1], tuple(sorted(e.key.items()))) for e in path.elem)


def matches(pattern: Key, leaf: Key) -> bool:
    """``pattern`` selects ``leaf``: a prefix of it, where a missing key or ``*`` is any."""
    if len(pattern) > len(leaf):
        return False
    for (pname, pkeys), (lname, lkeys) in zip(pattern, leaf, strict=False):
        if pname not in ("*", lname):
            return False
        have = dict(lkeys)
        if any(v != "*" and have.get(k) != v for k, v in pkeys):
            return False
    return True


def typed(value: Any, encoding: int) -> Any:
    if encoding == pb.PROTO:
        if isinstance(value, bool):
            return pb.TypedValue(bool_val=value)
        if isinstance(value, int):
            return pb.TypedValue(uint_val=value) if value >= 0 else pb.TypedValue(int_val=value)
        if isinstance(value, float):
            return pb.TypedValue(double_val=value)
        return pb.TypedValue(string_val=str(value))
    if encoding == pb.JSON_IETF:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**31:
            value = str(value)  # RFC 7951 6.1: 64-bit integers are JSON strings
        return pb.TypedValue(json_ietf_val=json.dumps(value).encode())
    return pb.TypedValue(json_val=json.dumps(value).encode())


@dataclass(eq=False)
class _Stream:
    """One Subscribe RPC being served."""

    request: Any
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    muted: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, leaf: Key) -> Any | None:
        """The subscription (if any) of this stream that selects ``leaf``."""
        prefix = from_path(self.request.prefix)
        for sub in self.request.subscription:
            if matches(prefix + from_path(sub.path), leaf):
                return sub
        return None


class GnmiTarget(gNMIServicer):  # type: ignore[misc]
    """A scripted gNMI target; see the module docstring."""

    def __init__(
        self,
        *,
        address: str = "127.0.0.1",
        username: str | None = None,
        password: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        client_ca: bytes | None = None,
        use_prefix: bool = True,
        encodings: Iterable[int] = (pb.JSON, pb.JSON_IETF, pb.PROTO),
    ) -> None:
        """``tls`` is (private key PEM, certificate chain PEM); ``client_ca`` requires
        client certificates signed by it; ``address``: where it listens (a loopback
        address)."""
        self.address = address
        self.username = username
        self.password = password
        self.tls = tls
        self.client_ca = client_ca
        self.use_prefix = use_prefix
        self.encodings = tuple(encodings)
        self.leaves: dict[Key, Any] = {}
        self.port = 0
        self.metadata: list[tuple[str, dict[str, str]]] = []  # (rpc, invocation metadata)
        self.subscriptions: list[Any] = []  # every SubscriptionList received
        self.get_requests: list[Any] = []
        self.sent: int = 0  # SubscribeResponses written
        self.get_unimplemented = False
        self.rejected = 0  # RPCs refused for bad credentials
        self._streams: set[_Stream] = set()
        self._server: Any = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> int:
        """Listen on ``address`` (a free port the first time, the same one after
        ``stop``)."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        add_gNMIServicer_to_server(self, server)
        address = f"{self.address}:{self.port if port is None else port}"
        if self.tls is None:
            bound = server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials(
                [self.tls],
                root_certificates=self.client_ca,
                require_client_auth=self.client_ca is not None,
            )
            bound = server.add_secure_port(address, creds)
        if not bound:
            raise OSError(f"gNMI target could not bind {address}")
        await server.start()
        self.port = int(bound)
        self._server = server
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening and break every open stream (the device goes away)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        self._streams.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- what the test drives ---------------------------------------------------------------

    def set(self, path: str, value: Any) -> None:
        """Change a leaf; ON_CHANGE subscribers get it at once."""
        leaf = parse_path(path)
        changed = self.leaves.get(leaf) != value
        self.leaves[leaf] = value
        if not changed:
            return
        for stream in list(self._streams):
            sub = stream.wants(leaf)
            if sub is not None and sub.mode != pb.SAMPLE:
                stream.queue.put_nowait(("update", {leaf: value}))  # this value, in order

    def delete(self, path: str) -> None:
        """Remove every leaf under ``path``; subscribers get a delete of ``path``."""
        gone = parse_path(path)
        for leaf in [leaf for leaf in self.leaves if matches(gone, leaf)]:
            del self.leaves[leaf]
        for stream in list(self._streams):
            if stream.request.mode == pb.SubscriptionList.STREAM:
                stream.queue.put_nowait(("delete", gone))

    def go_silent(self) -> None:
        """Every open stream stops sending (no updates, no samples) but stays open, as a
        target with a stuck telemetry process does. New streams are served normally."""
        for stream in self._streams:
            stream.muted = True

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # --- RPCs ---------------------------------------------------------------------------------

    async def Capabilities(self, request: Any, context: Any) -> Any:
        await self._authorize("Capabilities", context)
        return pb.CapabilityResponse(
            supported_models=[
                pb.ModelData(name=n, organization=o, version=v) for n, o, v in MODELS
            ],
            supported_encodings=list(self.encodings),
            gNMI_version="0.8.0",
        )

    async def Get(self, request: Any, context: Any) -> Any:
        await self._authorize("Get", context)
        self.get_requests.append(request)
        if self.get_unimplemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Get is not supported")
        if request.encoding not in self.encodings:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported encoding")
        prefix = from_path(request.prefix)
        leaves = {
            leaf: value
            for leaf, value in self.leaves.items()
            if any(matches(prefix + from_path(p), leaf) for p in request.path)
        }
        return pb.GetResponse(notification=list(self._notifications(leaves, request.encoding)))

    async def Subscribe(self, request_iterator: Any, context: Any) -> None:
        await self._authorize("Subscribe", context)
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        sl = first.subscribe
        self.subscriptions.append(sl)
        if sl.encoding not in self.encodings:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported encoding")
        stream = _Stream(sl)
        tasks: list[asyncio.Task[None]] = []
        self._streams.add(stream)
        try:
            if sl.mode == pb.SubscriptionList.ONCE:
                await self._send_all(stream, context)
                await self._write(stream, context, pb.SubscribeResponse(sync_response=True))
                return
            tasks.append(asyncio.create_task(self._read(requests, stream)))
            if sl.mode == pb.SubscriptionList.POLL:
                await self._send_all(stream, context)
                await self._write(stream, context, pb.SubscribeResponse(sync_response=True))
            else:
                if not sl.updates_only:
                    await self._send_all(stream, context)
                await self._write(stream, context, pb.SubscribeResponse(sync_response=True))
                for sub in sl.subscription:
                    every = sub.sample_interval if sub.mode == pb.SAMPLE else sub.heartbeat_interval
                    if every:
                        tasks.append(asyncio.create_task(self._tick(stream, sub, every / 1e9)))
            await self._serve(stream, context)
        finally:
            self._streams.discard(stream)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- internals ------------------------------------------------------------------------------

    async def _authorize(self, rpc: str, context: Any) -> None:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.metadata.append((rpc, md))
        if self.username is None:
            return
        if md.get("username") != self.username or md.get("password") != self.password:
            self.rejected += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")

    async def _read(self, requests: AsyncIterator[Any], stream: _Stream) -> None:
        try:
            async for req in requests:
                if req.HasField("poll"):
                    stream.queue.put_nowait(("poll", None))
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        finally:
            stream.ended.set()
            stream.queue.put_nowait(("end", None))

    async def _tick(self, stream: _Stream, sub: Any, every: float) -> None:
        pattern = from_path(stream.request.prefix) + from_path(sub.path)
        while True:
            await asyncio.sleep(every)
            leaves = {leaf: v for leaf, v in self.leaves.items() if matches(pattern, leaf)}
            if leaves:
                stream.queue.put_nowait(("update", leaves))

    async def _serve(self, stream: _Stream, context: Any) -> None:
        while True:
            kind, what = await stream.queue.get()
            if kind == "end":
                return
            if kind == "poll":
                await self._send_all(stream, context)
                await self._write(stream, context, pb.SubscribeResponse(sync_response=True))
            elif kind == "update":
                for n in self._notifications(what, stream.request.encoding):
                    await self._write(stream, context, pb.SubscribeResponse(update=n))
            elif kind == "delete":
                n = pb.Notification(timestamp=time.time_ns(), delete=[to_path(what)])
                await self._write(stream, context, pb.SubscribeResponse(update=n))

    async def _send_all(self, stream: _Stream, context: Any) -> None:
        leaves = {leaf: v for leaf, v in self.leaves.items() if stream.wants(leaf) is not None}
        for n in self._notifications(leaves, stream.request.encoding):
            await self._write(stream, context, pb.SubscribeResponse(update=n))

    async def _write(self, stream: _Stream, context: Any, response: Any) -> None:
        if stream.muted:
            return
        await context.write(response)
        self.sent += 1

    def _notifications(self, leaves: dict[Key, Any], encoding: int) -> Iterator[Any]:
        now = time.time_ns()
        if not self.use_prefix:
            ups = [pb.Update(path=to_path(leaf), val=typed(value, encoding))
                   for leaf, value in leaves.items()]
            if ups:
                yield pb.Notification(timestamp=now, update=ups)
            return
        groups: dict[Key, list[Any]] = {}
        for leaf, value in leaves.items():
            groups.setdefault(leaf[:-1], []).append(
                pb.Update(path=to_path(leaf[-1:]), val=typed(value, encoding))
            )
        for parent, ups in groups.items():
            yield pb.Notification(timestamp=now, prefix=to_path(parent), update=ups)


def _oper_status(interface: str) -> str:
    return f"/interfaces/interface[name={interface}]/state/oper-status"


class DemoGnmiTarget(GnmiTarget):
    """One device's interfaces for the demo: admin and oper status of each, all up;
    ``set_oper_status`` takes a port down or brings it back (ON_CHANGE subscribers hear
    it at once)."""

    def __init__(self, interfaces: Iterable[str], *, address: str = "127.0.0.1",
                 username: str, password: str) -> None:
        super().__init__(address=address, username=username, password=password,
                         encodings=(pb.JSON_IETF, pb.JSON))
        for name in interfaces:
            self.set(f"/interfaces/interface[name={name}]/state/admin-status", "UP")
            self.set(_oper_status(name), "UP")

    def set_oper_status(self, interface: str, up: bool) -> None:
        if parse_path(_oper_status(interface)) not in self.leaves:
            raise KeyError(f"no interface {interface!r} on this gNMI target")
        self.set(_oper_status(interface), "UP" if up else "DOWN")

    async def stop(self, grace: float | None = 0.5) -> None:
        await super().stop(grace)
