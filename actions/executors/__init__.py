"""Executors: one module per kind of external effect."""

from actions.executors.log import LogExecutor
from actions.executors.webhook import WebhookExecutor

__all__ = ["LogExecutor", "WebhookExecutor"]
