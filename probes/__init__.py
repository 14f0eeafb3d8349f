"""Talking to devices. Each probe turns device replies into Observations.

``probes`` imports none of the other netreflex packages.
"""

from probes.errors import ProbeAuthError, ProbeConfigError, ProbeError, ProbeTimeout
from probes.types import (
    BGP_PEER_STATE,
    DEVICE_RESTARTED,
    IF_ADMIN_STATUS,
    IF_OPER_STATUS,
    REACHABLE,
    STATUS_DOWN,
    STATUS_NAMES,
    STATUS_UP,
    DeviceResolver,
    EventSource,
    InterfaceCounters,
    Observation,
    Poller,
    PollResult,
    Publish,
)

__all__ = [
    "BGP_PEER_STATE",
    "DEVICE_RESTARTED",
    "IF_ADMIN_STATUS",
    "IF_OPER_STATUS",
    "REACHABLE",
    "STATUS_DOWN",
    "STATUS_NAMES",
    "STATUS_UP",
    "DeviceResolver",
    "EventSource",
    "InterfaceCounters",
    "Observation",
    "PollResult",
    "Poller",
    "ProbeAuthError",
    "ProbeConfigError",
    "ProbeError",
    "ProbeTimeout",
    "Publish",
]
