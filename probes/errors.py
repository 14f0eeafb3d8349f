"""Errors raised by probes. Device trouble during a poll is a PollResult, not these."""

from __future__ import annotations


class ProbeError(Exception):
    """Base for probe errors: a probe could not be built or used as configured."""

    def __init__(self, message: str, *, device: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.device = device
        self.operation = operation


class ProbeConfigError(ProbeError):
    """The probe's settings cannot work (bad key length, unsupported protocol): fix config."""


class ProbeTimeout(ProbeError, TimeoutError):
    """The device did not answer in time: try again later."""


class ProbeAuthError(ProbeError):
    """The device rejected our credentials: fix the credentials."""
