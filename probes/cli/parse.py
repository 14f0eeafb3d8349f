"""From CLI command output to facts, and from facts to what changed -- no I/O here.

Each allowed command (:mod:`probes.cli.commands`) has one parser: a TextFSM template
from ntc-templates, chosen *by file name* (its index matches commands by prefix, so it
would hand ``show interfaces transceiver`` to the ``show interfaces`` template), or a
small regex parser here where ntc-templates has none or is too strict
(``show interfaces terse`` and ``... diagnostics optics`` on Junos, ``display ont info
summary`` on SmartAX, whose template stops on an ONT without a description).

Output a parser cannot use raises :class:`OutputError`; the poller counts and logs it
and keeps what it knew from that command before.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

import textfsm  # type: ignore[import-untyped]

from probes.cli.commands import Command, CommandSet, Platform
from probes.types import (
    BGP_PEER_STATE,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_OPER_STATUS,
    ONT_RX_DBM,
    ONT_STATE,
    OPTICAL_RX_DBM,
    REACHABLE,
    Observation,
)

SOURCE: Final = "cli"

# Shared names (probes.types) this probe emits, all with instance = interface name as
# SNMP's ifName spells it (see canonical_interface), except BGP_PEER_STATE (neighbor
# address): IF_OPER_STATUS (labels admin, alias), IF_IN_ERRORS, IF_IN_FCS_ERRORS (raw
# counters), OPTICAL_RX_DBM (labels channel on multi-lane optics), BGP_PEER_STATE
# (labels state, remote_as, admin). Names only this probe has so far:

# BGP4-MIB bgpPeerState; 0 where the device printed a state we do not know.
BGP_STATES: Final[Mapping[str, int]] = MappingProxyType(
    {"idle": 1, "connect": 2, "active": 3, "opensent": 4, "openconfirm": 5, "established": 6}
)
BGP_ESTABLISHED: Final = 6
ONT_ONLINE: Final = 1
ONT_OFFLINE: Final = 2
NO_LIGHT_DBM: Final = -40.0  # what "- Inf dBm" (no light at all) is reported as

DEADBAND: Final[Mapping[str, float]] = MappingProxyType({OPTICAL_RX_DBM: 0.5, ONT_RX_DBM: 0.5})
"""Optical levels wander by tenths of a dB: a new value is news once it moved this much
from the last one reported."""

_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing a command said, before it is stamped with device and time."""

    name: str
    instance: str
    value: int | float
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)

    @property
    def key(self) -> Key:
        """What a fact is about: name, instance and (optics lanes) channel."""
        return (self.name, self.instance, self.labels.get("channel", ""))


class OutputError(Exception):
    """Output we cannot use. ``reason``: ``rejected`` (the device refused the command)
    or ``unparsed`` (we did not recognise the output); ``detail`` says more."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- entry point ---------------------------------------------------------------------

_REJECTED = re.compile(
    r"^\s*(?:%\s*(?:invalid|incomplete|ambiguous|unknown|unrecognized)\b|"
    r"(?:error|failure)\s*:|syntax error|unknown command|unrecognized command)",
    re.IGNORECASE,
)
_NO_BGP = re.compile(
    r"^\s*(?:%\s*)?(?:info\s*:\s*)?bgp\b.*\b(?:not active|not running|not configured|"
    r"not enabled)",
    re.IGNORECASE,
)
_MAY_BE_EMPTY: Final[frozenset[CommandSet]] = frozenset({"bgp", "optics"})


def parse(command: Command, text: str) -> list[Fact]:
    """The facts in ``text``, the output of ``command``; raises :class:`OutputError`."""
    head = [line for line in text.splitlines()[:8] if line.strip()][:3]
    first = head[0] if head else ""
    refusal = next((line for line in head if _REJECTED.match(line)), None)
    if refusal is not None:  # IOS puts a "^" line above its "% Invalid input"
        raise OutputError("rejected", f"{command.text!r}: {refusal.strip()[:120]}")
    if command.command_set == "bgp" and any(_NO_BGP.match(line) for line in head):
        return []
    facts = _PARSERS[command.platform, command.command_set](text)
    if not facts and command.command_set not in _MAY_BE_EMPTY:
        what = "empty output" if not first else f"no row recognised (first line {first!r:.80})"
        raise OutputError("unparsed", f"{command.text!r}: {what}")
    return facts


def check_templates(platform: Platform) -> list[str]:
    """The ntc-templates files ``platform`` needs that are missing (a packaging fault)."""
    missing = []
    for (plat, _), name in _TEMPLATES.items():
        if plat == platform and not (_template_dir() / name).is_file():
            missing.append(name)
    return missing


# --- what changed ----------------------------------------------------------------------


def changes(
    prev: Mapping[Key, Fact] | None, facts: Iterable[Fact]
) -> tuple[dict[Key, Fact], list[Fact]]:
    """The new state of one command and the facts to report.

    ``prev is None`` (first good read): every fact is reported -- the baseline. Later, a
    fact is reported when its value or labels differ from the state's, except that an
    optical level within :data:`DEADBAND` of the last reported one is neither reported
    nor stored. Instances that disappeared are dropped without a report. When the output
    names an instance twice, the last one wins.
    """
    state: dict[Key, Fact] = {}
    for fact in facts:
        state[fact.key] = fact
    if prev is None:
        return state, list(state.values())
    out: list[Fact] = []
    for key, fact in state.items():
        old = prev.get(key)
        if old is None:
            out.append(fact)
        elif old.value != fact.value or old.labels != fact.labels:
            band = DEADBAND.get(fact.name)
            small = band is not None and abs(fact.value - old.value) < band
            if small and old.labels == fact.labels:
                state[key] = old
            else:
                out.append(fact)
    return state, out


def observation(device: str, ts: float, fact: Fact) -> Observation:
    return Observation(device, SOURCE, fact.name, fact.instance, fact.value, ts, fact.labels)


def reachable(device: str, ts: float, *, answered: bool, reason: str) -> Observation:
    """The one ``REACHABLE`` observation of every poll (``reason`` ``ok`` or an error)."""
    return Observation(device, SOURCE, REACHABLE, "", 1 if answered else 0, ts, {"reason": reason})


# --- interface names -------------------------------------------------------------------

# Instances use the name SNMP's ifName gives, so CLI and SNMP facts about one port meet:
# IOS ifName is the short form ("Gi0/1"), IOS-XR's the long one ("GigabitEthernet0/0/0/0").
_IOS_SHORT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "FastEthernet": "Fa",
        "GigabitEthernet": "Gi",
        "TwoGigabitEthernet": "Tw",
        "FiveGigabitEthernet": "Fi",
        "TenGigabitEthernet": "Te",
        "TwentyFiveGigE": "Twe",
        "FortyGigabitEthernet": "Fo",
        "HundredGigE": "Hu",
        "AppGigabitEthernet": "Ap",
        "Ethernet": "Et",
        "Port-channel": "Po",
        "Loopback": "Lo",
        "Vlan": "Vl",
        "Tunnel": "Tu",
        "Serial": "Se",
        "Null": "Nu",
        "Dialer": "Di",
        "Multilink": "Mu",
        "Virtual-Access": "Vi",
        "Virtual-Template": "Vt",
        "Cellular": "Ce",
        "BDI": "BD",
    }
)
"""Kept in step with ``probes.syslog.match.CISCO_IOS_SHORT`` (same naming, other input)."""
_XR_LONG: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Gi": "GigabitEthernet",
        "Te": "TenGigE",
        "TF": "TwentyFiveGigE",
        "Fo": "FortyGigE",
        "Fi": "FiftyGigE",
        "Hu": "HundredGigE",
        "TH": "TwoHundredGigE",
        "FH": "FourHundredGigE",
        "BE": "Bundle-Ether",
        "BP": "Bundle-POS",
        "PO": "POS",
        "BV": "BVI",
        "Lo": "Loopback",
        "Nu": "Null",
        "Mg": "MgmtEth",
        "tt": "tunnel-te",
        "ti": "tunnel-ip",
    }
)
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z-]*?)(\d.*)$")
_HUAWEI_SUFFIX = re.compile(r"\(\w+\)$")  # "GigabitEthernet15/1/0(10G)"


def canonical_interface(platform: Platform, name: str) -> str:
    """``name`` as the device's SNMP ifName would spell it (unknown forms unchanged)."""
    if platform == "huawei":
        return _HUAWEI_SUFFIX.sub("", name)
    if platform not in ("cisco_ios", "cisco_xr"):
        return name
    m = _PREFIX.match(name)
    if m is None:
        return name
    table = _IOS_SHORT if platform == "cisco_ios" else _XR_LONG
    prefix = table.get(m.group(1))
    return name if prefix is None else prefix + m.group(2)


# --- TextFSM --------------------------------------------------------------------------


def _template_dir() -> Any:
    return resources.files("ntc_templates") / "templates"


@functools.cache
def _template_text(name: str) -> str:
    return str((_template_dir() / name).read_text(encoding="utf-8"))


def _rows(template: str, text: str) -> list[dict[str, Any]]:
    try:
        fsm = textfsm.TextFSM(io.StringIO(_template_text(template)))
        rows: list[dict[str, Any]] = fsm.ParseTextToDicts(text)
    except textfsm.Error as exc:
        raise OutputError("unparsed", f"{template}: {exc}") from None
    except OSError as exc:
        raise OutputError("unparsed", f"{template} unreadable (ntc-templates?): {exc}") from None
    return rows


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


_FLOAT = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


def _dbm(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" ", "")
    if text.lower() in ("-inf", "inf"):
        return NO_LIGHT_DBM
    return float(text) if _FLOAT.match(text) else None


def _oper(word: str) -> int:
    word = word.strip().lower()
    if word.startswith("up"):
        return 1
    if word.startswith("dormant") or word.startswith("^down"):
        return 5  # IF-MIB dormant: standby, waiting for an event
    if word.startswith(("down", "*down", "admin-down")):
        return 2
    return 4  # unknown


def _port(
    platform: Platform, name: str, oper: int, admin_up: bool, description: str = ""
) -> Fact:
    labels = {"admin": "up" if admin_up else "down"}
    if description:
        labels["alias"] = description
    return Fact(IF_OPER_STATUS, canonical_interface(platform, name), oper, labels)


def _counters(platform: Platform, name: str, counters: Mapping[str, Any]) -> list[Fact]:
    out = []
    instance = canonical_interface(platform, name)
    for obs_name, raw in counters.items():
        value = _int(raw)
        if value is not None:
            out.append(Fact(obs_name, instance, value))
    return out


def _bgp(peer: str, state_text: str, remote_as: str) -> Fact:
    text = state_text.strip()
    admin_down = "admin" in text.lower()
    if text.isdigit() or text.lower().startswith("establ"):
        name = "established"
    else:
        name = text.split()[0].split("(")[0].lower() if text else "unknown"
    value = BGP_STATES.get(name, 0)
    labels = {"state": name, "remote_as": remote_as, "admin": "down" if admin_down else "up"}
    return Fact(BGP_PEER_STATE, peer, value, labels)


# --- per-command parsers ---------------------------------------------------------------

_TEMPLATES: Final[Mapping[tuple[Platform, CommandSet], str]] = MappingProxyType(
    {
        ("cisco_ios", "interfaces"): "cisco_ios_show_interfaces.textfsm",
        ("cisco_ios", "optics"): "cisco_ios_show_interface_transceiver.textfsm",
        ("cisco_ios", "bgp"): "cisco_ios_show_ip_bgp_summary.textfsm",
        ("cisco_xr", "interfaces"): "cisco_xr_show_interface_brief.textfsm",
        ("cisco_xr", "bgp"): "cisco_xr_show_ip_bgp_summary.textfsm",
        ("juniper_junos", "bgp"): "juniper_junos_show_bgp_summary.textfsm",
        ("huawei", "interfaces"): "huawei_vrp_display_interface_brief.textfsm",
        ("huawei", "bgp"): "huawei_vrp_display_bgp_peer.textfsm",
    }
)


def _ios_interfaces(text: str) -> list[Fact]:
    out: list[Fact] = []
    for r in _rows(_TEMPLATES["cisco_ios", "interfaces"], text):
        link = r["LINK_STATUS"].strip().lower()
        if link == "deleted":
            continue
        name = r["INTERFACE"]
        out.append(
            _port("cisco_ios", name, _oper(r["PROTOCOL_STATUS"]),
                  not link.startswith("administratively"), r["DESCRIPTION"].strip())
        )
        out += _counters(
            "cisco_ios", name, {IF_IN_ERRORS: r["INPUT_ERRORS"], IF_IN_FCS_ERRORS: r["CRC"]}
        )
    return out


def _ios_optics(text: str) -> list[Fact]:
    out = []
    for r in _rows(_TEMPLATES["cisco_ios", "optics"], text):
        dbm = _dbm(r["RX_PWR"])
        if dbm is not None:
            out.append(Fact(OPTICAL_RX_DBM, canonical_interface("cisco_ios", r["INTERFACE"]), dbm))
    return out


def _ios_bgp(text: str) -> list[Fact]:
    return [
        _bgp(r["BGP_NEIGHBOR"], r["STATE_OR_PREFIXES_RECEIVED"], r["NEIGHBOR_AS"])
        for r in _rows(_TEMPLATES["cisco_ios", "bgp"], text)
        if r["BGP_NEIGHBOR"]
    ]


def _xr_interfaces(text: str) -> list[Fact]:
    return [
        _port("cisco_xr", r["INTERFACE"], _oper(r["LINEP_STATE"]), r["INTF_STATE"] != "admin-down")
        for r in _rows(_TEMPLATES["cisco_xr", "interfaces"], text)
    ]


def _xr_bgp(text: str) -> list[Fact]:
    return [
        _bgp(r["BGP_NEIGH"], r["STATE_PFXRCD"], r["NEIGH_AS"])
        for r in _rows(_TEMPLATES["cisco_xr", "bgp"], text)
    ]


_TERSE = re.compile(r"^\s*(?P<name>[a-z][\w/.:-]*)\s+(?P<admin>up|down)\s+(?P<link>up|down)\b")


def _junos_interfaces(text: str) -> list[Fact]:
    out = []
    for line in text.splitlines():
        m = _TERSE.match(line)
        if m is not None:
            up = m["link"] == "up"
            out.append(_port("juniper_junos", m["name"], 1 if up else 2, m["admin"] == "up"))
    return out


_OPTICS_IF = re.compile(r"^\s*Physical interface:\s*(?P<name>\S+)")
_OPTICS_LANE = re.compile(r"^\s*Lane\s+(?P<lane>\d+)\s*$")
_OPTICS_RX = re.compile(
    r"^\s*(?:Receiver signal average optical power|Laser receiver power|Laser rx power)\s+:"
    r"\s*[\d.]+\s*mW\s*/\s*(?P<dbm>-?\s?Inf|-?[\d.]+)\s*dBm",
    re.IGNORECASE,
)


def _junos_optics(text: str) -> list[Fact]:
    """One OPTICAL_RX_DBM per interface (SFP), or per lane with label ``channel`` (QSFP
    and up), as gNMI reports physical channels."""
    out = []
    name: str | None = None
    lane: str | None = None
    for line in text.splitlines():
        if (m := _OPTICS_IF.match(line)) is not None:
            name, lane = m["name"], None
        elif (m := _OPTICS_LANE.match(line)) is not None:
            lane = m["lane"]
        elif name is not None and (m := _OPTICS_RX.match(line)) is not None:
            dbm = _dbm(m["dbm"])
            if dbm is not None:
                labels = _NO_LABELS if lane is None else {"channel": lane}
                out.append(Fact(OPTICAL_RX_DBM, name, dbm, labels))
    return out


def _junos_bgp(text: str) -> list[Fact]:
    return [
        _bgp(r["PEER_IP"], r["STATE"], r["PEER_AS"])
        for r in _rows(_TEMPLATES["juniper_junos", "bgp"], text)
    ]


_HUAWEI_BRIEF_HEAD = re.compile(r"^\s*Interface\s+PHY\s+Protocol\b", re.MULTILINE)


def _huawei_interfaces(text: str) -> list[Fact]:
    # The legend above the table differs between VRP releases, and the template stops
    # on a legend line it does not know: give it the table only.
    head = _HUAWEI_BRIEF_HEAD.search(text)
    if head is not None:
        text = text[head.start():]
    out: list[Fact] = []
    for r in _rows(_TEMPLATES["huawei", "interfaces"], text):
        name = r["INTERFACE"]
        phy = r["PHY"]
        oper = _oper(phy) if phy.startswith("^") else _oper(r["PROTOCOL"])  # ^down: standby
        out.append(_port("huawei", name, oper, phy != "*down"))
        out += _counters("huawei", name, {IF_IN_ERRORS: r["INERRORS"]})
    return out


def _huawei_bgp(text: str) -> list[Fact]:
    return [
        _bgp(r["PEER"], r["STATE"], r["ASN"]) for r in _rows(_TEMPLATES["huawei", "bgp"], text)
    ]


_ONT_PORT = re.compile(r"^\s*In port (?P<port>\d+/\s*\d+/\d+)\s*,")
_ONT_STATE_HEAD = re.compile(r"^\s*ID\s+State\s+UpTime\s+DownTime\s+DownCause")
_ONT_SN_HEAD = re.compile(r"^\s*ONT\s+SN\s+Type\s+Distance")
_ONT_STATE_ROW = re.compile(
    r"^\s*(?P<id>\d+)\s+(?P<state>online|offline)\s+(?:-|\S+ \S+)\s+(?:-|\S+ \S+)"
    r"\s+(?P<cause>.*?)\s*$"
)
_ONT_SN_ROW = re.compile(
    r"^\s*(?P<id>\d+)\s+\S+\s+\S+\s+(?:-|\d+)\s+(?P<rx>-|-?\d+(?:\.\d+)?)/(?:-|-?\d+(?:\.\d+)?)"
)


def down_cause(text: str) -> str:
    """A SmartAX "Last DownCause" as a short label: ``dying-gasp`` (the ONT lost power and
    said so), ``LOS`` (loss of signal, LOSi/LOBi: the fibre), else the text; ``""``: none."""
    text = text.strip()
    if text in ("", "-"):
        return ""
    low = text.lower()
    if "dying" in low and "gasp" in low:
        return "dying-gasp"
    if low.startswith(("los", "lob")):
        return "LOS"
    return text


def _smartax_ont(text: str) -> list[Fact]:
    out: list[Fact] = []
    port: str | None = None
    section = ""
    for line in text.splitlines():
        m = _ONT_PORT.match(line)
        if m is not None:
            port, section = m["port"].replace(" ", ""), ""
            continue
        if _ONT_STATE_HEAD.match(line):
            section = "state"
            continue
        if _ONT_SN_HEAD.match(line):
            section = "optics"
            continue
        if port is None:
            continue
        if section == "state" and (m := _ONT_STATE_ROW.match(line)) is not None:
            cause = down_cause(m["cause"])
            labels = {"last_down_cause": cause} if cause else _NO_LABELS
            online = m["state"] == "online"
            out.append(
                Fact(ONT_STATE, f"{port}/{m['id']}", ONT_ONLINE if online else ONT_OFFLINE, labels)
            )
        elif section == "optics" and (m := _ONT_SN_ROW.match(line)) is not None:
            dbm = _dbm(m["rx"])
            if dbm is not None:
                out.append(Fact(ONT_RX_DBM, f"{port}/{m['id']}", dbm))
    return out


_PARSERS: Final[Mapping[tuple[Platform, CommandSet], Callable[[str], list[Fact]]]] = (
    MappingProxyType(
        {
            ("cisco_ios", "interfaces"): _ios_interfaces,
            ("cisco_ios", "optics"): _ios_optics,
            ("cisco_ios", "bgp"): _ios_bgp,
            ("cisco_xr", "interfaces"): _xr_interfaces,
            ("cisco_xr", "bgp"): _xr_bgp,
            ("juniper_junos", "interfaces"): _junos_interfaces,
            ("juniper_junos", "optics"): _junos_optics,
            ("juniper_junos", "bgp"): _junos_bgp,
            ("huawei", "interfaces"): _huawei_interfaces,
            ("huawei", "bgp"): _huawei_bgp,
            ("huawei_smartax", "ont"): _smartax_ont,
        }
    )
)
