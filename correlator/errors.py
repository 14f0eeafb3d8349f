"""Errors raised by the correlator."""

from __future__ import annotations


class CorrelationError(Exception):
    """Base for correlator errors."""


class StateStoreError(CorrelationError):
    """The incident store could not be read or written: check the state directory."""
