"""Past one machine: the ``cluster`` config section and who polls which device.

Roles:

* ``all`` (the default, the embedded setup): one process polls, correlates and acts over
  the in-process bus; ``broker`` is not used.
* ``poller``: polls its share of the devices (and runs any configured trap/syslog
  listeners) and publishes Observations to the MQTT broker. No correlator, no actions.
* ``core``: polls nothing; subscribes to the broker, correlates and acts.

Sharding is rendezvous (highest-random-weight) hashing over ``members``: every process
computes the same owner for a device from the member list alone, with no coordination,
and adding or removing a poller moves only that poller's share of the devices.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from probes.source import Secret, Strict, existing_file

Role = Literal["all", "poller", "core"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID_HINT = "letters, digits, '_', '.', '-' (at most 64, not starting with a punctuation mark)"


def owner(device: str, members: Sequence[str]) -> str:
    """The member that polls ``device``: the one whose hash with the device is highest.

    Deterministic across processes, hosts and Python versions (BLAKE2b, not ``hash()``).
    """
    if not members:
        raise ValueError("owner() needs at least one member")
    return max(members, key=lambda member: (_weight(member, device), member))


def shard(devices: Iterable[str], members: Sequence[str]) -> dict[str, list[str]]:
    """Every member's devices (members with none get an empty list), in input order."""
    out: dict[str, list[str]] = {m: [] for m in members}
    for device in devices:
        out[owner(device, members)].append(device)
    return out


def _weight(member: str, device: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{device}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class BrokerTls(Strict):
    """TLS to the broker. Paths are relative to the config file."""

    ca_file: str | None = Field(default=None, description="CA bundle; the system's if absent")
    cert_file: str | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(default=None, description="client key, with cert_file")
    verify_hostname: bool = True

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _path(cls, v: str | None, info: ValidationInfo) -> str | None:
        return existing_file(v, info)

    @model_validator(mode="after")
    def _pair(self) -> BrokerTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS); set both or "
                             "neither")
        return self


class BrokerConfig(Strict):
    """The MQTT broker (Mosquitto; EMQX or HiveMQ for HA). See collector/mqtt_bus.py for the
    topic layout and the broker settings a deployment needs."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="1883, or 8883 with tls, when absent")
    username: str | None = None
    password: Secret | None = None
    tls: BrokerTls | None = None
    client_id: str | None = Field(
        default=None, description="fixed MQTT client id (persistent session); default "
        "netreflex-poller-<poller_id> or netreflex-core")
    topic_prefix: str = Field(default="netreflex", description="first topic level(s)")
    keepalive: int = Field(default=30, ge=5, le=3600, description="seconds")
    connect_timeout: float = Field(default=10.0, gt=0, le=120)
    ack_timeout: float = Field(default=10.0, gt=0, le=300,
                               description="a PUBACK later than this means a dead link")
    reconnect_min: float = Field(default=0.5, gt=0, le=60, description="first retry delay")
    reconnect_max: float = Field(default=30.0, gt=0, le=600, description="retry delay cap")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or any(c in v for c in "+#\x00"):
            raise ValueError("a topic prefix such as 'netreflex' or 'isp1/netreflex' (no "
                             "wildcards, no leading or trailing '/')")
        return v

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and not _ID.match(v):
            raise ValueError(f"use {_ID_HINT}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> BrokerConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        return self


class ClusterConfig(Strict):
    role: Role = "all"
    broker: BrokerConfig | None = None
    poller_id: str | None = Field(default=None, description="this poller's id (role poller)")
    members: list[str] = Field(default_factory=list,
                               description="every poller id; the devices are shared among them")
    buffer_batches: int = Field(
        default=20_000, ge=100, le=10_000_000,
        description="batches a poller keeps while the broker is away; the oldest are "
        "dropped (and counted) beyond this")
    max_inflight: int = Field(default=64, ge=1, le=1000,
                              description="batches published but not yet acknowledged")
    flush_timeout: float = Field(default=5.0, ge=0, le=300,
                                 description="at shutdown, time to hand buffered batches "
                                 "to the broker")

    @field_validator("poller_id")
    @classmethod
    def _poller_id(cls, v: str | None) -> str | None:
        if v is not None and not _ID.match(v):
            raise ValueError(f"use {_ID_HINT}")
        return v

    @field_validator("members")
    @classmethod
    def _members(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if not _ID.match(m)]
        if bad:
            raise ValueError(f"member id {bad[0]!r}: use {_ID_HINT}")
        dupes = sorted({m for m in v if v.count(m) > 1})
        if dupes:
            raise ValueError(f"listed more than once: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _role(self) -> ClusterConfig:
        if self.role == "all":
            return self
        if self.broker is None:
            raise ValueError(f"role {self.role} needs broker: {{host: ...}}")
        if self.role == "poller":
            if self.poller_id is None:
                raise ValueError("role poller needs poller_id")
            if self.poller_id not in self.members:
                raise ValueError(f"poller_id {self.poller_id!r} is not in members "
                                 f"{self.members}; every poller needs the same, full list")
        if self.max_inflight >= self.buffer_batches:
            raise ValueError("max_inflight must be below buffer_batches")
        return self

    def client_id(self) -> str:
        """The MQTT client id: fixed, so the broker keeps this process's session."""
        if self.broker is not None and self.broker.client_id is not None:
            return self.broker.client_id
        if self.role == "poller":
            return f"netreflex-poller-{self.poller_id}"
        return "netreflex-core"


__all__ = ["BrokerConfig", "BrokerTls", "ClusterConfig", "Role", "owner", "shard"]
