"""Ping probe: ICMP echo reachability, RTT, jitter and loss (gufo-ping)."""

from probes.icmp.config import PingProbeConfig
from probes.icmp.parse import PingStats, summarize
from probes.icmp.pinger import PingEngine, PingPoller, check_permission, ping_many
from probes.types import JITTER_MS, LOSS_RATIO, RTT_MS

__all__ = [
    "JITTER_MS",
    "LOSS_RATIO",
    "RTT_MS",
    "PingEngine",
    "PingPoller",
    "PingProbeConfig",
    "PingStats",
    "check_permission",
    "ping_many",
    "summarize",
]
