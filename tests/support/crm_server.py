"""A CRM recommendations endpoint on loopback: ``POST /api/recommendations``.

Takes ``{"recommendation_id", "subscriber", "offer_code", "reason", "evidence", "source"}``
(strings, ``evidence`` an object, nothing else) with ``Idempotency-Key`` equal to
``recommendation_id``; answers 201 ``{"id", "status": "accepted"}``, or 200 with the same
id for a key it has seen (not counted twice); 400 without the key, 422 for a bad body,
404 for subscribers in ``unknown``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, new_id

FIELDS = {"recommendation_id", "subscriber", "offer_code", "reason", "evidence", "source"}


class CrmServer(FakeService):
    prefix = "/api"

    def __init__(self, *, unknown: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.unknown = unknown or set()
        self.accepted: dict[str, dict[str, Any]] = {}  # idempotency key -> recommendation

    @property
    def url(self) -> str:
        return self.base_url + "/recommendations"

    def setup_routes(self) -> None:
        self.route("POST", "/recommendations", self._post)

    async def _post(self, request: web.Request, body: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self.error(400, "Idempotency-Key is required")
        if not isinstance(body, dict) or set(body) != FIELDS:
            return self.error(422, f"fields must be exactly {sorted(FIELDS)}")
        if any(not isinstance(body[k], str) or not body[k] for k in FIELDS - {"evidence"}):
            return self.error(422, "text fields must be non-empty strings")
        if not isinstance(body["evidence"], dict) or body["recommendation_id"] != key:
            return self.error(422, "evidence must be an object; recommendation_id = key")
        if body["subscriber"] in self.unknown:
            return self.error(404, f"unknown subscriber {body['subscriber']}")
        with self.lock:
            seen = self.accepted.get(key)
            if seen is not None:
                return web.json_response({"id": seen["id"], "status": "accepted"})
            rec = self.accepted[key] = {**body, "id": new_id()}
        return web.json_response({"id": rec["id"], "status": "accepted"}, status=201)
