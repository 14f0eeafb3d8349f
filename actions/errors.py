"""Errors raised by the actions package."""

from __future__ import annotations


class ActionError(Exception):
    """Base for action errors."""


class JournalError(ActionError):
    """The action journal could not be read or written: check the state directory."""
