"""A PagerDuty Events API v2 endpoint on loopback: ``POST /v2/enqueue``.

Checks what the real one documents: a JSON object with ``routing_key`` (one of the
known integration keys, 32 characters) and ``event_action`` (trigger / acknowledge /
resolve); ``dedup_key`` at most 255 characters and required for acknowledge/resolve; a
trigger needs ``payload`` with ``summary`` (1-1024 chars), ``source`` and ``severity``
(critical / error / warning / info), and optional ``timestamp`` (ISO 8601), ``component``,
``group``, ``class``, ``custom_details`` (an object). Answers 202
``{"status": "success", "message": "Event processed", "dedup_key": ...}``; an invalid
event gets 400 ``{"status": "invalid event", "message": ..., "errors": [...]}``.
Alerts are kept by dedup_key: a trigger with a known open key does not open another one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService, new_id

SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}
TOP = {"routing_key", "event_action", "dedup_key", "payload", "client", "client_url",
       "links", "images"}
PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class",
           "custom_details"}


class PagerDutyServer(FakeService):
    def __init__(self, *, routing_keys: set[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.routing_keys = routing_keys
        self.alerts: dict[str, dict[str, Any]] = {}  # dedup_key -> {status, triggers, ...}

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        if status == 400:
            return web.json_response({"status": "invalid event", "message": message,
                                      "errors": extra.get("errors", [message])}, status=400)
        return web.json_response({"status": "error", "message": message}, status=status)

    def setup_routes(self) -> None:
        self.route("POST", "/v2/enqueue", self._enqueue)

    def _problems(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body must be a JSON object"]
        errs = [f"unknown field {k!r}" for k in sorted(set(body) - TOP)]
        key = body.get("routing_key")
        if not isinstance(key, str) or len(key) != 32 or key not in self.routing_keys:
            errs.append("'routing_key' is invalid")
        action = body.get("event_action")
        if action not in ACTIONS:
            errs.append("'event_action' is missing or invalid")
        dedup = body.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
            errs.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not dedup:
            errs.append("'dedup_key' is required for acknowledge and resolve")
        if action == "trigger":
            p = body.get("payload")
            if not isinstance(p, dict):
                return [*errs, "'payload' is required for trigger"]
            errs += [f"unknown payload field {k!r}" for k in sorted(set(p) - PAYLOAD)]
            s = p.get("summary")
            if not isinstance(s, str) or not 0 < len(s) <= 1024:
                errs.append("'payload.summary' must be 1-1024 characters")
            if not isinstance(p.get("source"), str) or not p["source"]:
                errs.append("'payload.source' is required")
            if p.get("severity") not in SEVERITIES:
                errs.append("'payload.severity' must be one of critical, error, warning, info")
            if "timestamp" in p:
                try:
                    dt.datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00"))
                except ValueError:
                    errs.append("'payload.timestamp' is not ISO 8601")
            if "custom_details" in p and not isinstance(p["custom_details"], dict):
                errs.append("'payload.custom_details' must be an object")
        return errs

    async def _enqueue(self, request: web.Request, body: Any) -> web.Response:
        if request.content_type != "application/json":
            return self.error(400, "Content-Type must be application/json")
        errs = self._problems(body)
        if errs:
            return self.error(400, "Event object is invalid", errors=errs)
        dedup = body.get("dedup_key") or new_id()
        with self.lock:
            alert = self.alerts.get(dedup)
            if body["event_action"] == "trigger":
                if alert is None or alert["status"] == "resolved":
                    alert = self.alerts[dedup] = {"status": "triggered", "triggers": 0,
                                                  "payload": body["payload"]}
                alert["triggers"] += 1
            elif alert is not None:
                alert["status"] = ("resolved" if body["event_action"] == "resolve"
                                   else "acknowledged")
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": dedup}, status=202)
