"""SNMP trap/INFORM receiver settings: where to listen, who may send, how much to queue."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from typing import Literal

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from probes.source import Secret, Strict

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]
"""AES192/AES256 extend the key as net-snmp does (Blumenthal draft); the ``C`` variants as
Cisco does (Reeder draft) -- Cisco IOS/IOS-XE devices with ``priv aes 192|256`` need them."""


def normalize_engine_id(value: str) -> str:
    """``0x80001f88…``, ``80:00:1f:88:…`` or ``80001f88…`` -> lowercase hex (5-32 octets)."""
    text = value.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("an SNMP engine ID is hex, e.g. 0x80001f8803aabbccddeeff") from None
    if not 5 <= len(raw) <= 32:
        raise ValueError(f"an SNMP engine ID is 5 to 32 octets (got {len(raw)})")
    if raw in (b"\x00" * len(raw), b"\xff" * len(raw)):
        raise ValueError("an SNMP engine ID may not be all zeros or all ff")
    return raw.hex()


def default_engine_id() -> str:
    """Our engine ID when none is configured: stable across restarts on one host.

    pysnmp's own default changes with every process (it mixes in the PID), which would
    break devices that pin the receiver's engine ID for INFORMs (Cisco ``snmp-server
    engineID remote``). Format 5 (administratively assigned octets) under pysnmp's
    enterprise number, with 8 octets hashed from the host name.
    """
    digest = hashlib.sha256(b"netreflex-traps:" + socket.gethostname().encode()).digest()
    return (bytes.fromhex("80004fb805") + digest[:8]).hex()


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6HOST]:PORT`` -> (host, port). The host is an IP literal."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError("listen is HOST:PORT, e.g. 0.0.0.0:162 or [::]:162")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(host).version != 6:
            raise ValueError("only IPv6 addresses go in brackets")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"listen host must be an IP address, not {host!r} (0.0.0.0 for all IPv4)"
        ) from None
    if ":" in host and not value.startswith("["):
        raise ValueError("write an IPv6 listen address in brackets: [::]:162")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen port must be 0..65535 (got {port_text!r})")
    return host, int(port_text)


class TrapV3User(Strict):
    """One SNMPv3 USM user we accept notifications from.

    A trap is authenticated with keys localized to the *sender's* engine ID, so every
    device that sends v3 traps as this user must have its engine ID listed here
    (``show snmp engineID`` on Cisco, ``show snmp v3`` on Junos). INFORMs are localized
    to *our* engine ID (``TrapReceiverConfig.engine_id``) and need no entry here.
    """

    user: str = Field(min_length=1, max_length=32)
    auth_protocol: AuthProtocol = "SHA"
    auth_key: Secret
    priv_protocol: PrivProtocol | None = "AES"
    priv_key: Secret | None = None
    engine_ids: list[str] = Field(
        default_factory=list,
        description="hex snmpEngineID of each device that sends v3 traps as this user",
    )

    @field_validator("engine_ids")
    @classmethod
    def _engine_ids(cls, value: list[str]) -> list[str]:
        out = [normalize_engine_id(v) for v in value]
        if len(set(out)) != len(out):
            raise ValueError("an engine ID is listed twice")
        return out

    @model_validator(mode="after")
    def _keys(self) -> TrapV3User:
        if len(self.auth_key.get_secret_value()) < 8:
            raise ValueError("auth_key must be at least 8 characters (RFC 3414)")
        if self.priv_protocol is None:
            if self.priv_key is not None:
                raise ValueError("priv_key is set but priv_protocol is null")
        elif self.priv_key is None:
            raise ValueError(f"priv_protocol {self.priv_protocol} needs a priv_key")
        elif len(self.priv_key.get_secret_value()) < 8:
            raise ValueError("priv_key must be at least 8 characters (RFC 3414)")
        return self


class TrapReceiverConfig(Strict):
    """Where and how to receive SNMP traps and INFORMs (v1, v2c, v3 USM)."""

    kind: Literal["snmp_traps"] = "snmp_traps"
    listen: str = Field(
        default="0.0.0.0:162",
        description="HOST:PORT or [V6HOST]:PORT ([::]:162 takes IPv4 too); port 162 "
        "needs CAP_NET_BIND_SERVICE",
    )
    communities: list[Secret] = Field(
        default_factory=list, description="v1/v2c communities accepted"
    )
    v3_users: list[TrapV3User] = Field(default_factory=list)
    engine_id: str = Field(
        default_factory=default_engine_id,
        description="our snmpEngineID (hex) for v3 INFORMs; default: stable per host",
    )
    max_queue: int = Field(
        default=20_000,
        ge=1,
        le=10_000_000,
        description="notifications waiting to be published; beyond it they are dropped "
        "and counted (dropped_overload)",
    )
    batch_size: int = Field(
        default=500, ge=1, le=100_000, description="observations per publish() call, at most"
    )
    receive_buffer: ByteSize = Field(
        default=ByteSize(8 * 1024 * 1024),
        ge=64 * 1024,
        description="SO_RCVBUF for the trap socket (the kernel caps it at "
        "net.core.rmem_max)",
    )
    warn_interval: float = Field(
        default=60.0,
        gt=0,
        description="seconds between repeated warnings about one sender (unknown, bad "
        "community, bad v3 credentials)",
    )
    decoder: Literal["native", "pysnmp"] = Field(
        default="native",
        description="who decodes v1/v2c: netreflex's own BER decoder (fast) or pysnmp; "
        "v3 always goes through pysnmp",
    )

    @field_validator("communities")
    @classmethod
    def _communities(cls, value: list[SecretStr]) -> list[SecretStr]:
        plain = [c.get_secret_value() for c in value]
        if any(not c for c in plain):
            raise ValueError("a community may not be empty")
        if len(set(plain)) != len(plain):
            raise ValueError("a community is listed twice")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, value: str) -> str:
        return normalize_engine_id(value)

    @model_validator(mode="after")
    def _someone(self) -> TrapReceiverConfig:
        if not self.communities and not self.v3_users:
            raise ValueError(
                "accepts nothing: give at least one of communities or v3_users"
            )
        names = [u.user for u in self.v3_users]
        if len(set(names)) != len(names):
            raise ValueError("a v3 user is listed twice: list all its engine_ids under one")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)
