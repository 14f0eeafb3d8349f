"""Executors: one module per kind of external effect, found by the target's ``kind``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actions.executors.log import LogExecutor
from actions.executors.webhook import WebhookExecutor
from actions.types import Executor

# kind -> factory(name, target). A new executor module adds itself here.
FACTORIES: dict[str, Callable[[str, Any], Executor]] = {
    "webhook": WebhookExecutor,
    "log": LogExecutor,
}


def build_executor(name: str, target: Any) -> Executor:
    """The executor for one configured target (``target.kind`` picks the module)."""
    return FACTORIES[target.kind](name, target)


__all__ = ["FACTORIES", "LogExecutor", "WebhookExecutor", "build_executor"]
