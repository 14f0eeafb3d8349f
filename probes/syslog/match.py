"""From parsed syslog messages to Observations, by rules -- no I/O here.

What each rule ``kind`` produces (``source="syslog"``, ``ts`` = time of arrival):

=================  ====================  ===========  =====================================
kind               name                  instance     value, labels
=================  ====================  ===========  =====================================
link_down          ``if_oper_status``    interface    2 (IF-MIB down); ``admin`` up/down
link_up            ``if_oper_status``    interface    1 (IF-MIB up); ``admin`` up
bgp_down           ``bgp_peer_state``    peer addr.   1 (BGP4-MIB idle)
bgp_up             ``bgp_peer_state``    peer addr.   6 (BGP4-MIB established)
device_restarted   ``device_restarted``  ``""``       0 (seconds since the restart, as far
                                                      as a syslog message can tell)
=================  ====================  ===========  =====================================

Every Observation also carries ``labels["rule"]``: the name of the rule that made it.

Interface names are kept as the device writes them, except in rules with
``interface_names: cisco_ios``: Cisco IOS / IOS-XE log the long name
(``GigabitEthernet0/1``) but their IF-MIB ``ifName`` -- what the SNMP poller and the
inventory use -- is the short one (``Gi0/1``); :func:`cisco_ios_ifname` maps one to the
other for the prefixes in :data:`CISCO_IOS_SHORT`. IOS-XR, NX-OS, Arista EOS, Junos and
Huawei VRP use the long name as ifName: their rules keep it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from probes.syslog.config import FACILITIES, Rule, template_fields
from probes.syslog.parse import SyslogMessage
from probes.types import (
    BGP_PEER_STATE,
    DEVICE_RESTARTED,
    IF_OPER_STATUS,
    STATUS_DOWN,
    STATUS_UP,
    Observation,
)

SOURCE: Final = "syslog"
BGP_IDLE: Final = 1
BGP_ESTABLISHED: Final = 6

CISCO_IOS_SHORT: Final[Mapping[str, str]] = MappingProxyType({
    "ethernet": "Et",
    "fastethernet": "Fa",
    "gigabitethernet": "Gi",
    "twogigabitethernet": "Tw",
    "fivegigabitethernet": "Fi",
    "tengigabitethernet": "Te",
    "twentyfivegige": "Twe",
    "fortygigabitethernet": "Fo",
    "hundredgige": "Hu",
    "appgigabitethernet": "Ap",
    "port-channel": "Po",
    "vlan": "Vl",
    "loopback": "Lo",
    "tunnel": "Tu",
    "serial": "Se",
    "null": "Nu",
    "dialer": "Di",
    "multilink": "Mu",
    "virtual-access": "Vi",
    "virtual-template": "Vt",
    "bdi": "BD",
})
"""Long IOS interface type (lower case) -> the abbreviation IOS uses in ifName."""

_IF_TYPE = re.compile(r"([A-Za-z][A-Za-z-]*?)\s*(\d[\d/.:]*)$")


def cisco_ios_ifname(name: str) -> str:
    """``GigabitEthernet0/1`` -> ``Gi0/1`` (IOS ifName); other names are returned as is."""
    m = _IF_TYPE.match(name)
    if m is None:
        return name
    short = CISCO_IOS_SHORT.get(m[1].lower())
    return name if short is None else short + m[2]


InterfaceName = Callable[[str, int], "str | None"]
"""(device, ifIndex) -> interface name: :meth:`probes.types.DeviceResolver.interface_name`."""


class _Template:
    __slots__ = ("group", "text")

    def __init__(self, text: str) -> None:
        fields = template_fields(text)
        self.text = text
        whole = len(fields) == 1 and text == "{" + fields[0] + "}"
        self.group = fields[0] if whole else None

    def render(self, groups: Mapping[str, str | None]) -> str | None:
        """The text, or None when a group it needs did not take part in the match."""
        if self.group is not None:
            return groups[self.group] or None
        try:
            return self.text.format_map(_Strict(groups)) or None
        except _Missing:
            return None


class _Missing(Exception):
    pass


class _Strict(dict[str, str | None]):
    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        if value is None:
            raise _Missing(key)
        return value


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    regex: re.Pattern[str]
    program: str | None
    facility: int | None
    kind: str
    interface: _Template | None
    if_index: _Template | None
    peer: _Template | None
    labels: tuple[tuple[str, _Template], ...]
    cisco_ios: bool

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        def t(text: str | None) -> _Template | None:
            return None if text is None else _Template(text)

        return cls(
            name=rule.name,
            regex=re.compile(rule.match),
            program=rule.program,
            facility=None if rule.facility is None else FACILITIES[rule.facility],
            kind=rule.kind,
            interface=t(rule.interface),
            if_index=t(rule.if_index),
            peer=t(rule.peer),
            labels=tuple((k, _Template(v)) for k, v in rule.labels.items()),
            cisco_ios=rule.interface_names == "cisco_ios",
        )


class Matcher:
    """The rules in order; the first one that matches (and renders) wins.

    Most messages match no rule, so each rule is first checked for the literal text its
    regex must start with (``needle``; a substring test is several times cheaper than a
    regex search), and the regex runs only where that text occurs.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(CompiledRule.of(r) for r in rules)
        self._plan = tuple(
            (literal_prefix(r.regex.pattern), r.program, r.facility, r.regex.search, r)
            for r in self.rules
        )

    def match(
        self,
        message: SyslogMessage,
        *,
        device: str,
        ts: float,
        interface_name: InterfaceName | None = None,
    ) -> Observation | None:
        text = message.msg
        for needle, program, facility, search, rule in self._plan:
            if needle not in text:
                continue
            if program is not None and program != message.app_name:
                continue
            if facility is not None and facility != message.facility:
                continue
            m = search(text)
            if m is None:
                continue
            obs = _observation(rule, m.groupdict(), device, ts, interface_name)
            if obs is not None:
                return obs
        return None


_META = frozenset(".^$*+?{}[]|()")


def literal_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with ("" if none is known).

    Conservative: it stops at the first special character, drops a last character that
    a quantifier applies to, and gives up on top-level alternation (``a|b``) and inline
    flags (which start with "(" and so end the prefix at once).
    """
    if _top_level_bar(pattern):
        return ""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1:i + 2]
            if not nxt or nxt.isalnum():  # \d, \b, \1, \n ...: a class or an anchor
                break
            c, i = nxt, i + 2
        elif c in _META:
            break
        else:
            i += 1
        if i < len(pattern) and pattern[i] in "*+?{":
            break  # the character just read is quantified: not part of every match
        out.append(c)
    return "".join(out)


def _top_level_bar(pattern: str) -> bool:
    depth = 0
    i = 0
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]" or pattern[i + 1:i + 3] == "^]":
                i += 2 if pattern[i + 1] == "]" else 3  # "[]..." and "[^]...": ] is literal
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _observation(
    rule: CompiledRule,
    groups: Mapping[str, str | None],
    device: str,
    ts: float,
    interface_name: InterfaceName | None,
) -> Observation | None:
    labels = {"rule": rule.name}
    for key, template in rule.labels:
        value = template.render(groups)
        if value is not None:
            labels[key] = value
    kind = rule.kind
    if kind == "link_down" or kind == "link_up":
        port = _interface(rule, groups, device, interface_name)
        if port is None:
            return None
        admin = labels.get("admin", "up").lower()
        if admin in ("up", "down"):
            labels["admin"] = admin
        else:
            labels.pop("admin")  # not something we understand: the correlator assumes up
        status = STATUS_DOWN if kind == "link_down" else STATUS_UP
        return Observation(device, SOURCE, IF_OPER_STATUS, port, status, ts, labels)
    if kind == "bgp_down" or kind == "bgp_up":
        assert rule.peer is not None
        peer = rule.peer.render(groups)
        if peer is None:
            return None
        state = BGP_IDLE if kind == "bgp_down" else BGP_ESTABLISHED
        return Observation(device, SOURCE, BGP_PEER_STATE, peer, state, ts, labels)
    return Observation(device, SOURCE, DEVICE_RESTARTED, "", 0, ts, labels)


def _interface(
    rule: CompiledRule,
    groups: Mapping[str, str | None],
    device: str,
    interface_name: InterfaceName | None,
) -> str | None:
    if rule.interface is not None:
        name = rule.interface.render(groups)
        if name is not None:
            return cisco_ios_ifname(name) if rule.cisco_ios else name
    if rule.if_index is not None and interface_name is not None:
        index = rule.if_index.render(groups)
        if index is not None and index.isascii() and index.isdigit() and len(index) <= 10:
            return interface_name(device, int(index))
    return None
