"""Syslog receiver settings and the rules that turn messages into Observations.

Rules are data: a regex with named groups, optional ``program`` / ``facility`` filters,
what the message means (``kind``) and templates that pick the interface, ifIndex, peer
and labels out of the groups. The built-in rules (``rules.yaml`` next to this module) and
a site's ``rules_file`` are read by the same code with the same strictness: every problem
is reported as ``file:line: rules[i].field: what is wrong``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from probes.source import Problem, SourceError, Strict, config_path, load_yaml, validate

BUILTIN_RULES: Final = Path(__file__).with_name("rules.yaml")

FACILITIES: Final[Mapping[str, int]] = MappingProxyType({
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
})
"""RFC 5424 section 6.2.1 facility codes, by the names syslog.conf uses."""

Kind = Literal["link_down", "link_up", "bgp_down", "bgp_up", "device_restarted"]
LINK_KINDS: Final = frozenset({"link_down", "link_up"})
BGP_KINDS: Final = frozenset({"bgp_down", "bgp_up"})


def split_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port). Raises ValueError with the fix."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:514 or [::]:514")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::]:514")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address to listen on") from None
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError("the port must be a number from 0 to 65535 (0 picks a free one)")
    return host, int(port)


def _endpoint(text: str) -> str:
    split_endpoint(text)
    return text


Endpoint = Annotated[str, AfterValidator(_endpoint)]


class SyslogConfig(Strict):
    """Where to listen for syslog (RFC 3164 / 5424 over UDP, and TCP per RFC 6587)."""

    kind: Literal["syslog"] = "syslog"
    udp: Endpoint | None = "0.0.0.0:514"
    tcp: Endpoint | None = None
    rules_file: str | None = Field(
        default=None, description="extra rules (YAML), tried before the built-in ones; "
        "relative to the file that names it",
    )
    use_builtin_rules: bool = True
    max_message_size: int = Field(
        default=8192, ge=480, le=65536,
        description="bytes; longer messages are cut to this size (RFC 5424 6.1)",
    )
    max_tcp_connections: int = Field(default=512, ge=1, le=65536)
    tcp_idle_timeout: float = Field(
        default=300.0, gt=0, description="seconds without a byte before a TCP sender is "
        "disconnected (it reconnects when it has something to say)",
    )
    queue_size: int = Field(
        default=20_000, ge=100, le=1_000_000,
        description="messages waiting to be parsed; UDP beyond this is dropped and "
        "counted, TCP senders are paused",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    udp_receive_buffer: int = Field(
        default=4 * 1024 * 1024, ge=65536,
        description="requested SO_RCVBUF; the kernel caps it at net.core.rmem_max",
    )
    trust_hostname: bool = Field(
        default=True, description="when the sender's address is not a known device, "
        "identify the device by the message's HOSTNAME (for relays)",
    )

    @field_validator("rules_file")
    @classmethod
    def _relative_to_config(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else config_path(value, info)

    @model_validator(mode="after")
    def _listens_somewhere(self) -> SyslogConfig:
        if self.udp is None and self.tcp is None:
            raise ValueError("set udp or tcp (or both): the receiver has nothing to listen on")
        return self


# --- rules ---------------------------------------------------------------------------

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def template_fields(template: str) -> list[str]:
    """The group names a ``{group}`` template uses; ValueError if it is not one."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (use {{group}}; write {{{{ for a brace)") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"bad template field {{{name}}}: only {{group}} with the name of "
                             "a named group of match is allowed")
        names.append(name)
    return names


class Rule(Strict):
    """One message pattern and the Observation it produces.

    ``match`` is searched (``re.search``) in the message text (MSG, after the header);
    anchor it with ``^`` where that helps. The first rule that matches wins.
    """

    name: str = Field(pattern=_NAME, max_length=80)
    match: str = Field(min_length=1)
    program: str | None = Field(default=None, description="APP-NAME / TAG must equal this")
    facility: str | None = Field(default=None, description="e.g. local7")
    kind: Kind
    interface: str | None = Field(default=None, description='template, e.g. "{intf}"')
    if_index: str | None = Field(default=None, description="template; the resolver maps it "
                                 "to the interface name when interface is not given")
    peer: str | None = Field(default=None, description='template, e.g. "{peer}"')
    labels: dict[str, str] = Field(default_factory=dict, description="name: template")
    interface_names: Literal["as_sent", "cisco_ios"] = Field(
        default="as_sent", description="cisco_ios: GigabitEthernet0/1 -> Gi0/1 (IOS ifName)"
    )

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"the regex does not compile: {exc}") from None
        return value

    @field_validator("facility")
    @classmethod
    def _known_facility(cls, value: str | None) -> str | None:
        if value is not None and value not in FACILITIES:
            raise ValueError(f"unknown facility; use one of {', '.join(FACILITIES)}")
        return value

    @field_validator("interface", "if_index", "peer")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _check_groups(template_fields(value), info)
        return value

    @field_validator("labels")
    @classmethod
    def _label_templates(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, template in value.items():
            if not key.isidentifier():
                raise ValueError(f"label name {key!r} must be an identifier")
            _check_groups(template_fields(template), info)
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> Rule:
        if self.kind in LINK_KINDS:
            if self.interface is None and self.if_index is None:
                raise ValueError(f"a {self.kind} rule needs interface (or if_index)")
            if self.peer is not None:
                raise ValueError(f"a {self.kind} rule has no peer")
            admin = self.labels.get("admin")
            if admin is not None and not template_fields(admin) and admin not in ("up", "down"):
                raise ValueError("labels.admin must be up, down or a template")
        elif self.kind in BGP_KINDS:
            if self.peer is None:
                raise ValueError(f"a {self.kind} rule needs peer")
            if self.interface is not None or self.if_index is not None:
                raise ValueError(f"a {self.kind} rule has no interface")
        elif self.interface or self.if_index or self.peer:
            raise ValueError("a device_restarted rule has no interface or peer")
        return self


def _check_groups(fields: Iterable[str], info: ValidationInfo) -> None:
    pattern = info.data.get("match")
    if pattern is None:
        return  # match itself is wrong: that is the error to report
    groups = re.compile(pattern).groupindex
    for name in fields:
        if name not in groups:
            have = ", ".join(groups) or "none"
            raise ValueError(f"{{{name}}} is not a named group of match (it has: {have})")


class RuleFile(Strict):
    rules: list[Rule] = Field(default_factory=list)


def load_rule_file(path: str | os.PathLike[str]) -> list[Rule]:
    """Read and validate one rules file; every problem becomes a located SourceError."""
    src = load_yaml(path)
    if not isinstance(src.data, dict):
        raise SourceError([Problem(src.file, 1, "", "expected a mapping with a rules: list")])
    parsed: RuleFile = validate(RuleFile, src)
    first: dict[str, int] = {}
    problems = []
    for i, rule in enumerate(parsed.rules):
        if rule.name in first:
            where = src.line_of(("rules", first[rule.name]))
            problems.append(src.problem(("rules", i, "name"), "duplicate rule name (the first "
                                        f"one is on line {where}); names must be unique",
                                        rule.name))
        first.setdefault(rule.name, i)
    if problems:
        raise SourceError(problems)
    return parsed.rules


def configured_rules(config: SyslogConfig) -> list[Rule]:
    """The site's rules, then the built-in ones (the first rule that matches wins).

    A site rule named like a built-in one replaces it.
    """
    rules: list[Rule] = []
    if config.rules_file is not None:
        rules.extend(load_rule_file(config.rules_file))
    if config.use_builtin_rules:
        mine = {rule.name for rule in rules}
        rules.extend(r for r in load_rule_file(BUILTIN_RULES) if r.name not in mine)
    return rules
