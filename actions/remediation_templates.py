"""The remediation allowlist: named command templates, their parameters and verify steps.

Nothing here does I/O. A template is either ``cli`` (netmiko: config-mode or exec
commands per platform) or ``snmp`` (SET ifAdminStatus down, then up). Every value that
goes into a command comes from one incident field and must match its parameter's
``pattern`` in full (``re.fullmatch``); named groups in the pattern become variables too
(``{frame}``, ``{ont_id}``). A value that does not match, or holds a control character,
is refused before anything is sent (:class:`Refused`, the action's outcome ``blocked``).
Commands are lists of single lines written to the device's SSH channel: there is no
shell anywhere, and a value can never add a line.

Built-in templates (:data:`BUILTIN`): ``bounce_port`` (IOS shutdown / no shutdown),
``bounce_port_vrp`` (Huawei VRP shutdown / undo shutdown),
``reset_ont`` (Huawei SmartAX ``ont reset``), ``clear_counters`` and
``snmp_admin_bounce``. A target may add its own under ``templates:``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator

from actions.templates import TemplateError, check, render
from probes.cli.commands import Platform
from probes.source import Strict

ParamSource = Literal["incident.port", "incident.device", "incident.site"]

# The "this went wrong" answers of each platform's CLI (netmiko's error_pattern).
ERROR_PATTERNS: Final[Mapping[str, str]] = {
    "cisco_ios": r"% ?(?:Invalid|Incomplete|Ambiguous|Unknown)",
    "cisco_xr": r"% ?(?:Invalid|Incomplete|Ambiguous|Failed)",
    "juniper_junos": r"(?:syntax error|unknown command|error:)",
    "huawei": r"Error:",
    "huawei_smartax": r"(?:% ?Unknown command|Failure:|% ?Parameter error)",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(ValueError):
    """A value for a template does not fit its parameter: nothing was sent."""


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return v


class TemplateParam(Strict):
    """One value a template needs: which incident field gives it, and what it must be."""

    source: ParamSource = Field(default="incident.port",
                                description="the incident field that fills it")
    pattern: str = Field(min_length=1, description="regular expression the whole value "
                                                   "must match; named groups are variables")

    _check_pattern = field_validator("pattern")(_regex)

    def groups(self) -> tuple[str, ...]:
        return tuple(re.compile(self.pattern).groupindex)


Params = dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], TemplateParam]


def variable_samples(params: Mapping[str, TemplateParam]) -> dict[str, object]:
    """Every variable a template may name (its parameters and their named groups)."""
    out: dict[str, object] = {}
    for name, p in params.items():
        out[name] = "x"
        for group in p.groups():
            out[group] = "x"
    return out


def _line(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("one command per line: no newlines or control characters")
    return v


class CliVerify(Strict):
    """After the fix: run ``command`` (exec mode) until ``expect`` is found in its output."""

    command: str = Field(min_length=1)
    expect: str = Field(min_length=1, description="regular expression searched in the output")

    _one_line = field_validator("command")(_line)
    _check_expect = field_validator("expect")(_regex)


class PlatformCommands(Strict):
    commands: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=50)
    verify: CliVerify | None = None

    @field_validator("commands")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        for c in v:
            _line(c)
        return v


class CliTemplate(Strict):
    """Commands sent over SSH (netmiko), per platform (netmiko device type)."""

    method: Literal["cli"] = "cli"
    mode: Literal["config", "exec"] = Field(
        default="config", description="config: send_config_set; exec: send_command each")
    params: Params = Field(default_factory=dict)
    platforms: dict[Platform, PlatformCommands] = Field(min_length=1)

    @model_validator(mode="after")
    def _fields_known(self) -> CliTemplate:
        samples = variable_samples(self.params)
        for platform, spec in self.platforms.items():
            texts = [*spec.commands, *([spec.verify.command] if spec.verify else [])]
            for text in texts:
                try:
                    check(text, samples)
                except TemplateError as exc:
                    raise ValueError(f"platforms.{platform}: {text!r}: {exc}; a command "
                                     "names only the template's params (and their "
                                     "patterns' named groups)") from None
        return self


class SnmpTemplate(Strict):
    """SET ifAdminStatus down, wait ``down_for``, SET it up; verify reads ifOperStatus."""

    method: Literal["snmp"]
    params: Params = Field(default_factory=lambda: {
        "port": TemplateParam(source="incident.port", pattern=r"^[^\x00-\x1f\x7f]{1,64}$")})
    down_for: float = Field(default=2.0, ge=0, le=300,
                            description="seconds between the down and the up SET")
    verify: bool = Field(default=True, description="read ifOperStatus until it is up(1)")

    @model_validator(mode="after")
    def _port(self) -> SnmpTemplate:
        if "port" not in self.params:
            raise ValueError("an snmp template needs a `port` parameter (the interface name "
                             "whose ifIndex is set)")
        return self


RemediationTemplate = Annotated[CliTemplate | SnmpTemplate, Field(discriminator="method")]

_PORT = r"^(?:Gi|GigabitEthernet|Te|TenGigabitEthernet|Fa|FastEthernet|Hu|Fo|Twe|Tw)[0-9/.:]+$"
_VRP_PORT = r"^(?:GE|XGE|GigabitEthernet|XGigabitEthernet|Eth-Trunk|100GE|25GE)[0-9/.:]+$"
# an ONT as the SmartAX probe names it (frame/slot/port/ont-id), or "0/1/0 5"
_ONT = r"^(?P<frame>[0-9]{1,2})/(?P<slot>[0-9]{1,2})/(?P<pon>[0-9]{1,3})[/ ](?P<ont_id>[0-9]{1,3})$"

BUILTIN: Final[Mapping[str, CliTemplate | SnmpTemplate]] = {
    "bounce_port": CliTemplate(
        mode="config",
        params={"port": TemplateParam(source="incident.port", pattern=_PORT)},
        platforms={
            "cisco_ios": PlatformCommands(
                commands=["interface {port}", "shutdown", "no shutdown"],
                verify=CliVerify(command="show interfaces {port}",
                                 expect=r"line protocol is up")),
        },
    ),
    "bounce_port_vrp": CliTemplate(
        mode="config",
        params={"port": TemplateParam(source="incident.port", pattern=_VRP_PORT)},
        platforms={
            "huawei": PlatformCommands(
                commands=["interface {port}", "shutdown", "undo shutdown"],
                verify=CliVerify(command="display interface {port}",
                                 expect=r"current state\s*:\s*UP")),
        },
    ),
    "reset_ont": CliTemplate(
        mode="config",
        params={"ont": TemplateParam(source="incident.port", pattern=_ONT)},
        platforms={
            "huawei_smartax": PlatformCommands(
                commands=["interface gpon {frame}/{slot}", "ont reset {pon} {ont_id}"],
                verify=CliVerify(command="display ont info {frame} {slot} {pon} {ont_id}",
                                 expect=r"Run state\s*:\s*online")),
        },
    ),
    "clear_counters": CliTemplate(
        mode="exec",
        params={"port": TemplateParam(source="incident.port", pattern=_PORT)},
        platforms={
            "cisco_ios": PlatformCommands(commands=["clear counters {port}"]),
        },
    ),
    "snmp_admin_bounce": SnmpTemplate(method="snmp"),
}
"""The built-in allowlist. ``clear_counters`` has no verify step: it fixes nothing."""


def bind(params: Mapping[str, TemplateParam], incident: Mapping[str, object]
         ) -> dict[str, str]:
    """The variables for one incident (its payload dict). Raises :class:`Refused`."""
    out: dict[str, str] = {}
    for name, p in params.items():
        field = p.source.removeprefix("incident.")
        raw = incident.get(field)
        if raw is None or raw == "":
            raise Refused(f"parameter {name}: the incident has no {field}")
        value = str(raw)
        if _CONTROL.search(value):
            raise Refused(f"parameter {name}: {field} {value!r} holds a control character")
        m = re.fullmatch(p.pattern, value)
        if m is None:
            raise Refused(f"parameter {name}: {field} {value!r} does not match "
                          f"{p.pattern!r}; nothing was sent")
        out[name] = value
        for group, text in m.groupdict().items():
            if text is not None:
                out[group] = text
    return out


def lines(texts: list[str], variables: Mapping[str, str]) -> list[str]:
    """Render command templates; a rendered line with a control character is refused."""
    out = [render(t, variables) for t in texts]
    for line in out:
        if _CONTROL.search(line):
            raise Refused(f"command {line!r} would hold a control character")
    return out


__all__ = [
    "BUILTIN",
    "ERROR_PATTERNS",
    "CliTemplate",
    "CliVerify",
    "PlatformCommands",
    "Refused",
    "RemediationTemplate",
    "SnmpTemplate",
    "TemplateParam",
    "bind",
    "lines",
    "variable_samples",
]
