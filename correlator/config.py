"""Correlator settings."""

from __future__ import annotations

from pydantic import Field

from probes.source import Strict


class CorrelationConfig(Strict):
    unreachable_hold_down: float = Field(
        default=5.0, ge=0, le=600,
        description="seconds a device must stay unreachable before its incident opens, so "
                    "the rest of a failing neighbourhood is attributed to the right root",
    )
