"""A real HTTP receiver on loopback that records every webhook delivery.

A :class:`~tests.support.fake_http.FakeService` (its own event loop in a thread, so
synchronous tests that start the daemon as a subprocess and async tests can both use it)
that answers every POST. It does *not* deduplicate: it counts every delivery, so "exactly
once" assertions mean what they say.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, Request

Delivery = Request  # what the receiver recorded: path, headers, parsed body, ts, status


class WebhookReceiver(FakeService):
    """``statuses``: answers to give, in order (then 200); ``delay``: seconds to stall."""

    wait_timeout = 30.0

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def setup_routes(self) -> None:
        self.route("POST", "/{tail:.*}", self._accept)

    async def _accept(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response({"ok": True})

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        return web.json_response({"ok": False}, status=status)

    @property
    def deliveries(self) -> list[Delivery]:
        return self.snapshot()

    def count_by_key(self) -> Counter[str]:
        return Counter(d.headers.get("Idempotency-Key", "") for d in self.snapshot())

    def summary(self, got: list[Delivery]) -> list[Any]:
        return [(d.body.get("event"), d.body.get("incident", {}).get("root"))
                if isinstance(d.body, dict) else d.body for d in got]
