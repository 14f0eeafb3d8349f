"""Errors raised by the correlator."""

from __future__ import annotations


class CorrelationError(Exception):
    """Base for correlator errors."""


class StateStoreError(CorrelationError):
    """The incident store could not be read or written: check the state directory."""


class MaintenanceError(CorrelationError, ValueError):
    """A silence (or maintenance window) asked for at run time is invalid: ``problems``
    says what to fix, one line each; nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UnknownSilence(CorrelationError, LookupError):
    """No silence has that id: list the silences to find the right one."""

    def __init__(self, silence_id: str) -> None:
        self.silence_id = silence_id
        super().__init__(f"no silence {silence_id!r}; list the silences to find its id")
