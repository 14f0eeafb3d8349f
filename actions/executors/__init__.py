"""Executors: one module per kind of external effect, found by the target's ``kind``.

Every executor is built as ``Executor(name, target, *, state_dir=None, context=None)``;
``state_dir`` is the daemon's state directory, where executors that must remember something
across restarts (the TMF621 ticket ids) keep it; ``context`` (an ``ExecutorContext``) lends
the current inventory, incidents and journal to the executors that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from actions.executors.credit import SlaCreditExecutor
from actions.executors.crm import CrmOfferExecutor
from actions.executors.email import EmailExecutor
from actions.executors.log import LogExecutor
from actions.executors.mqtt import MqttExecutor
from actions.executors.opsgenie import OpsgenieExecutor
from actions.executors.pagerduty import PagerDutyExecutor
from actions.executors.remediate import RemediationExecutor
from actions.executors.sms import SmsExecutor
from actions.executors.ticket import DispatchExecutor, TicketExecutor
from actions.executors.webhook import WebhookExecutor
from actions.types import Executor, ExecutorContext


class ExecutorFactory(Protocol):
    def __call__(self, name: str, target: Any, *, state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> Executor: ...


# kind -> factory(name, target, *, state_dir). A new executor module adds itself here.
FACTORIES: dict[str, ExecutorFactory] = {
    "webhook": WebhookExecutor,
    "log": LogExecutor,
    "tmf621_ticket": TicketExecutor,
    "tmf621_dispatch": DispatchExecutor,
    "pagerduty": PagerDutyExecutor,
    "opsgenie": OpsgenieExecutor,
    "crm_offer": CrmOfferExecutor,
    "mqtt": MqttExecutor,
    "email": EmailExecutor,
    "sms": SmsExecutor,
    "sla_credit": SlaCreditExecutor,
    "remediation": RemediationExecutor,
}


def build_executor(name: str, target: Any, *, state_dir: Path | None = None,
                   context: ExecutorContext | None = None) -> Executor:
    """The executor for one configured target (``target.kind`` picks the module)."""
    return FACTORIES[target.kind](name, target, state_dir=state_dir, context=context)


__all__ = [
    "FACTORIES",
    "CrmOfferExecutor",
    "DispatchExecutor",
    "EmailExecutor",
    "ExecutorFactory",
    "LogExecutor",
    "MqttExecutor",
    "OpsgenieExecutor",
    "PagerDutyExecutor",
    "RemediationExecutor",
    "SlaCreditExecutor",
    "SmsExecutor",
    "TicketExecutor",
    "WebhookExecutor",
    "build_executor",
]
