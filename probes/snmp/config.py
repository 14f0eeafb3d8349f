"""SNMP probe settings: credentials (v2c or v3 authPriv) and per-device polling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from probes.source import Secret, Strict


class SnmpV2c(Strict):
    version: Literal["2c"]
    community: Secret


class SnmpV3(Strict):
    """SNMPv3 USM. authPriv is what we recommend (and what the examples use)."""

    version: Literal["3"]
    user: str = Field(min_length=1)
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    auth_key: Secret
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] | None = "AES"
    priv_key: Secret | None = None
    engine_id: str | None = Field(
        default=None, description="hex; discovered from the agent when omitted"
    )


SnmpCredentials = Annotated[SnmpV2c | SnmpV3, Field(discriminator="version")]


class SnmpProbeConfig(Strict):
    """How to poll one device over SNMP. Timing fields default from ``polling:``."""

    kind: Literal["snmp"] = "snmp"
    credentials: str = Field(description="name of an entry under credentials:")
    port: int = Field(default=161, ge=1, le=65535)
    interval: float | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0, le=10)
    max_repetitions: int = Field(default=50, ge=1, le=200)
