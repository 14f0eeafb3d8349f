"""Base of the fake-but-real HTTP services (TMF621, PagerDuty, Opsgenie, CRM): an aiohttp
server on a free loopback port, run by its own event loop in a thread so that sync and
async tests can both use it.

Every request is recorded (method, path, query, headers, parsed body, the status
answered), duplicates included. ``statuses`` scripts answers: each request takes the next
one (until the list is empty) *instead of* being handled -- a scripted 2xx is handled
normally; ``delay`` stalls every answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request, Any], Awaitable[web.Response]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    ts: float = field(default_factory=time.time)


class FakeService:
    """Subclasses add routes with :meth:`route` in :meth:`setup_routes`."""

    prefix = ""
    wait_timeout = 10.0  # seconds: wait_for's default

    def __init__(self, *, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=type(self).__name__,
                                        daemon=True)
        self._runner: web.AppRunner | None = None
        self._app = web.Application()

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> None:
        self.setup_routes()
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def setup() -> None:
            self._runner = web.AppRunner(self._app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = int(self._runner.addresses[0][1])
            self._ready.set()

        self._loop.run_until_complete(setup())
        self._loop.run_forever()

    # --- routes ------------------------------------------------------------------------

    def setup_routes(self) -> None:
        raise NotImplementedError

    def route(self, method: str, path: str, handler: Handler) -> None:
        async def wrapped(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            rec = Request(request.method, request.path, dict(request.query),
                          dict(request.headers), body)
            with self.lock:
                self.requests.append(rec)
                scripted = self.statuses.pop(0) if self.statuses else None
            if self.delay:
                await asyncio.sleep(self.delay)
            if scripted is not None and not 200 <= scripted < 300:
                resp = self.error(scripted, "scripted answer")
            else:
                resp = await handler(request, body)
            rec.status = resp.status
            return resp

        self._app.router.add_route(method, self.prefix + path, wrapped)

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        """The service's error body; subclasses answer in their API's shape."""
        return web.json_response({"error": message, **extra}, status=status)

    # --- queries -------------------------------------------------------------------------

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, predicate: Callable[[list[Request]], bool],
                 timeout: float | None = None) -> list[Request]:
        """Poll until ``predicate(requests)`` is true (``wait_timeout`` seconds unless
        ``timeout``); fail with what did arrive."""
        timeout = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if predicate(got):
                return got
            time.sleep(0.02)
        got = self.snapshot()
        raise AssertionError(f"{type(self).__name__}: condition not met within {timeout}s; "
                             f"got {self.summary(got)}")

    def summary(self, got: list[Request]) -> list[Any]:
        """What ``wait_for`` shows when it gives up."""
        return [(r.method, r.path, r.status) for r in got]


def new_id() -> str:
    return uuid.uuid4().hex
