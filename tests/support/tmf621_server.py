"""A TMF621 (Trouble Ticket API v4) server on loopback, strict about the request shapes.

- ``POST {prefix}/troubleTicket`` (``application/json``): ``description``, ``severity``
  and ``ticketType`` are mandatory; ``relatedEntity`` items need ``id``, ``role`` and
  ``@referredType``; ``relatedParty`` items ``id`` and ``@referredType``; ``note`` items
  ``text``; ``status`` one of the TMF621 states; unknown attributes are rejected.
  Answers 201 with the ticket (``id``, ``href``, ``status: acknowledged`` ...). A repeated
  ``Idempotency-Key`` gets the ticket it created the first time (201), no new ticket.
- ``GET {prefix}/troubleTicket/{id}[?fields=a,b]``: 200 or 404.
- ``PATCH {prefix}/troubleTicket/{id}``: ``application/merge-patch+json`` only (else 415);
  ``id``, ``href``, ``creationDate``, ``lastUpdate`` are not patchable (400); arrays are
  replaced, ``null`` removes (RFC 7386). 200 with the ticket, 404 for an unknown id.
- With ``token`` set, ``Authorization: Bearer <token>`` is required (401).
Errors use the TMF ``Error`` shape: ``{code, reason, message, status}``.
"""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService

STATES = {"acknowledged", "rejected", "pending", "held", "inProgress", "cancelled", "closed",
          "resolved"}
CREATE_FIELDS = {
    "name", "description", "severity", "ticketType", "priority", "status", "channel",
    "externalId", "expectedResolutionDate", "requestedResolutionDate", "resolutionDate",
    "statusChangeReason", "attachment", "note", "relatedEntity", "relatedParty",
    "troubleTicketRelationship", "@baseType", "@schemaLocation", "@type",
}
READ_ONLY = {"id", "href", "creationDate", "lastUpdate"}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Tmf621Server(FakeService):
    prefix = "/tmf-api/troubleTicket/v4"

    def __init__(self, *, token: str | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.token = token
        self.tickets: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self._seq = 0

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        return web.json_response({"code": str(status), "reason": reason, "message": message,
                                  "status": str(status)}, status=status)

    def setup_routes(self) -> None:
        self.route("POST", "/troubleTicket", self._create)
        self.route("GET", "/troubleTicket/{id}", self._get)
        self.route("PATCH", "/troubleTicket/{id}", self._patch)

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, "missing or wrong bearer token")
        return None

    # --- validation ----------------------------------------------------------------------

    def _check(self, body: dict[str, Any], *, create: bool) -> str | None:
        if create:
            unknown = set(body) - CREATE_FIELDS
            if unknown:
                return f"unknown attribute(s): {sorted(unknown)}"
            for f in ("description", "severity", "ticketType"):
                if not isinstance(body.get(f), str) or not body[f]:
                    return f"{f} is mandatory (a non-empty string)"
        for f in ("name", "description", "severity", "ticketType", "priority", "externalId",
                  "statusChangeReason"):
            if f in body and body[f] is not None and not isinstance(body[f], str):
                return f"{f} must be a string"
        if "status" in body and body["status"] not in STATES:
            return f"status must be one of {sorted(STATES)}"
        for e in body.get("relatedEntity") or []:
            if not (isinstance(e, dict) and all(isinstance(e.get(k), str) and e[k]
                                                for k in ("id", "role", "@referredType"))):
                return "relatedEntity items need id, role and @referredType"
        for p in body.get("relatedParty") or []:
            if not (isinstance(p, dict) and all(isinstance(p.get(k), str) and p[k]
                                                for k in ("id", "@referredType"))):
                return "relatedParty items need id and @referredType"
        for n in body.get("note") or []:
            if not (isinstance(n, dict) and isinstance(n.get("text"), str) and n["text"]):
                return "note items need text"
        return None

    # --- handlers ------------------------------------------------------------------------

    async def _create(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if request.content_type != "application/json":
            return self.error(415, "POST takes application/json")
        if not isinstance(body, dict):
            return self.error(400, "the body must be a JSON object")
        if (problem := self._check(body, create=True)) is not None:
            return self.error(400, problem)
        key = request.headers.get("Idempotency-Key")
        with self.lock:
            if key and key in self.by_key:
                return web.json_response(self.tickets[self.by_key[key]], status=201)
            self._seq += 1
            tid = f"TT-{self._seq:04d}"
            ticket = {**body, "id": tid, "href": f"{self.base_url}/troubleTicket/{tid}",
                      "creationDate": now(), "lastUpdate": now(),
                      "status": body.get("status", "acknowledged")}
            self.tickets[tid] = ticket
            if key:
                self.by_key[key] = tid
        return web.json_response(ticket, status=201)

    async def _get(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        with self.lock:
            ticket = self.tickets.get(request.match_info["id"])
        if ticket is None:
            return self.error(404, f"no trouble ticket {request.match_info['id']}")
        fields = request.query.get("fields")
        if fields:
            keep = {"id", "href", *fields.split(",")}
            ticket = {k: v for k, v in ticket.items() if k in keep}
        return web.json_response(ticket)

    async def _patch(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if request.content_type != "application/merge-patch+json":
            return self.error(415, "PATCH takes application/merge-patch+json")
        tid = request.match_info["id"]
        if not isinstance(body, dict):
            return self.error(400, "the body must be a JSON object")
        if READ_ONLY & set(body):
            return self.error(400, f"not patchable: {sorted(READ_ONLY & set(body))}")
        if set(body) - CREATE_FIELDS:
            return self.error(400, f"unknown attribute(s): {sorted(set(body) - CREATE_FIELDS)}")
        if (problem := self._check(body, create=False)) is not None:
            return self.error(400, problem)
        with self.lock:
            ticket = self.tickets.get(tid)
            if ticket is None:
                return self.error(404, f"no trouble ticket {tid}")
            for k, v in body.items():
                if v is None:
                    ticket.pop(k, None)
                else:
                    ticket[k] = v
            ticket["lastUpdate"] = now()
            self.patches.append((tid, body))
        return web.json_response(ticket)

    # --- queries -------------------------------------------------------------------------

    def ticket(self, tid: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.tickets[tid])

    def close_by_hand(self, tid: str) -> None:
        """What an operator closing the ticket in the ticketing system does."""
        with self.lock:
            self.tickets[tid]["status"] = "closed"
