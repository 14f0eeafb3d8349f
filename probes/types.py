"""The one currency between probes and the correlator: the Observation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

# Observation names shared by every source (poll, trap, gNMI, syslog, ping), so the
# correlator cannot tell -- and does not care -- where a fact came from.
REACHABLE: Final = "reachable"  # value 1 (answered) / 0 (no answer); labels: reason
IF_OPER_STATUS: Final = "if_oper_status"  # value: IF-MIB ifOperStatus code; labels: admin
IF_ADMIN_STATUS: Final = "if_admin_status"  # value: IF-MIB ifAdminStatus code
DEVICE_RESTARTED: Final = "device_restarted"  # value: new sysUpTime in seconds
BGP_PEER_STATE: Final = "bgp_peer_state"  # instance: peer address; value: BGP4-MIB state 1..6
IF_IN_OCTETS: Final = "if_in_octets"  # value: counter (uint64, wrapping); instance: interface
IF_OUT_OCTETS: Final = "if_out_octets"
IF_IN_ERRORS: Final = "if_in_errors"
IF_OUT_ERRORS: Final = "if_out_errors"
IF_IN_FCS_ERRORS: Final = "if_in_fcs_errors"  # FCS / CRC errors
OPTICAL_RX_DBM: Final = "optical_rx_dbm"  # value: dBm; instance: component; labels: channel
CPU_UTILIZATION: Final = "cpu_utilization"  # value: percent; instance: cpu index / component
RTT_MS: Final = "rtt_ms"  # value: mean round trip of answered echoes, ms; labels: min, max
JITTER_MS: Final = "jitter_ms"  # value: mean |rtt[i] - rtt[i-1]| over answered echoes, ms
LOSS_RATIO: Final = "loss_ratio"  # value: lost / sent, 0..1
ONT_STATE: Final = "ont_state"  # value 1 online / 2 offline; instance "frame/slot/port/ont_id";
# labels last_down_cause: "dying-gasp" | "LOS" | the device's text (absent: none known)
ONT_RX_DBM: Final = "ont_rx_dbm"  # value: optical power the ONT receives, dBm; same instance
ALARM: Final = "alarm"  # value: severity (MAJOR, ...) or CLEARED; instance: alarm id

# IF-MIB status codes.
STATUS_UP: Final = 1
STATUS_DOWN: Final = 2
STATUS_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "up",
        2: "down",
        3: "testing",
        4: "unknown",
        5: "dormant",
        6: "notPresent",
        7: "lowerLayerDown",
    }
)

_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Observation:
    """One fact read from a device.

    ``instance`` is the element inside the device the fact is about (an interface
    name, a BGP neighbor) or ``""`` for the device itself.
    """

    device: str
    source: str
    name: str
    instance: str
    value: float | int | str
    ts: float
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)


@dataclass(slots=True)
class InterfaceCounters:
    """One device's interface table as columns (no object per interface or varbind).

    All lists are parallel and ordered by ifIndex. Counters are raw (wrapping) values;
    ``None`` where the agent does not have the column for that interface.
    """

    if_index: list[int]
    name: list[str]
    oper_status: list[int]
    in_octets: list[int | None]
    out_octets: list[int | None]
    in_errors: list[int | None]
    out_errors: list[int | None]
    speed_mbps: list[int | None]


@dataclass(slots=True)
class PollResult:
    """What one poll of one device produced.

    ``error`` is a short reason code (``timeout``, ``auth``, ``decode``, ``no_such_object``,
    ``bad_type``, ``socket``) or ``None`` on success; ``detail`` says more, for logs.
    A device that does not answer is *not* an exception: ``error="timeout"`` and an
    Observation ``reachable=0`` in ``observations``.
    """

    device: str
    ts: float
    error: str | None = None
    detail: str = ""
    observations: list[Observation] = field(default_factory=list)
    counters: InterfaceCounters | None = None
    varbinds: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class Poller(Protocol):
    """A probe that is asked, on a schedule, for what changed since last time.

    ``poll`` never raises for device trouble (it reports it in the result); it may be
    cancelled at any await. Probes never retry, schedule or touch metrics.
    """

    device: str

    async def poll(self) -> PollResult: ...

    async def aclose(self) -> None: ...


Publish = Callable[[Sequence[Observation]], Awaitable[None]]
"""How an event source hands observations to the bus (it may wait: backpressure)."""


class DeviceResolver(Protocol):
    """Maps what an event carries to inventory ids; supplied by the collector."""

    def device_for_address(self, address: str) -> str | None: ...

    def interface_name(self, device: str, if_index: int) -> str | None: ...


class EventSource(Protocol):
    """A probe that listens (traps, syslog, streaming telemetry) instead of being polled.

    ``run`` serves until ``stopping`` is set, publishing observations as they arrive.
    ``stats`` holds monotonic counters by reason (received, unmatched, malformed,
    unknown_sender, ...) that the collector exports as metrics; sources never touch
    metrics themselves. A bad message is counted and logged, never fatal.
    """

    name: str
    stats: dict[str, int]

    async def run(self, publish: Publish, stopping: asyncio.Event) -> None: ...
