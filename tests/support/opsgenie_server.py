"""An Opsgenie Alert API v2 on loopback.

- ``Authorization: GenieKey <key>`` with a known key, else 401.
- ``POST /v2/alerts``: ``message`` required (at most 130 characters); ``alias`` <= 512,
  ``description`` <= 15000, ``entity`` <= 512, ``source``/``user`` <= 100, ``note`` <=
  25000; ``priority`` P1-P5; ``tags`` at most 20 of <= 50 characters; ``details`` an
  object of strings; ``responders`` items with ``type`` team/user/escalation/schedule and
  one of ``id``/``name``/``username``; unknown fields are rejected. An open alert with the
  same alias is de-duplicated (its ``count`` grows), as Opsgenie does.
- ``POST /v2/alerts/{identifier}/close`` and ``/notes`` with ``identifierType`` id / alias
  / tiny (default id); ``notes`` needs ``note``.
Accepted requests get 202 ``{"result": "Request will be processed", "took", "requestId"}``;
invalid ones 422 ``{"message", "errors", "took", "requestId"}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, new_id

CREATE = {"message", "alias", "description", "responders", "visibleTo", "actions", "tags",
          "details", "entity", "source", "priority", "user", "note"}
ACTION = {"user", "source", "note"}
LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512, "source": 100,
          "user": 100, "note": 25000}


class OpsgenieServer(FakeService):
    def __init__(self, *, api_keys: set[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.api_keys = api_keys
        self.alerts: dict[str, dict[str, Any]] = {}  # alias -> alert

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        return web.json_response({"message": message, "took": 0.001, "requestId": new_id(),
                                  **extra}, status=status)

    def setup_routes(self) -> None:
        self.route("POST", "/v2/alerts", self._create)
        self.route("POST", "/v2/alerts/{ident}/close", self._close)
        self.route("POST", "/v2/alerts/{ident}/notes", self._note)

    def _accepted(self) -> web.Response:
        return web.json_response({"result": "Request will be processed", "took": 0.002,
                                  "requestId": new_id()}, status=202)

    def _denied(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("GenieKey ") or auth[len("GenieKey "):] not in self.api_keys:
            return self.error(401, "Could not authenticate")
        if request.content_type != "application/json":
            return self.error(415, "Content-Type must be application/json")
        return None

    def _limits(self, body: dict[str, Any]) -> dict[str, str]:
        errs = {}
        for k, n in LIMITS.items():
            if k in body and (not isinstance(body[k], str) or len(body[k]) > n):
                errs[k] = f"{k} must be a string of at most {n} characters"
        return errs

    async def _create(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        if not isinstance(body, dict):
            return self.error(422, "Request body is not processable")
        errs = {k: "unknown field" for k in set(body) - CREATE}
        if not isinstance(body.get("message"), str) or not body["message"].strip():
            errs["message"] = "Message can not be empty."
        errs.update(self._limits(body))
        if "priority" in body and body["priority"] not in {"P1", "P2", "P3", "P4", "P5"}:
            errs["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        tags = body.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 20 or any(
                not isinstance(t, str) or len(t) > 50 for t in tags):
            errs["tags"] = "at most 20 tags of at most 50 characters"
        details = body.get("details", {})
        if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
            errs["details"] = "details must be a map of strings"
        for r in body.get("responders", []):
            refs = [k for k in ("id", "name", "username") if k in r]
            if r.get("type") not in {"team", "user", "escalation", "schedule"} or len(refs) != 1:
                errs["responders"] = "responders need a type and one of id, name, username"
        if errs:
            return self.error(422, "Request body is not processable. Please check the errors.",
                              errors=errs)
        alias = body.get("alias") or new_id()
        with self.lock:
            alert = self.alerts.get(alias)
            if alert is not None and alert["status"] == "open":
                alert["count"] += 1
            else:
                self.alerts[alias] = {**body, "status": "open", "count": 1, "notes": []}
        return self._accepted()

    def _find(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        kind = request.query.get("identifierType", "id")
        if kind not in {"id", "alias", "tiny"}:
            return None, self.error(422, "identifierType must be id, alias or tiny")
        ident = request.match_info["ident"]
        with self.lock:
            if kind == "alias":
                return self.alerts.get(ident), None
            return None, None  # ids and tiny ids are never handed out here

    async def _close(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = body or {}
        if not isinstance(body, dict) or set(body) - ACTION or self._limits(body):
            return self.error(422, "Request body is not processable")
        alert, bad = self._find(request)
        if bad is not None:
            return bad
        if alert is not None:
            with self.lock:
                alert["status"] = "closed"
        return self._accepted()  # processed asynchronously: unknown aliases fail later

    async def _note(self, request: web.Request, body: Any) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        if not isinstance(body, dict) or set(body) - ACTION or self._limits(body) or not (
                isinstance(body.get("note"), str) and body["note"]):
            return self.error(422, "Request body is not processable", errors={"note": "required"})
        alert, bad = self._find(request)
        if bad is not None:
            return bad
        if alert is not None:
            with self.lock:
                alert["notes"].append(body["note"])
        return self._accepted()
