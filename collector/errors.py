"""Errors raised by the collector."""

from __future__ import annotations

EX_CONFIG = 78  # sysexits.h: configuration error; the unit file does not restart on it


class CollectorError(Exception):
    """Base for collector errors."""
