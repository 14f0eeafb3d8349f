"""Customer SMS through an HTTP gateway that takes a TM Forum TMF681 CommunicationMessage.

Who gets a message and when is ``actions/executors/notify.py``; this module POSTs one
message per action to the target's ``url``. The body follows TMF681 (Communication
Management API v4, ``CommunicationMessage_Create``: ``content``, ``messageType``,
``sender`` and at least one ``receiver`` are required)::

    {"@type": "CommunicationMessage", "messageType": "SMS",
     "content": "We know about a service interruption ...",
     "sender": {"name": "ExampleISP"},                  # or {"phoneNumber": "+351..."}
     "receiver": [{"id": "S-1001", "phoneNumber": "+351912345678"}],
     "characteristic": [{"name": "incidentId", "value": "INC-000042"},
                        {"name": "event", "value": "opened"},
                        {"name": "phase", "value": "outage"}]}

``Idempotency-Key`` is the action key: a retry (after a timeout, a 5xx, or a crash in the
send window) carries the same key, so a gateway that honours it sends the text once.
Answers are read as every HTTP executor reads them (``actions/executors/http.py``): 2xx
succeeded; 4xx failed, not retried; 429, 5xx, timeouts and connection errors retried,
after ``Retry-After`` when the gateway gives one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actions.executors.http import HttpClient, bearer
from actions.executors.notify import NotifyExecutor, Phase, mask
from actions.targets import SmsTarget
from actions.templates import render
from actions.types import ActionPlan, ActionResult, ExecutorContext

USER_AGENT = "netreflex-sms/0.1"
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")


def sms_text(target: SmsTarget, variables: Mapping[str, object], phase: Phase,
             degraded: bool) -> str:
    if phase == "all_clear":
        template = target.resolved_body
    elif degraded:
        template = target.degraded_body or target.body
    else:
        template = target.body
    text = " ".join(render(template, variables).split())
    if len(text) > target.max_chars:
        # "..." not "…": the ellipsis is outside the GSM 7-bit alphabet and would make the
        # whole text UCS-2 (70 characters a part instead of 160)
        text = text[: target.max_chars - 3].rstrip() + "..."
    return text


def e164(phone: str) -> str:
    """``+1 555 0101`` / ``+1 (555) 010-1`` as gateways expect it: ``+15550101``. The
    inventory allows spaces, dashes and parentheses for people to read; a number without
    ``+`` keeps its digits only (the gateway's default country applies)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return ("+" + digits) if phone.lstrip().startswith("+") else digits


def communication_message(target: SmsTarget, plan: ActionPlan, phone: str, text: str,
                          phase: Phase) -> dict[str, Any]:
    """The TMF681 ``CommunicationMessage`` for one text to one subscriber."""
    sender = ({"phoneNumber": target.sender} if _NUMBER.match(target.sender)
              else {"name": target.sender})
    return {
        "@type": "CommunicationMessage",
        "messageType": "SMS",
        "content": text,
        "sender": sender,
        "receiver": [{"id": plan.recipient, "phoneNumber": e164(phone)}],
        "characteristic": [
            {"name": "incidentId", "value": plan.incident_id},
            {"name": "event", "value": plan.event},
            {"name": "phase", "value": phase},
        ],
    }


class SmsExecutor(NotifyExecutor):
    kind = "sms"
    contact = "phone"
    consent = "consent_sms"
    channel = "SMS"

    def __init__(self, name: str, target: SmsTarget, *, state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        super().__init__(name, target, state_dir=state_dir, context=context)
        self.target = target
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    async def send(self, plan: ActionPlan, address: str, variables: Mapping[str, object],
                   phase: Phase, degraded: bool) -> ActionResult:
        text = sms_text(self.target, variables, phase, degraded)
        body = communication_message(self.target, plan, address, text, phase)
        headers = {"Accept": "application/json", "Idempotency-Key": plan.key,
                   **self.target.headers, **bearer(self.target.token)}
        answer = await self._http.send("POST", str(self.target.url), body, headers=headers)
        what = "all-clear" if phase == "all_clear" else "outage message"
        return answer.result(plan, self.name, self.kind,
                             f"{what} to {plan.recipient} ({mask(address)}): {answer.detail}")

    async def aclose(self) -> None:
        await self._http.aclose()
