"""SNMP probe: interface polling over v2c or v3 USM (gufo-snmp)."""

from probes.snmp.config import SnmpCredentials, SnmpProbeConfig, SnmpV2c, SnmpV3
from probes.snmp.poller import SnmpPoller, engine_id

__all__ = ["SnmpCredentials", "SnmpPoller", "SnmpProbeConfig", "SnmpV2c", "SnmpV3", "engine_id"]
