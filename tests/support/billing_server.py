"""A TMF678 billing endpoint on loopback: ``POST {prefix}/appliedCustomerBillingRate``.

Takes an ``AppliedCustomerBillingRate`` credit (``@type``, ``billingAccount.id``,
``taxExcludedAmount`` with a ``unit`` and a negative ``value``) with ``Idempotency-Key``;
answers 201 with the stored rate (its own ``id``), or 200 with the same rate for a key it
has seen -- so ``credits`` holds what a billing system would book, while ``requests``
(every POST, duplicates included) is what was sent. 400 without the key, 422 for a bad
body, 404 for billing accounts in ``unknown``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, new_id


class BillingServer(FakeService):
    prefix = "/tmf-api/customerBillManagement/v4"

    def __init__(self, *, unknown: set[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.unknown = unknown or set()
        self.credits: dict[str, dict[str, Any]] = {}  # idempotency key -> booked rate

    def setup_routes(self) -> None:
        self.route("POST", "/appliedCustomerBillingRate", self._post)

    def posts(self) -> list[Any]:
        return [r for r in self.snapshot() if r.method == "POST"]

    async def _post(self, request: web.Request, body: Any) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return self.error(400, "Idempotency-Key is required")
        if not isinstance(body, dict) or body.get("@type") != "AppliedCustomerBillingRate":
            return self.error(422, "@type must be AppliedCustomerBillingRate")
        amount = body.get("taxExcludedAmount") or {}
        account = (body.get("billingAccount") or {}).get("id")
        if not isinstance(amount.get("value"), int | float) or amount["value"] >= 0 \
                or not amount.get("unit") or not account:
            return self.error(422, "a credit needs billingAccount.id and a negative "
                                   "taxExcludedAmount {unit, value}")
        if account in self.unknown:
            return self.error(404, f"unknown billing account {account}")
        with self.lock:
            seen = self.credits.get(key)
            if seen is not None:
                return web.json_response(seen)
            rate = self.credits[key] = {**body, "id": "acbr-" + new_id()[:12],
                                        "clientId": body.get("id")}
        return web.json_response(rate, status=201)

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        """TMF's Error shape."""
        return web.json_response({"code": str(status), "reason": message, **extra},
                                 status=status)
