"""Errors raised by the actions package."""

from __future__ import annotations


class ActionError(Exception):
    """Base for action errors."""


class JournalError(ActionError):
    """The action journal could not be read or written: check the state directory."""


class ActionNotFound(ActionError, LookupError):
    """No action with this key is in the journal."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no action {key}")
        self.key = key


class ActionStateConflict(ActionError):
    """The action is not in a state that allows what was asked (approving an action that
    is not waiting for approval, say): look at its state and try something else."""

    def __init__(self, key: str, state: str, wanted: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"action {key} is {state}; it can become {wanted} only from "
                         f"{' or '.join(allowed)}")
        self.key = key
        self.state = state
        self.wanted = wanted

