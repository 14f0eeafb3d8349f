"""gNMI probe settings: transport (TLS or explicit plaintext), credentials, subscription."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from probes.gnmi.paths import parse_elems
from probes.source import Secret, Strict, config_path


class GnmiTls(Strict):
    """TLS towards the target. Relative file paths are relative to the config file."""

    ca_file: str | None = Field(
        default=None,
        description="PEM CA bundle that signed the target's certificate; omitted: the "
        "roots bundled with grpcio (or $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), not the OS store",
    )
    cert_file: str | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(default=None, validate_default=True,
                                 description="client private key (mutual TLS)")
    server_name_override: str | None = Field(
        default=None,
        min_length=1,
        description="the name the target's certificate must carry, when it is not the "
        "address we dial",
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = config_path(value, info)
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {path}")
        if not os.access(path, os.R_OK):
            raise ValueError(f"cannot read {path} (permissions)")
        return path

    @field_validator("key_file")
    @classmethod
    def _pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "cert_file" not in info.data:
            return value  # cert_file itself is wrong: said there
        if (info.data["cert_file"] is None) != (value is None):
            raise ValueError("mutual TLS needs both cert_file and key_file")
        return value


class GnmiPath(Strict):
    """One subscribed path, e.g. ``/interfaces/interface/state/oper-status``."""

    path: str = Field(min_length=1, description="[origin:]/path, keys as [name=value]")
    mode: Literal["on_change", "sample", "target_defined"] = "sample"
    sample_interval: float | None = Field(
        default=None, gt=0, description="seconds; default: the probe's sample_interval"
    )

    @field_validator("path")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_elems(value)  # ValueError says where
        return value


class GnmiBackoff(Strict):
    """Delay before redialling: ``initial * multiplier**failures``, capped at ``maximum``,
    each delay shortened at random by up to ``jitter`` (a fraction) so that devices that
    failed together do not redial together."""

    initial: float = Field(default=1.0, gt=0)
    maximum: float = Field(default=60.0, gt=0, validate_default=True)
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.5, ge=0, le=1)

    @field_validator("maximum")
    @classmethod
    def _order(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial")
        if initial is not None and value < initial:
            raise ValueError(f"maximum must be >= initial ({initial:g})")
        return value


def _leaf(path: str, mode: Literal["on_change", "sample"]) -> GnmiPath:
    return GnmiPath(path=path, mode=mode)


_IF = "/interfaces/interface/state"
DEFAULT_PATHS: tuple[GnmiPath, ...] = (
    _leaf(f"{_IF}/oper-status", "on_change"),
    _leaf(f"{_IF}/admin-status", "on_change"),
    _leaf(f"{_IF}/counters/in-octets", "sample"),
    _leaf(f"{_IF}/counters/out-octets", "sample"),
    _leaf(f"{_IF}/counters/in-errors", "sample"),
    _leaf(f"{_IF}/counters/out-errors", "sample"),
    _leaf(f"{_IF}/counters/in-fcs-errors", "sample"),
    _leaf(
        "/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor/state/"
        "session-state",
        "on_change",
    ),
    _leaf(
        "/components/component/transceiver/physical-channels/channel/state/input-power/instant",
        "sample",
    ),
    _leaf("/system/cpus/cpu/state/total/instant", "sample"),
    _leaf("/system/alarms/alarm/state", "on_change"),
)
"""OpenConfig paths subscribed when the config names none."""


class GnmiProbeConfig(Strict):
    """How to stream telemetry from one device over gNMI (dial-in, Subscribe STREAM).

    Rules between fields are checked on the later field, never on the whole model: an
    error then echoes that field's value, not the mapping with the password in it.
    """

    kind: Literal["gnmi"] = "gnmi"
    port: int = Field(default=9339, ge=1, le=65535, description="9339: IANA gnmi-gnoi")
    password: Secret | None = None
    username: str | None = Field(default=None, min_length=1, validate_default=True)
    insecure: bool = Field(
        default=False, description="plaintext gRPC (no TLS): only when said so, for labs"
    )
    tls: GnmiTls | None = Field(default=None, validate_default=True)
    encoding: Literal["json_ietf", "json", "proto", "ascii"] | None = Field(
        default=None,
        description="omitted: the first of json_ietf, json, proto the target supports",
    )
    mode: Literal["stream"] = "stream"
    sample_interval: float = Field(default=10.0, gt=0, description="seconds, sample paths")
    heartbeat_interval: float | None = Field(
        default=20.0,
        gt=0,
        description="seconds: ask the target to resend on_change values this often "
        "(where it supports it), so a quiet stream is not taken for a dead one",
    )
    paths: tuple[GnmiPath, ...] = Field(default=DEFAULT_PATHS, min_length=1)
    initial_get: bool = Field(
        default=True, description="Get the paths once before subscribing (initial state)"
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds for each of Capabilities and Get"
    )
    silence_deadline: float = Field(
        default=30.0,
        gt=0,
        validate_default=True,
        description="seconds without any update, sync or heartbeat before the stream is "
        "taken for dead and redialled",
    )
    backoff: GnmiBackoff = GnmiBackoff()
    queue_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="responses read but not yet parsed; beyond it we stop reading (gRPC "
        "flow control then holds the target back)",
    )

    @field_validator("username")
    @classmethod
    def _user_for_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("password") is not None:
            raise ValueError("password is set but username is not")
        return value

    @field_validator("tls")
    @classmethod
    def _transport(cls, value: GnmiTls | None, info: ValidationInfo) -> GnmiTls | None:
        insecure = info.data.get("insecure")
        if insecure is None:
            return value  # insecure itself is wrong: said there
        if insecure and value is not None:
            raise ValueError("insecure: true and tls: are exclusive (plaintext or TLS, pick one)")
        if not insecure and value is None:
            raise ValueError(
                "no transport security given: add tls: (with ca_file: for a private CA), "
                "or set insecure: true to talk plaintext gRPC (labs only)"
            )
        return value

    @field_validator("paths")
    @classmethod
    def _unique(cls, value: tuple[GnmiPath, ...]) -> tuple[GnmiPath, ...]:
        seen: set[str] = set()
        for p in value:
            if p.path in seen:
                raise ValueError(f"path {p.path} is listed twice")
            seen.add(p.path)
        return value

    @field_validator("silence_deadline")
    @classmethod
    def _deadline(cls, value: float, info: ValidationInfo) -> float:
        data = info.data
        if not {"paths", "sample_interval", "heartbeat_interval"} <= data.keys():
            return value  # one of them is wrong: said there
        cadence = _cadence(data["paths"], data["sample_interval"], data["heartbeat_interval"])
        if cadence is None:
            raise ValueError(
                "nothing periodic in the subscription: silence cannot be told from a dead "
                "stream; set heartbeat_interval or add a sample path"
            )
        if value < 2 * cadence:
            raise ValueError(
                f"must be at least twice the shortest sample or heartbeat "
                f"interval ({cadence:g} s), so one late update is not a dead stream"
            )
        return value

    def interval(self, path: GnmiPath) -> float:
        return path.sample_interval if path.sample_interval is not None else self.sample_interval

    def cadence(self) -> float | None:
        """The longest a healthy stream stays quiet, if anything is periodic: the shortest
        sample interval, or the heartbeat when there are on_change paths."""
        return _cadence(self.paths, self.sample_interval, self.heartbeat_interval)


def _cadence(paths: tuple[GnmiPath, ...], sample: float, heartbeat: float | None) -> float | None:
    every = [p.sample_interval or sample for p in paths if p.mode == "sample"]
    if heartbeat is not None and any(p.mode != "sample" for p in paths):
        every.append(heartbeat)
    return min(every) if every else None
