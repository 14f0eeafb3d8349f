"""Ping probe settings (ICMP echo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from probes.source import Strict


class PingProbeConfig(Strict):
    """How to ping one device (or, with ``ping_many``, a batch of CPEs) each poll.

    ``privileged``: ``auto`` uses unprivileged ICMP sockets (``net.ipv4.ping_group_range``)
    and falls back to raw sockets (``CAP_NET_RAW``); ``no`` and ``yes`` use only one.
    """

    kind: Literal["icmp"] = "icmp"
    count: int = Field(default=3, ge=1, le=100, description="echo requests per poll")
    interval: float = Field(default=0.2, ge=0, le=10, description="seconds between echoes")
    timeout: float = Field(default=1.0, gt=0, le=30, description="seconds to wait per echo")
    # gufo-ping counts the IP header; below 64 or above 1500 bytes it panics.
    size: int = Field(default=64, ge=64, le=1500, description="bytes, IP header included")
    privileged: Literal["auto", "yes", "no"] = "auto"

    @model_validator(mode="after")
    def _poll_fits(self) -> PingProbeConfig:
        # A poll's echoes are sequential; keep one poll well under a minute.
        worst = self.count * self.timeout * 2 + (self.count - 1) * self.interval
        if worst > 60:
            raise ValueError(
                f"count * (2 * timeout) + (count - 1) * interval must be <= 60 s (got {worst:g})"
            )
        return self
