"""An SMS gateway on loopback that takes TMF681 CommunicationMessages.

``POST /tmf-api/communicationManagement/v4/communicationMessage`` with ``@type``
CommunicationMessage, ``messageType`` SMS, a non-empty ``content``, a ``sender`` object
and ``receiver`` a non-empty list of objects with a ``phoneNumber``; answers 201 with the
message (an ``id`` and ``state: "inProgress"``), or 200 with the same message for an
``Idempotency-Key`` it has seen (sent once). 400 without the key, 422 for a bad body.
Every request is counted (``requests``), duplicates included; ``sent`` holds one message
per key. Scripted 429 and 503 answers carry ``Retry-After: <retry_after>``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, new_id


class SmsGateway(FakeService):
    prefix = "/tmf-api/communicationManagement/v4"

    def __init__(self, *, retry_after: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.retry_after = retry_after
        self.sent: dict[str, dict[str, Any]] = {}  # idempotency key -> message

    @property
    def url(self) -> str:
        return self.base_url + "/communicationMessage"

    def setup_routes(self) -> None:
        self.route("POST", "/communicationMessage", self._post)

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        headers = ({"Retry-After": str(self.retry_after)}
                   if self.retry_after is not None and status in (429, 503) else None)
        return web.json_response({"code": str(status), "reason": message, **extra},
                                 status=status, headers=headers)

    async def _post(self, request: web.Request, body: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self.error(400, "Idempotency-Key is required")
        problem = _problem(body)
        if problem:
            return self.error(422, problem)
        with self.lock:
            seen = self.sent.get(key)
            if seen is not None:
                return web.json_response(seen)
            msg = self.sent[key] = {**body, "id": new_id(), "state": "inProgress"}
        return web.json_response(msg, status=201)

    def texts_to(self, phone: str) -> list[str]:
        """Contents sent (once per key) to ``phone``."""
        with self.lock:
            return [m["content"] for m in self.sent.values()
                    if any(r.get("phoneNumber") == phone for r in m["receiver"])]


def _problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if body.get("@type") != "CommunicationMessage" or body.get("messageType") != "SMS":
        return "@type must be CommunicationMessage and messageType SMS"
    if not isinstance(body.get("content"), str) or not body["content"]:
        return "content is required"
    if not isinstance(body.get("sender"), dict) or not body["sender"]:
        return "sender is required"
    rx = body.get("receiver")
    if (not isinstance(rx, list) or not rx
            or not all(isinstance(r, dict) and r.get("phoneNumber") for r in rx)):
        return "receiver must list at least one {phoneNumber}"
    return None
