"""MQTT: incident events and action results as TMF688-style JSON events.

Each action publishes one event on the target's topic (a template; text values are made
safe for a topic level: ``/``, ``+``, ``#`` become ``_``, an empty value ``none``)::

    {"eventId": <action key>, "eventTime": ..., "eventType": "IncidentCreateEvent",
     "correlationId": <incident id>, "domain": "netreflex", "title": ..., "timeOccurred": ...,
     "reportingSystem": {...}, "event": {"incident": {...}}}

``eventType`` is ``IncidentCreateEvent`` (opened), ``IncidentAttributeValueChangeEvent``
(updated) or ``IncidentStateChangeEvent`` (resolved, merged); results published with
:meth:`MqttExecutor.publish_result` are ``ActionStateChangeEvent`` with ``event.action``:
the daemon publishes every action's result (each attempt's outcome, not ``wait``) through
every mqtt target whose ``result_topic`` is set (``publish_results``).
QoS 1 by default: the broker acknowledges each message; a subscriber may see a message
twice and drops duplicates on ``eventId``. One connection per executor, opened on first
use and re-opened once when a publish finds it broken. Broker unreachable → ``retry``;
user name or password refused → ``failed`` (fix the config or the broker's password file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import aiomqtt

from actions.targets import MqttTarget
from actions.templates import incident_variables, iso, render
from actions.types import ActionPlan, ActionResult, ExecutorContext

log = logging.getLogger(__name__)

EVENT_TYPES: Mapping[str, str] = {
    "opened": "IncidentCreateEvent",
    "updated": "IncidentAttributeValueChangeEvent",
    "resolved": "IncidentStateChangeEvent",
    "merged": "IncidentStateChangeEvent",
}
REPORTING_SYSTEM = {"id": "netreflex", "name": "netreflex", "@type": "ReportingResource"}
# CONNACK codes that mean "not with these credentials" (MQTT 3.1.1: 4, 5; 5.0: 0x86, 0x87)
AUTH_REFUSED = frozenset({4, 5, 0x86, 0x87, 0x8C})
_UNSAFE = re.compile(r"[/+#\x00]")
Sent = Literal["succeeded", "failed", "retry"]


def topic_level(text: str) -> str:
    return _UNSAFE.sub("_", text) or "none"


def incident_event(plan: ActionPlan, now: float) -> dict[str, Any]:
    inc: Mapping[str, Any] = plan.payload.get("incident") or {}
    return {
        "eventId": plan.key,
        "eventTime": iso(now),
        "eventType": EVENT_TYPES.get(plan.event, "IncidentAttributeValueChangeEvent"),
        "correlationId": plan.incident_id,
        "domain": "netreflex",
        "title": str(inc.get("title") or plan.incident_id),
        "description": f"incident {plan.incident_id} {plan.event} (rule {plan.rule})",
        "timeOccurred": iso(plan.payload.get("event_ts")) or iso(now),
        "reportingSystem": REPORTING_SYSTEM,
        "event": {"incident": dict(inc)},
    }


def result_event(result: ActionResult, incident_id: str | None, now: float) -> dict[str, Any]:
    return {
        "eventId": uuid.uuid4().hex,
        "eventTime": iso(now),
        "eventType": "ActionStateChangeEvent",
        "correlationId": incident_id or result.key,
        "domain": "netreflex",
        "title": f"action {result.key} on {result.target}: {result.outcome}",
        "timeOccurred": iso(now),
        "reportingSystem": REPORTING_SYSTEM,
        "event": {"action": {
            "key": result.key, "incidentId": incident_id, "target": result.target,
            "executor": result.executor, "outcome": result.outcome, "detail": result.detail,
            "statusCode": result.status_code, "retryAfter": result.retry_after,
        }},
    }


def result_publishers(executors: Mapping[str, object]) -> list[MqttExecutor]:
    """The mqtt executors that publish action results (``result_topic`` set)."""
    return [ex for ex in executors.values()
            if isinstance(ex, MqttExecutor) and ex.target.result_topic is not None]


async def publish_results(publishers: Sequence[MqttExecutor], result: ActionResult,
                          incident_id: str | None) -> None:
    """Publish ``result`` through each of ``publishers``; one broker's failure is logged
    and does not stop the others (results are best effort: not journaled, not retried)."""
    sent = await asyncio.gather(*(ex.publish_result(result, incident_id)
                                  for ex in publishers), return_exceptions=True)
    for ex, r in zip(publishers, sent, strict=True):
        if isinstance(r, asyncio.CancelledError):
            raise r
        if isinstance(r, BaseException):
            log.error("action result not published target=%s action=%s: %s: %s", ex.name,
                      result.key, type(r).__name__, r)
        elif r.outcome != "succeeded":
            log.warning("action result not published target=%s action=%s: %s", ex.name,
                        result.key, r.detail)


def tls_context(target: MqttTarget) -> ssl.SSLContext | None:
    tls = target.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def _auth_refused(exc: aiomqtt.MqttError) -> bool:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    return isinstance(exc, aiomqtt.MqttCodeError) and value in AUTH_REFUSED


class MqttExecutor:
    kind = "mqtt"

    def __init__(self, name: str, target: MqttTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self._client: aiomqtt.Client | None = None
        self._lock: asyncio.Lock | None = None
        self._tls = tls_context(target)

    # --- what is published ---------------------------------------------------------------

    def incident_topic(self, plan: ActionPlan) -> str:
        return render(self.target.topic, incident_variables(plan.payload), topic_level)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        topic = self.incident_topic(plan)
        event = incident_event(plan, time.time())
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would publish {event['eventType']} to {topic}")
        outcome, detail = await self._publish(topic, event)
        return ActionResult(plan.key, self.name, self.kind, outcome, detail)

    async def publish_result(self, result: ActionResult,
                             incident_id: str | None = None) -> ActionResult:
        """Publish one action's result on ``result_topic`` (if configured). Meant for the
        dispatcher's ``on_result``; the returned result says how the publish went."""
        if self.target.result_topic is None:
            return ActionResult(result.key, self.name, self.kind, "succeeded",
                                "result_topic is not set: not published")
        variables = {"action.key": result.key, "action.target": result.target,
                     "action.executor": result.executor, "action.outcome": result.outcome,
                     "incident.id": incident_id or ""}
        topic = render(self.target.result_topic, variables, topic_level)
        outcome, detail = await self._publish(topic, result_event(result, incident_id,
                                                                  time.time()))
        return ActionResult(result.key, self.name, self.kind, outcome, detail)

    # --- the connection ----------------------------------------------------------------

    async def _publish(self, topic: str, event: Mapping[str, Any]) -> tuple[Sent, str]:
        payload = json.dumps(event, sort_keys=True).encode()
        t = self.target
        for attempt in (1, 2):
            try:
                client, fresh = await self._connected()
            except aiomqtt.MqttError as exc:
                if _auth_refused(exc):
                    return "failed", (f"broker {t.host}:{t.effective_port} refused the "
                                      f"credentials (not retried): {exc}")
                return "retry", f"cannot connect to {t.host}:{t.effective_port}: {exc}"
            except (TimeoutError, OSError) as exc:
                return "retry", (f"cannot connect to {t.host}:{t.effective_port}: "
                                 f"{type(exc).__name__} {exc}".rstrip())
            try:
                async with asyncio.timeout(t.timeout):
                    await client.publish(topic, payload, qos=t.qos, retain=t.retain,
                                         timeout=t.timeout)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                await self._drop(client)
                if fresh or attempt == 2:
                    what = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                    return "retry", f"publish to {topic} failed: {what}"
                log.info("mqtt connection to %s:%s was broken; reconnecting target=%s",
                         t.host, t.effective_port, self.name)
                continue
            return "succeeded", f"published to {topic} (QoS {t.qos})"
        raise AssertionError("unreachable")

    async def _connected(self) -> tuple[aiomqtt.Client, bool]:
        """The open client, and whether it was opened just now."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None:
                return self._client, False
            t = self.target
            client = aiomqtt.Client(
                t.host, t.effective_port, username=t.username,
                password=None if t.password is None else t.password.get_secret_value(),
                identifier=t.client_id, keepalive=t.keepalive, timeout=t.timeout,
                tls_context=self._tls,
            )
            try:
                async with asyncio.timeout(t.timeout):
                    await client.__aenter__()
            except TimeoutError:
                await self._drop(client)
                raise
            self._client = client
            return client, True

    async def _drop(self, client: aiomqtt.Client) -> None:
        if self._client is client:
            self._client = None
        # aiomqtt keeps an unexpected disconnection as the exception of a future that only
        # its message iterator reads; a publisher must read it, or asyncio logs "Future
        # exception was never retrieved" for every broker restart
        gone = getattr(client, "_disconnected", None)
        if isinstance(gone, asyncio.Future) and gone.done() and not gone.cancelled():
            gone.exception()
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError, RuntimeError, OSError):
            async with asyncio.timeout(self.target.timeout):
                await client.__aexit__(None, None, None)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._drop(self._client)
