"""A small gNMI target for the demo: one device's interface states over plaintext gRPC on
loopback (grpc.aio on pygnmi's generated stubs).

It serves Capabilities, Get and Subscribe STREAM (SAMPLE and ON_CHANGE, with heartbeats)
for ``/interfaces/interface[name=...]/state/{oper-status,admin-status}``, and checks the
username/password metadata. ``set_oper_status`` changes a port; ON_CHANGE subscribers get
the new value at once. Values are JSON_IETF (or JSON, if asked), one Notification per
interface: the interface's ``state`` container as ``prefix``, the leaf name as the path.
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

__all__ = ["DemoGnmiTarget"]

Elem = tuple[str, tuple[tuple[str, str], ...]]
Key = tuple[Elem, ...]

_MODELS = (("openconfig-interfaces", "OpenConfig working group", "3.7.1"),)
_ENCODINGS = (pb.JSON_IETF, pb.JSON)


def _leaf(interface: str, name: str) -> Key:
    return (
        ("interfaces", ()),
        ("interface", (("name", interface),)),
        ("state", ()),
        (name, ()),
    )


def _to_path(key: Iterable[Elem]) -> Any:
    return pb.Path(elem=[pb.PathElem(name=name, key=dict(keys)) for name, keys in key])


def _from_path(path: Any) -> Key:
    return tuple((e.name.split(":")[-1], tuple(sorted(e.key.items()))) for e in path.elem)


def _matches(pattern: Key, leaf: Key) -> bool:
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


def _typed(value: Any, encoding: int) -> Any:
    raw = json.dumps(value).encode()
    return (
        pb.TypedValue(json_ietf_val=raw)
        if encoding == pb.JSON_IETF
        else pb.TypedValue(json_val=raw)
    )


@dataclass(eq=False)
class _Stream:
    """One Subscribe STREAM being served."""

    request: Any
    queue: asyncio.Queue[tuple[str, dict[Key, Any]]] = field(default_factory=asyncio.Queue)

    def wants(self, leaf: Key) -> Any | None:
        """The subscription of this stream that selects ``leaf``, if any."""
        prefix = _from_path(self.request.prefix)
        for sub in self.request.subscription:
            if _matches(prefix + _from_path(sub.path), leaf):
                return sub
        return None


class DemoGnmiTarget(gNMIServicer):  # type: ignore[misc]
    """One device's interfaces over gNMI: ``async with DemoGnmiTarget([...]) as target``
    listens on ``address`` (an OS-chosen port, ``target.port``)."""

    def __init__(
        self,
        interfaces: Iterable[str],
        *,
        address: str = "127.0.0.1",
        username: str,
        password: str,
    ) -> None:
        self.address = address
        self.username = username
        self.password = password
        self.port = 0
        self.leaves: dict[Key, str] = {}
        for name in interfaces:
            self.leaves[_leaf(name, "admin-status")] = "UP"
            self.leaves[_leaf(name, "oper-status")] = "UP"
        self.rejected = 0  # RPCs refused for bad credentials
        self._streams: set[_Stream] = set()
        self._server: Any = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> int:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        add_gNMIServicer_to_server(self, server)
        bound = server.add_insecure_port(f"{self.address}:0")
        if not bound:
            raise OSError(f"the demo gNMI target could not bind {self.address}")
        await server.start()
        self.port = int(bound)
        self._server = server
        return self.port

    async def stop(self, grace: float | None = 0.5) -> None:
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

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # --- the control ------------------------------------------------------------------------

    def set_oper_status(self, interface: str, up: bool) -> None:
        """Take a port down or bring it back; ON_CHANGE subscribers hear it at once."""
        leaf = _leaf(interface, "oper-status")
        if leaf not in self.leaves:
            raise KeyError(f"no interface {interface!r} on this gNMI target")
        value = "UP" if up else "DOWN"
        if self.leaves[leaf] == value:
            return
        self.leaves[leaf] = value
        for stream in list(self._streams):
            sub = stream.wants(leaf)
            if sub is not None and sub.mode != pb.SAMPLE:
                stream.queue.put_nowait(("update", {leaf: value}))

    # --- RPCs ---------------------------------------------------------------------------------

    async def Capabilities(self, request: Any, context: Any) -> Any:
        await self._authorize(context)
        return pb.CapabilityResponse(
            supported_models=[
                pb.ModelData(name=n, organization=o, version=v) for n, o, v in _MODELS
            ],
            supported_encodings=list(_ENCODINGS),
            gNMI_version="0.8.0",
        )

    async def Get(self, request: Any, context: Any) -> Any:
        await self._authorize(context)
        if request.encoding not in _ENCODINGS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported encoding")
        prefix = _from_path(request.prefix)
        leaves = {
            leaf: value
            for leaf, value in self.leaves.items()
            if any(_matches(prefix + _from_path(p), leaf) for p in request.path)
        }
        return pb.GetResponse(notification=list(self._notifications(leaves, request.encoding)))

    async def Subscribe(self, request_iterator: Any, context: Any) -> None:
        await self._authorize(context)
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        sl = first.subscribe
        if sl.mode != pb.SubscriptionList.STREAM:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "only STREAM subscriptions")
        if sl.encoding not in _ENCODINGS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported encoding")
        stream = _Stream(sl)
        self._streams.add(stream)
        tasks = [asyncio.create_task(self._read(requests, stream))]
        try:
            if not sl.updates_only:
                wanted = {k: v for k, v in self.leaves.items() if stream.wants(k) is not None}
                await self._send(context, wanted, sl.encoding)
            await context.write(pb.SubscribeResponse(sync_response=True))
            for sub in sl.subscription:
                every = sub.sample_interval if sub.mode == pb.SAMPLE else sub.heartbeat_interval
                if every:
                    tasks.append(asyncio.create_task(self._tick(stream, sub, every / 1e9)))
            while True:
                kind, leaves = await stream.queue.get()
                if kind == "end":
                    return
                await self._send(context, leaves, sl.encoding)
        finally:
            self._streams.discard(stream)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- internals ------------------------------------------------------------------------------

    async def _authorize(self, context: Any) -> None:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if md.get("username") != self.username or md.get("password") != self.password:
            self.rejected += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")

    @staticmethod
    async def _read(requests: AsyncIterator[Any], stream: _Stream) -> None:
        """Drain the client's side; when it ends (or breaks), so does the stream."""
        try:
            async for _ in requests:
                pass
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        finally:
            stream.queue.put_nowait(("end", {}))

    async def _tick(self, stream: _Stream, sub: Any, every: float) -> None:
        """Resend the subscription's leaves every ``every`` seconds (samples, heartbeats)."""
        pattern = _from_path(stream.request.prefix) + _from_path(sub.path)
        while True:
            await asyncio.sleep(max(every, 0.1))
            leaves = {leaf: v for leaf, v in self.leaves.items() if _matches(pattern, leaf)}
            if leaves:
                stream.queue.put_nowait(("update", leaves))

    async def _send(self, context: Any, leaves: dict[Key, Any], encoding: int) -> None:
        for n in self._notifications(leaves, encoding):
            await context.write(pb.SubscribeResponse(update=n))

    @staticmethod
    def _notifications(leaves: dict[Key, Any], encoding: int) -> Iterator[Any]:
        now = time.time_ns()
        groups: dict[Key, list[Any]] = {}
        for leaf, value in leaves.items():
            groups.setdefault(leaf[:-1], []).append(
                pb.Update(path=_to_path(leaf[-1:]), val=_typed(value, encoding))
            )
        for parent, ups in groups.items():
            yield pb.Notification(timestamp=now, prefix=_to_path(parent), update=ups)
