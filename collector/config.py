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

from pydantic import Field, SecretStr, field_validator

from actions.credit_config import tier_warnings
from actions.policy import Policy, load_policy
from collector.cluster import ClusterConfig
from correlator.config import CorrelationConfig
from correlator.inventory import Inventory, load_inventory
from correlator.maintenance import MaintenanceWindow, load_maintenance
from probes.cli.config import CliProbeConfig
from probes.gnmi.config import GnmiProbeConfig
from probes.icmp.config import PingProbeConfig
from probes.snmp.config import SnmpCredentials, SnmpProbeConfig
from probes.snmp.trap_config import TrapReceiverConfig
from probes.source import Problem, Secret, SourceError, Strict, load_yaml, validate
from probes.syslog.config import Rule, SyslogConfig, configured_rules

MIN_TOKEN_LENGTH = 16


def _listen(value: str) -> str:
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9731")
    return value


class DaemonConfig(Strict):
    state_dir: str = "/var/lib/netreflex"
    metrics_listen: str | None = Field(default="127.0.0.1:9731")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(default=10.0, gt=0, le=300)
    api_listen: str | None = Field(
        default="127.0.0.1:9732", description="supervisor HTTP API; null turns it off"
    )
    api_token: Secret | None = Field(
        default=None, description="bearer token the supervisor API requires (and the CLI sends)"
    )

    _check_listen = field_validator("metrics_listen", "api_listen")(
        lambda v: None if v is None else _listen(v)
    )

    @field_validator("api_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        token = v.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"too short ({len(token)} characters); use at least "
                             f"{MIN_TOKEN_LENGTH}, e.g. the output of `openssl rand -hex 32`")
        if not all("!" <= c <= "~" for c in token):
            raise ValueError("must be printable ASCII without spaces (it is sent in an HTTP "
                             "header), e.g. the output of `openssl rand -hex 32`")
        return v


class PollingConfig(Strict):
    interval: float = Field(default=60.0, gt=0, description="seconds between polls")
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="± share of the interval")
    timeout: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    concurrency: int = Field(default=256, ge=1, le=100_000)
    cli_sessions: int = Field(
        default=16, ge=1, le=512,
        description="SSH/CLI sessions running at once (netmiko is blocking: a thread each)")


ProbeConfig = Annotated[
    SnmpProbeConfig | GnmiProbeConfig | CliProbeConfig | PingProbeConfig,
    Field(discriminator="kind"),
]


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
    traps: TrapReceiverConfig | None = Field(
        default=None, description="receive SNMP traps and INFORMs (off when absent)")
    syslog: SyslogConfig | None = Field(
        default=None, description="receive syslog over UDP/TCP (off when absent)")
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig,
        description="role (all | poller | core), MQTT broker, poller_id, members")


@dataclass(frozen=True, slots=True)
class Settings:
    path: str
    config: RootConfig
    inventory: Inventory
    policy: Policy
    warnings: tuple[Problem, ...] = ()  # worth saying, not worth refusing to start
    maintenance: tuple[MaintenanceWindow, ...] = ()
    syslog_rules: tuple[Rule, ...] = ()

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
            if isinstance(probe, SnmpProbeConfig) and probe.credentials not in cfg.credentials:
                known = ", ".join(sorted(cfg.credentials)) or "none defined"
                problems.append(src.problem(("devices", name, "probes", i, "credentials"),
                                            f"unknown credentials (defined: {known})",
                                            probe.credentials))

    warnings: list[Problem] = []
    if cfg.daemon.api_listen is not None and cfg.daemon.api_token is None:
        if ("daemon", "api_listen") in src.lines:
            problems.append(src.problem(
                ("daemon", "api_listen"), "the supervisor API needs daemon.api_token (e.g. "
                "{file: secrets/api.token}); or set api_listen: null to turn the API off"))
        else:
            warnings.append(src.problem(
                ("daemon", "api_token"), "warning: not set, so the supervisor API (default "
                "127.0.0.1:9732) stays off; set it, or api_listen: null to silence this"))
    elif cfg.daemon.api_token is not None and \
            cfg.daemon.api_token.get_secret_value().startswith("change-me"):
        warnings.append(src.problem(
            ("daemon", "api_token"), "warning: still the example token from etc/; replace "
            "it with the output of `openssl rand -hex 32`"))

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
            elif inventory.devices[name].passive:
                problems.append(src.problem(
                    ("devices", name), "device is passive in the inventory (a splitter or "
                    "patch panel: nothing answers a poll); remove it from devices: here, or "
                    "fix its role in the inventory if it is an active device"))
    windows: list[MaintenanceWindow] = []
    if inventory is not None and cfg.correlation.maintenance_file:
        try:
            windows = load_maintenance(_rel(base, cfg.correlation.maintenance_file), inventory)
        except SourceError as exc:
            problems.extend(exc.problems)
    rules: list[Rule] = []
    if cfg.syslog is not None:
        try:
            rules = configured_rules(cfg.syslog)
        except SourceError as exc:
            problems.extend(exc.problems)
    policy: Policy | None = None
    try:
        policy = load_policy(_rel(base, cfg.policy))
    except SourceError as exc:
        problems.extend(exc.problems)
    if problems:
        raise SourceError(problems)
    assert inventory is not None and policy is not None
    warnings.extend(tier_warnings(_rel(base, cfg.policy), policy, inventory))  # sla_credit
    return Settings(path=str(path), config=cfg, inventory=inventory, policy=policy,
                    warnings=tuple(warnings), maintenance=tuple(windows),
                    syslog_rules=tuple(rules))
