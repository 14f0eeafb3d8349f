"""The root config: composes each package's models and checks references across files.

``load_config`` returns a fully built ``Settings`` (config + inventory + policy) or raises
SourceError listing every problem in every file, one ``file:line: path: message`` each.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from actions.policy import Policy, load_policy
from correlator.config import CorrelationConfig
from correlator.inventory import Inventory, load_inventory
from probes.snmp.config import SnmpCredentials, SnmpProbeConfig
from probes.source import Problem, SourceError, Strict, load_yaml, validate


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9731")
    return value


class DaemonConfig(Strict):
    state_dir: str = "/var/lib/netreflex"
    metrics_listen: str | None = Field(default="127.0.0.1:9731")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(default=10.0, gt=0, le=300)

    _check_listen = field_validator("metrics_listen")(
        lambda v: None if v is None else _listen(v)
    )


class PollingConfig(Strict):
    interval: float = Field(default=60.0, gt=0, description="seconds between polls")
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="± share of the interval")
    timeout: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    concurrency: int = Field(default=256, ge=1, le=100_000)


ProbeConfig = Annotated[SnmpProbeConfig, Field(discriminator="kind")]


class DeviceConfig(Strict):
    address: str
    probes: list[ProbeConfig] = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("expected an IPv4 or IPv6 address") from None
        return v


class RootConfig(Strict):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    polling: PollingConfig = Field(default_factory=PollingConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)
    credentials: dict[str, SnmpCredentials] = Field(default_factory=dict)
    devices: dict[str, DeviceConfig] = Field(default_factory=dict)
    inventory: list[str] = Field(min_length=1, description="YAML/CSV files, relative to this file")
    policy: str = Field(description="policy YAML, relative to this file")


@dataclass(frozen=True, slots=True)
class Settings:
    path: str
    config: RootConfig
    inventory: Inventory
    policy: Policy

    @property
    def state_dir(self) -> Path:
        return Path(self.config.daemon.state_dir)


def _rel(base: Path, p: str) -> Path:
    return Path(p) if os.path.isabs(p) else base / p


def load_config(path: str | os.PathLike[str]) -> Settings:
    src = load_yaml(path)
    cfg: RootConfig = validate(RootConfig, src)
    base = Path(src.file).parent
    problems: list[Problem] = []

    for name, dev in cfg.devices.items():
        for i, probe in enumerate(dev.probes):
            if probe.credentials not in cfg.credentials:
                known = ", ".join(sorted(cfg.credentials)) or "none defined"
                problems.append(src.problem(("devices", name, "probes", i, "credentials"),
                                            f"unknown credentials (defined: {known})",
                                            probe.credentials))

    inventory: Inventory | None = None
    try:
        inventory = load_inventory([_rel(base, p) for p in cfg.inventory])
    except SourceError as exc:
        problems.extend(exc.problems)
    if inventory is not None:
        for name in cfg.devices:
            if name not in inventory.devices:
                problems.append(src.problem(("devices", name),
                                            "device is not in the inventory; add it there "
                                            "(with its parents) or fix the name"))
    policy: Policy | None = None
    try:
        policy = load_policy(_rel(base, cfg.policy))
    except SourceError as exc:
        problems.extend(exc.problems)
    if problems:
        raise SourceError(problems)
    assert inventory is not None and policy is not None
    return Settings(path=str(path), config=cfg, inventory=inventory, policy=policy)
