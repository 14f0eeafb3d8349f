"""gNMI probe: streaming telemetry (Subscribe STREAM) from OpenConfig devices."""

from probes.gnmi.config import DEFAULT_PATHS, GnmiBackoff, GnmiPath, GnmiProbeConfig, GnmiTls
from probes.gnmi.parse import (
    ALARM_CLEARED,
    ParseState,
    parse_get_response,
    parse_notification,
    parse_pygnmi,
    parse_response,
)
from probes.gnmi.probe import STAT_KEYS, GnmiProbe
from probes.types import (
    ALARM,
    BGP_PEER_STATE,
    CPU_UTILIZATION,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_IN_OCTETS,
    IF_OUT_ERRORS,
    IF_OUT_OCTETS,
    OPTICAL_RX_DBM,
)

__all__ = [
    "ALARM",
    "ALARM_CLEARED",
    "BGP_PEER_STATE",
    "CPU_UTILIZATION",
    "DEFAULT_PATHS",
    "IF_IN_ERRORS",
    "IF_IN_FCS_ERRORS",
    "IF_IN_OCTETS",
    "IF_OUT_ERRORS",
    "IF_OUT_OCTETS",
    "OPTICAL_RX_DBM",
    "STAT_KEYS",
    "GnmiBackoff",
    "GnmiPath",
    "GnmiProbe",
    "GnmiProbeConfig",
    "GnmiTls",
    "ParseState",
    "parse_get_response",
    "parse_notification",
    "parse_pygnmi",
    "parse_response",
]
