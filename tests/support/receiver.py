"""A real HTTP receiver on loopback that records every webhook delivery.

It runs its own event loop in a thread, so synchronous tests (which start the daemon as
a subprocess) and async tests can both use it. It does *not* deduplicate: it counts every
delivery, so "exactly once" assertions mean what they say.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: Any
    ts: float = field(default_factory=time.time)


class WebhookReceiver:
    def __init__(self, *, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        """``statuses``: answers to give, in order (then 200); ``delay``: seconds to stall."""
        self.deliveries: list[Delivery] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="webhook-receiver", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._lock = threading.Lock()

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("webhook receiver did not start within 10 s")

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with self._lock:
                self.deliveries.append(Delivery(request.path, dict(request.headers), body))
                status = self.statuses.pop(0) if self.statuses else 200
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.json_response({"ok": status < 300}, status=status)

        async def setup() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(setup())
        self._loop.run_forever()

    # --- queries -----------------------------------------------------------------------

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def count_by_key(self) -> Counter[str]:
        return Counter(d.headers.get("Idempotency-Key", "") for d in self.snapshot())

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Delivery]:
        """Poll until ``predicate(deliveries)`` is true; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if predicate(got):
                return got
            time.sleep(0.05)
        got = self.snapshot()
        summary = [(d.body.get("event"), d.body.get("incident", {}).get("root"))
                   if isinstance(d.body, dict) else d.body for d in got]
        raise AssertionError(f"receiver condition not met within {timeout}s; got {summary}")
