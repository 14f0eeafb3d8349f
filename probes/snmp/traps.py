"""Receiving SNMP traps and INFORMs (v1, v2c, v3 USM) and turning them into Observations.

Three layers, the first two without I/O:

* **decode** -- :func:`decode_message` reads one datagram. v1 and v2c are decoded here
  (a small BER reader, ~20x less CPU than pysnmp's pyasn1 path); for v3 only the clear
  header is read (engine ID, user) and pysnmp does USM authentication and decryption.
  v1 traps are translated to the v2 form (RFC 3584 3.1): every notification is
  ``sysUpTime.0, snmpTrapOID.0, varbinds...``.
* **map** -- :func:`map_notification` turns one notification from one device into
  Observations: linkDown/linkUp -> ``IF_OPER_STATUS``, coldStart/warmStart ->
  ``DEVICE_RESTARTED``, BGP established / backward transition (BGP4-MIB, CISCO-BGP4-MIB,
  BGP4-V2-MIB-JUNIPER, ARISTA-BGP4V2-MIB) -> :data:`BGP_PEER_STATE`.
* **receive** -- :class:`TrapReceiver`, an ``EventSource``: one UDP socket owned by a
  pysnmp asyncio transport. A datagram is decoded where it arrives and the notification
  put on a bounded queue; a separate task resolves the device, maps and publishes in
  batches. Nothing on the receive path waits: a full queue drops and counts.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config as pysnmp_config
from pysnmp.entity import engine as pysnmp_engine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c as pysnmp_v2c

from probes.errors import ProbeConfigError
from probes.snmp.trap_config import TrapReceiverConfig, TrapV3User
from probes.types import (
    BGP_PEER_STATE,
    DEVICE_RESTARTED,
    IF_OPER_STATUS,
    STATUS_DOWN,
    STATUS_NAMES,
    STATUS_UP,
    DeviceResolver,
    Observation,
    Publish,
)

logger = logging.getLogger(__name__)

SOURCE: Final = "trap"
"""value: BGP FSM state (1 idle .. 6 established); instance: peer address; labels: event."""

Oid = tuple[int, ...]
VarValue = int | bytes | str | Oid | None
"""INTEGER, Counter*, Gauge32, TimeTicks -> int; OCTET STRING, Opaque -> bytes;
IpAddress -> dotted str; OBJECT IDENTIFIER -> tuple; NULL and exceptions -> None."""
VarBind = tuple[Oid, VarValue]


def oid(text: str) -> Oid:
    return tuple(int(p) for p in text.strip(".").split("."))


def dotted(value: Oid) -> str:
    return ".".join(map(str, value))


# --- OIDs ------------------------------------------------------------------------------

SYS_UPTIME: Final = oid("1.3.6.1.2.1.1.3.0")
SNMP_TRAP_OID: Final = oid("1.3.6.1.6.3.1.1.4.1.0")
SNMP_TRAP_ENTERPRISE: Final = oid("1.3.6.1.6.3.1.1.4.3.0")
SNMP_TRAP_ADDRESS: Final = oid("1.3.6.1.6.3.18.1.3.0")
SNMP_TRAP_COMMUNITY: Final = oid("1.3.6.1.6.3.18.1.4.0")
SNMP_TRAPS: Final = oid("1.3.6.1.6.3.1.1.5")
COLD_START: Final = (*SNMP_TRAPS, 1)
WARM_START: Final = (*SNMP_TRAPS, 2)
LINK_DOWN: Final = (*SNMP_TRAPS, 3)
LINK_UP: Final = (*SNMP_TRAPS, 4)

IF_INDEX: Final = oid("1.3.6.1.2.1.2.2.1.1")
IF_DESCR: Final = oid("1.3.6.1.2.1.2.2.1.2")
IF_ADMIN_STATUS: Final = oid("1.3.6.1.2.1.2.2.1.7")
IF_OPER_STATUS_COL: Final = oid("1.3.6.1.2.1.2.2.1.8")
IF_NAME: Final = oid("1.3.6.1.2.1.31.1.1.1.1")
IF_ALIAS: Final = oid("1.3.6.1.2.1.31.1.1.1.18")

BGP_ESTABLISHED: Final = "established"
BGP_BACKWARD: Final = "backward_transition"
BGP_CHANGE: Final = "state_change"
BGP_STATE_ESTABLISHED: Final = 6

# Trap OID -> what happened. v1 traps arrive as ENTERPRISE.0.SPECIFIC (RFC 3584), which
# for BGP4-MIB gives both bgp(15).0.n (RFC 4273) and bgpTraps(15.7).0.n (RFC 1657 via v1).
BGP_TRAPS: Final[Mapping[Oid, str]] = {
    oid("1.3.6.1.2.1.15.0.1"): BGP_ESTABLISHED,  # bgpEstablishedNotification
    oid("1.3.6.1.2.1.15.0.2"): BGP_BACKWARD,  # bgpBackwardTransNotification
    oid("1.3.6.1.2.1.15.7.1"): BGP_ESTABLISHED,  # bgpEstablished (RFC 1657)
    oid("1.3.6.1.2.1.15.7.2"): BGP_BACKWARD,  # bgpBackwardTransition (RFC 1657)
    oid("1.3.6.1.2.1.15.7.0.1"): BGP_ESTABLISHED,  # the same, sent as v1
    oid("1.3.6.1.2.1.15.7.0.2"): BGP_BACKWARD,
    oid("1.3.6.1.4.1.9.9.187.0.1"): BGP_CHANGE,  # cbgpFsmStateChange
    oid("1.3.6.1.4.1.9.9.187.0.2"): BGP_BACKWARD,  # cbgpBackwardTransition
    oid("1.3.6.1.4.1.9.9.187.0.5"): BGP_ESTABLISHED,  # cbgpPeer2EstablishedNotification
    oid("1.3.6.1.4.1.9.9.187.0.6"): BGP_BACKWARD,  # cbgpPeer2BackwardTransNotification
    oid("1.3.6.1.4.1.9.9.187.0.7"): BGP_CHANGE,  # cbgpPeer2FsmStateChange
    oid("1.3.6.1.4.1.9.9.187.0.8"): BGP_BACKWARD,  # cbgpPeer2BackwardTransition
    oid("1.3.6.1.4.1.2636.5.1.1.1.0.1"): BGP_ESTABLISHED,  # jnxBgpM2Established
    oid("1.3.6.1.4.1.2636.5.1.1.1.0.2"): BGP_BACKWARD,  # jnxBgpM2BackwardTransition
    oid("1.3.6.1.4.1.30065.4.1.0.1"): BGP_ESTABLISHED,  # aristaBgp4V2EstablishedNotif.
    oid("1.3.6.1.4.1.30065.4.1.0.2"): BGP_BACKWARD,  # aristaBgp4V2BackwardTransitionNotif.
}

IndexKind = Literal["ipv4", "inet", "inet_nolen"]
# Peer state columns and how their index names the peer: "ipv4" a.b.c.d;
# "inet" ... type.len.addr (InetAddressType, InetAddress); "inet_nolen" ... type.addr
# (Junos leaves the length out of jnxBgpM2PeerTable's index).
BGP_STATE_COLUMNS: Final[tuple[tuple[Oid, IndexKind], ...]] = (
    (oid("1.3.6.1.2.1.15.3.1.2"), "ipv4"),  # bgpPeerState
    (oid("1.3.6.1.4.1.9.9.187.1.2.5.1.3"), "inet"),  # cbgpPeer2State
    (oid("1.3.6.1.4.1.2636.5.1.1.2.1.1.1.2"), "inet_nolen"),  # jnxBgpM2PeerState
    (oid("1.3.6.1.4.1.30065.4.1.1.2.1.13"), "inet"),  # aristaBgp4V2PeerState
)
# Columns whose *value* is the peer address (IpAddress or InetAddress octets).
BGP_ADDRESS_COLUMNS: Final = (
    oid("1.3.6.1.2.1.15.3.1.7"),  # bgpPeerRemoteAddr
    oid("1.3.6.1.4.1.2636.5.1.1.2.1.1.1.11"),  # jnxBgpM2PeerRemoteAddr
)

# --- decode ----------------------------------------------------------------------------

INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OBJECT_IDENTIFIER: Final = 0x06
SEQUENCE: Final = 0x30
IP_ADDRESS: Final = 0x40
TIMETICKS: Final = 0x43
TRAP_V1_PDU: Final = 0xA4
INFORM_PDU: Final = 0xA6
TRAP_V2_PDU: Final = 0xA7
RESPONSE_PDU: Final = 0xA2
OTHER_PDUS: Final = frozenset({0xA0, 0xA1, 0xA2, 0xA3, 0xA5, 0xA8})  # get .. report
_UNSIGNED: Final = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 .. Counter64
_OPAQUE: Final = frozenset({0x44, 0x45})
_EXCEPTIONS: Final = frozenset({0x80, 0x81, 0x82})  # noSuchObject, noSuchInstance, eoMib
_MAX_SUBIDS: Final = 128


class DecodeError(ValueError):
    """The datagram is not a well-formed SNMP message (counted as ``malformed``)."""


@dataclass(frozen=True, slots=True)
class Message:
    """What :func:`decode_message` read. For v3 only the clear header is known."""

    version: int  # 0 = v1, 1 = v2c, 3 = v3
    community: bytes = b""
    pdu_type: int = 0  # BER tag of the PDU; 0 for v3 (encrypted)
    varbinds: tuple[VarBind, ...] = ()  # notifications only, in v2 form
    pdu_offset: int = 0  # index of the PDU tag in the datagram (to answer an INFORM)
    engine_id: bytes = b""  # v3 msgAuthoritativeEngineID
    user: bytes = b""  # v3 msgUserName

    @property
    def is_notification(self) -> bool:
        return self.pdu_type in (TRAP_V1_PDU, TRAP_V2_PDU, INFORM_PDU)


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, first value byte, end of value) of the BER TLV at ``pos``."""
    if end - pos < 2:
        raise DecodeError(f"truncated at byte {pos}")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4:
            raise DecodeError(f"unsupported length form 0x{length:02x} at byte {pos - 1}")
        if end - pos < n:
            raise DecodeError(f"truncated length at byte {pos}")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if end - pos < length:
        raise DecodeError(f"value of tag 0x{tag:02x} runs past the end ({length} bytes)")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _tlv(buf, pos, end)
    if got != tag:
        raise DecodeError(f"{what}: expected tag 0x{tag:02x}, got 0x{got:02x}")
    return start, stop


def _int(buf: bytes, start: int, stop: int) -> int:
    if not 1 <= stop - start <= 9:
        raise DecodeError(f"INTEGER of {stop - start} bytes")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def _uint(buf: bytes, start: int, stop: int) -> int:
    # Lenient like net-snmp: some agents drop the leading 0x00 of large counters.
    if not 1 <= stop - start <= 9:
        raise DecodeError(f"unsigned value of {stop - start} bytes")
    return int.from_bytes(buf[start:stop], "big")


def _oid(buf: bytes, start: int, stop: int) -> Oid:
    chunk = buf[start:stop]
    if not chunk or chunk[-1] & 0x80:
        raise DecodeError("empty or truncated OBJECT IDENTIFIER")
    if max(chunk) < 0x80:  # every sub-identifier fits in one byte: the usual case
        subids = list(chunk)
    else:
        subids = []
        value = 0
        for byte in chunk:
            value = (value << 7) | (byte & 0x7F)
            if value > 0xFFFFFFFF:
                raise DecodeError("OBJECT IDENTIFIER sub-identifier above 2^32-1")
            if not byte & 0x80:
                subids.append(value)
                value = 0
    if len(subids) >= _MAX_SUBIDS:
        raise DecodeError(f"OBJECT IDENTIFIER of {len(subids) + 1} sub-identifiers")
    first = subids[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return head + tuple(subids[1:])


def _value(tag: int, buf: bytes, start: int, stop: int) -> VarValue:
    if tag == INTEGER:
        return _int(buf, start, stop)
    if tag == OCTET_STRING or tag in _OPAQUE:
        return bytes(buf[start:stop])
    if tag == OBJECT_IDENTIFIER:
        return _oid(buf, start, stop)
    if tag in _UNSIGNED:
        return _uint(buf, start, stop)
    if tag == IP_ADDRESS:
        if stop - start != 4:
            raise DecodeError(f"IpAddress of {stop - start} bytes")
        return str(ipaddress.IPv4Address(bytes(buf[start:stop])))
    if tag == NULL or tag in _EXCEPTIONS:
        return None
    raise DecodeError(f"unknown value type 0x{tag:02x}")


def _varbinds(buf: bytes, pos: int, end: int) -> list[VarBind]:
    start, stop = _expect(buf, pos, end, SEQUENCE, "variable-bindings")
    out: list[VarBind] = []
    while start < stop:
        vb_start, vb_stop = _expect(buf, start, stop, SEQUENCE, "varbind")
        name_start, name_stop = _expect(buf, vb_start, vb_stop, OBJECT_IDENTIFIER, "name")
        tag, value_start, value_stop = _tlv(buf, name_stop, vb_stop)
        out.append((_oid(buf, name_start, name_stop), _value(tag, buf, value_start, value_stop)))
        start = vb_stop
    return out


def _v1_trap(buf: bytes, start: int, stop: int) -> tuple[VarBind, ...]:
    """Trap-PDU fields in the v2 form of RFC 3584 3.1 (the community is left out)."""
    ent_start, ent_stop = _expect(buf, start, stop, OBJECT_IDENTIFIER, "enterprise")
    enterprise = _oid(buf, ent_start, ent_stop)
    addr_start, addr_stop = _expect(buf, ent_stop, stop, IP_ADDRESS, "agent-addr")
    agent = _value(IP_ADDRESS, buf, addr_start, addr_stop)
    gen_start, gen_stop = _expect(buf, addr_stop, stop, INTEGER, "generic-trap")
    generic = _int(buf, gen_start, gen_stop)
    spec_start, spec_stop = _expect(buf, gen_stop, stop, INTEGER, "specific-trap")
    specific = _int(buf, spec_start, spec_stop)
    ts_start, ts_stop = _expect(buf, spec_stop, stop, TIMETICKS, "time-stamp")
    uptime = _uint(buf, ts_start, ts_stop)
    if not 0 <= generic <= 6 or specific < 0:
        raise DecodeError(f"generic-trap {generic} / specific-trap {specific} out of range")
    trap = (*SNMP_TRAPS, generic + 1) if generic < 6 else (*enterprise, 0, specific)
    return (
        (SYS_UPTIME, uptime),
        (SNMP_TRAP_OID, trap),
        *_varbinds(buf, ts_stop, stop),
        (SNMP_TRAP_ADDRESS, agent),
        (SNMP_TRAP_ENTERPRISE, enterprise),
    )


def _v2_notification(buf: bytes, start: int, stop: int) -> tuple[VarBind, ...]:
    pos = start
    for what in ("request-id", "error-status", "error-index"):
        value_start, pos = _expect(buf, pos, stop, INTEGER, what)
        _int(buf, value_start, pos)
    return tuple(_varbinds(buf, pos, stop))


def _v3_header(buf: bytes, pos: int, end: int) -> Message:
    start, stop = _expect(buf, pos, end, SEQUENCE, "msgGlobalData")
    for what in ("msgID", "msgMaxSize"):
        value_start, start = _expect(buf, start, stop, INTEGER, what)
        _int(buf, value_start, start)
    flags_start, start = _expect(buf, start, stop, OCTET_STRING, "msgFlags")
    if start - flags_start != 1:
        raise DecodeError("msgFlags is not one byte")
    model_start, start = _expect(buf, start, stop, INTEGER, "msgSecurityModel")
    model = _int(buf, model_start, start)
    params_start, params_stop = _expect(buf, stop, end, OCTET_STRING, "msgSecurityParameters")
    engine_id = user = b""
    if model == 3:  # USM
        s, e = _expect(buf, params_start, params_stop, SEQUENCE, "UsmSecurityParameters")
        id_start, s = _expect(buf, s, e, OCTET_STRING, "msgAuthoritativeEngineID")
        engine_id = bytes(buf[id_start:s])
        for what in ("msgAuthoritativeEngineBoots", "msgAuthoritativeEngineTime"):
            value_start, s = _expect(buf, s, e, INTEGER, what)
            _int(buf, value_start, s)
        user_start, s = _expect(buf, s, e, OCTET_STRING, "msgUserName")
        user = bytes(buf[user_start:s])
    tag, _, _ = _tlv(buf, params_stop, end)
    if tag not in (SEQUENCE, OCTET_STRING):
        raise DecodeError(f"msgData: unexpected tag 0x{tag:02x}")
    return Message(3, engine_id=engine_id, user=user)


def decode_message(data: bytes) -> Message:
    """Read one SNMP datagram; raise :class:`DecodeError` (and nothing else) if broken."""
    start, stop = _expect(data, 0, len(data), SEQUENCE, "message")
    version_start, pos = _expect(data, start, stop, INTEGER, "msgVersion")
    version = _int(data, version_start, pos)
    if version == 3:
        return _v3_header(data, pos, stop)
    if version not in (0, 1):
        raise DecodeError(f"unknown SNMP version {version}")
    community_start, pdu_offset = _expect(data, pos, stop, OCTET_STRING, "community")
    community = bytes(data[community_start:pdu_offset])
    tag, pdu_start, pdu_stop = _tlv(data, pdu_offset, stop)
    if version == 0 and tag == TRAP_V1_PDU:
        varbinds = _v1_trap(data, pdu_start, pdu_stop)
    elif version == 1 and tag in (TRAP_V2_PDU, INFORM_PDU):
        varbinds = _v2_notification(data, pdu_start, pdu_stop)
    elif tag in OTHER_PDUS:
        varbinds = ()
    else:
        raise DecodeError(f"PDU type 0x{tag:02x} is not valid in SNMP version {version}")
    return Message(version, community, tag, varbinds, pdu_offset)


def _peek_version(data: bytes) -> int:
    """msgVersion, or -1 if even that cannot be read."""
    try:
        start, stop = _expect(data, 0, len(data), SEQUENCE, "message")
        value_start, value_stop = _expect(data, start, stop, INTEGER, "msgVersion")
        return _int(data, value_start, value_stop)
    except DecodeError:
        return -1


def inform_response(data: bytes, message: Message) -> bytes:
    """The Response to a v2c InformRequest: the same message with the PDU tag changed.

    RFC 3416 4.2.7: same request-id, error-status and error-index 0 (as in every
    InformRequest), the same variable-bindings.
    """
    at = message.pdu_offset
    return data[:at] + bytes((RESPONSE_PDU,)) + data[at + 1 :]


_IP_ADDRESS_TAGS: Final = rfc1902.IpAddress.tagSet


def plain_value(value: Any) -> VarValue:
    """A pysnmp/pyasn1 value as :data:`VarValue` (what :func:`decode_message` yields)."""
    try:
        if isinstance(value, univ.Choice):  # SNMPv1 NetworkAddress
            value = value.getComponent()
        if isinstance(value, univ.Null):  # also noSuchObject & co (before OctetString)
            return None
        if isinstance(value, univ.Integer):  # Integer32, Counter*, Gauge32, TimeTicks
            return int(value)
        if value.tagSet == _IP_ADDRESS_TAGS:  # v1 (RFC 1155) or v2 (RFC 2578) IpAddress
            return str(ipaddress.IPv4Address(value.asOctets()))
        if isinstance(value, univ.OctetString):
            return bytes(value.asOctets())
        if isinstance(value, univ.ObjectIdentifier):
            return tuple(value)
    except (ValueError, TypeError, AttributeError, PyAsn1Error):  # no value, bad IpAddress
        return None
    return None


# --- map -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """One authenticated trap or INFORM, in v2 form, waiting to be mapped."""

    version: Literal["1", "2c", "3"]
    source: str  # the sender's IP address as seen on the socket
    varbinds: tuple[VarBind, ...]
    ts: float
    inform: bool = False


Outcome = Literal["mapped", "unmatched", "incomplete"]


@dataclass(frozen=True, slots=True)
class Mapped:
    outcome: Outcome
    observations: tuple[Observation, ...] = ()
    trap: Oid | None = None


def trap_oid(varbinds: Sequence[VarBind]) -> Oid | None:
    for name, value in varbinds:
        if name == SNMP_TRAP_OID:
            return value if isinstance(value, tuple) else None
    return None


def sender_addresses(note: Notification) -> tuple[str, ...]:
    """Addresses to look the sender up by, in order.

    v1: the agent-addr field first (the device's own address, also behind NAT), then the
    source. v2c/v3: the source, then snmpTrapAddress.0 if a relay added it (RFC 3584).
    """
    agent = ""
    for name, value in note.varbinds:
        if name == SNMP_TRAP_ADDRESS and isinstance(value, str) and value != "0.0.0.0":
            agent = value
            break
    if not agent or agent == note.source:
        return (note.source,)
    return (agent, note.source) if note.version == "1" else (note.source, agent)


def _column(varbinds: Sequence[VarBind], column: Oid) -> list[tuple[Oid, VarValue]]:
    """(index, value) of every varbind in ``column``."""
    n = len(column)
    return [(name[n:], value) for name, value in varbinds if name[:n] == column]


def _text(value: VarValue) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00 \t\r\n")
    return value.strip() if isinstance(value, str) else ""


def _map_link(
    note: Notification,
    device: str,
    trap: Oid,
    interface_name: Callable[[str, int], str | None],
) -> Mapped:
    vbs = note.varbinds
    if_index: int | None = None
    for index, value in _column(vbs, IF_INDEX):
        if isinstance(value, int) and value > 0:
            if_index = value
            break
        if len(index) == 1:
            if_index = index[0]
            break
    if if_index is None:
        for column in (IF_OPER_STATUS_COL, IF_ADMIN_STATUS, IF_NAME, IF_DESCR):
            rows = [index for index, _ in _column(vbs, column) if len(index) == 1]
            if rows:
                if_index = rows[0][0]
                break
    if if_index is None:
        return Mapped("incomplete", trap=trap)

    def cell(column: Oid) -> VarValue:
        for index, value in _column(vbs, column):
            if index == (if_index,):
                return value
        return None

    oper = cell(IF_OPER_STATUS_COL)
    if not isinstance(oper, int) or oper not in STATUS_NAMES:
        oper = STATUS_DOWN if trap == LINK_DOWN else STATUS_UP
    admin = cell(IF_ADMIN_STATUS)
    labels = {
        "admin": STATUS_NAMES.get(admin, str(admin)) if isinstance(admin, int) else "up",
        "if_index": str(if_index),
    }
    alias = _text(cell(IF_ALIAS))
    if alias:
        labels["alias"] = alias
    name = (
        interface_name(device, if_index)
        or _text(cell(IF_NAME))
        or _text(cell(IF_DESCR))
        or str(if_index)
    )
    return Mapped(
        "mapped",
        (Observation(device, SOURCE, IF_OPER_STATUS, name, oper, note.ts, labels),),
        trap,
    )


def _address(raw: Sequence[int | str]) -> str | None:
    """An IP address from 4 or 16 octets (ints, or the parts of a dotted IPv4 string)."""
    try:
        octets = bytes(int(b) for b in raw)
    except ValueError:  # not a number, or not 0..255
        return None
    if len(octets) not in (4, 16):
        return None
    return str(ipaddress.ip_address(octets))


def _peer_from_index(index: Oid, kind: IndexKind) -> str | None:
    if kind == "ipv4":
        return _address(index) if len(index) == 4 else None
    if kind == "inet":  # ... type, length, address
        for family, size in ((1, 4), (2, 16)):
            if len(index) >= size + 2 and index[-size - 2 :-size] == (family, size):
                return _address(index[-size:])
        return None
    for family, size in ((1, 4), (2, 16)):  # "inet_nolen": ... type, address
        if len(index) >= size + 1 and index[-size - 1] == family:
            return _address(index[-size:])
    return None


def _map_bgp(note: Notification, device: str, trap: Oid, event: str) -> Mapped:
    vbs = note.varbinds
    state: int | None = None
    peer: str | None = None
    for column, kind in BGP_STATE_COLUMNS:
        for index, value in _column(vbs, column):
            if isinstance(value, int):
                state = value
                peer = _peer_from_index(index, kind)
                break
        if state is not None:
            break
    for column in BGP_ADDRESS_COLUMNS:
        for _, value in _column(vbs, column):
            if isinstance(value, str | bytes):
                peer = _address(value.split(".") if isinstance(value, str) else value) or peer
            break
    if state is None and event == BGP_ESTABLISHED:
        state = BGP_STATE_ESTABLISHED
    if state is None or not peer:
        return Mapped("incomplete", trap=trap)
    obs = Observation(device, SOURCE, BGP_PEER_STATE, peer, state, note.ts, {"event": event})
    return Mapped("mapped", (obs,), trap)


def map_notification(
    note: Notification,
    device: str,
    interface_name: Callable[[str, int], str | None],
) -> Mapped:
    """Observations for one notification from ``device``. Never raises on odd content."""
    trap = trap_oid(note.varbinds)
    if trap is None:
        return Mapped("incomplete")
    if trap in (LINK_DOWN, LINK_UP):
        return _map_link(note, device, trap, interface_name)
    if trap in (COLD_START, WARM_START):
        uptime = next((v for n, v in note.varbinds if n == SYS_UPTIME), None)
        value = uptime / 100 if isinstance(uptime, int) else 0.0
        kind = "cold_start" if trap == COLD_START else "warm_start"
        obs = Observation(device, SOURCE, DEVICE_RESTARTED, "", value, note.ts, {"kind": kind})
        return Mapped("mapped", (obs,), trap)
    event = BGP_TRAPS.get(trap)
    if event is not None:
        return _map_bgp(note, device, trap, event)
    return Mapped("unmatched", trap=trap)


# --- receive ---------------------------------------------------------------------------

STAT_KEYS: Final = (
    "received",  # datagrams read from the socket
    "notifications",  # traps and INFORMs accepted (authenticated, decoded; with dropped)
    "informs",  # ... of which INFORMs (acknowledged)
    "published",  # observations handed to publish()
    "unmatched",  # notifications of a type we do not map (logged at debug)
    "incomplete",  # a type we map, without the varbinds we need (no ifIndex, no peer)
    "unknown_sender",  # no inventory device for the sender's address
    "malformed",  # datagrams that are not SNMP, or that the decoder rejects
    "bad_community",  # v1/v2c with a community not in `communities`
    "auth_failed",  # v3: unknown user or engine ID, wrong digest, decryption error
    "ignored",  # SNMP that is not a notification (GETs, v3 engine discovery, reports)
    "dropped_overload",  # the queue was full
    "dropped_shutdown",  # still queued when the drain timeout ran out at shutdown
    "publish_failed",  # observations publish() raised for
    "kernel_drops",  # datagrams the kernel dropped (socket buffer full), Linux only
    "errors",  # a bug: an exception handling one datagram or notification (logged)
)

_DRAIN_TIMEOUT: Final = 5.0
_SLICE: Final = 0.002  # seconds of mapping between yields to the event loop
_KERNEL_POLL: Final = 10.0
_MAX_WARNED: Final = 4096

_AUTH_IDS: Final[Mapping[str, Oid]] = {
    "MD5": pysnmp_config.USM_AUTH_HMAC96_MD5,
    "SHA": pysnmp_config.USM_AUTH_HMAC96_SHA,
    "SHA224": pysnmp_config.USM_AUTH_HMAC128_SHA224,
    "SHA256": pysnmp_config.USM_AUTH_HMAC192_SHA256,
    "SHA384": pysnmp_config.USM_AUTH_HMAC256_SHA384,
    "SHA512": pysnmp_config.USM_AUTH_HMAC384_SHA512,
}
_PRIV_IDS: Final[Mapping[str | None, Oid]] = {
    None: pysnmp_config.USM_PRIV_NONE,
    "DES": pysnmp_config.USM_PRIV_CBC56_DES,
    "AES": pysnmp_config.USM_PRIV_CFB128_AES,
    "AES192": pysnmp_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": pysnmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES192C": pysnmp_config.USM_PRIV_CFB192_AES,
    "AES256C": pysnmp_config.USM_PRIV_CFB256_AES,
}

# pysnmp counts why it rejected a message in MIB scalars; we read them only when a
# message it was given produced no notification, to say why in our stats.
_PYSNMP_COUNTERS: Final[tuple[tuple[str, str, str], ...]] = (
    ("__SNMPv2-MIB", "snmpInBadCommunityNames", "bad_community"),
    ("__SNMPv2-MIB", "snmpInASNParseErrs", "malformed"),
    ("__SNMPv2-MIB", "snmpInBadVersions", "malformed"),
    ("__SNMPv2-MIB", "snmpInGenErrs", "malformed"),
    ("__SNMP-MPD-MIB", "snmpInvalidMsgs", "malformed"),
    ("__SNMP-MPD-MIB", "snmpUnknownSecurityModels", "malformed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames", "auth_failed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests", "auth_failed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors", "auth_failed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels", "auth_failed"),
    # Both are part of the normal engine-ID discovery and time sync of a v3 INFORM.
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs", "ignored"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows", "ignored"),
)


def _host(addr: Sequence[Any]) -> str:
    """The sender's IP as the inventory writes it (IPv4-mapped IPv6 unwrapped)."""
    host = str(addr[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def _check_crypto(users: Sequence[TrapV3User]) -> None:
    if not any(u.priv_protocol for u in users):
        return
    try:
        import cryptography.hazmat.primitives.ciphers  # noqa: F401
    except ImportError:
        raise ProbeConfigError(
            "SNMPv3 privacy (priv_protocol) needs the 'cryptography' package, which "
            "pysnmp uses for DES/AES: pip install 'cryptography>=43'",
            operation="snmp trap receiver",
        ) from None


class _Warnings:
    """At most one warning per (reason, address) per ``interval`` seconds."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def due(self, reason: str, address: str) -> int | None:
        """``None`` if suppressed, else how many were suppressed since the last one."""
        now = self._clock()
        key = (reason, address)
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if len(self._last) >= _MAX_WARNED:
            self._last.clear()
        self._last[key] = (now, 0)
        return 0 if last is None else last[1]


class _Transport(udp.UdpAsyncioTransport):  # type: ignore[misc]
    """pysnmp's UDP transport, with every datagram handed to the receiver first."""

    receiver: TrapReceiver

    def datagram_received(self, datagram: bytes, addr: Any) -> None:
        self.receiver.handle_datagram(datagram, addr)


class _Transport6(udp6.Udp6AsyncioTransport):  # type: ignore[misc]
    receiver: TrapReceiver

    def datagram_received(self, datagram: bytes, addr: Any) -> None:
        self.receiver.handle_datagram(datagram, addr)


@dataclass(slots=True)
class _Pysnmp:
    """The pysnmp side: an engine, its transport, and the counters we read."""

    engine: Any
    transport: Any
    domain: Oid
    counters: list[tuple[Any, str]] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)


class TrapReceiver:
    """An ``EventSource`` for SNMP traps and INFORMs: v1, v2c and v3 USM (authPriv).

    ``run`` binds the socket (``ready`` is set and ``local_address`` known once it is
    bound; a port of 0 picks a free one), then serves until ``stopping`` is set: it stops
    reading, publishes what is queued (for up to 5 s) and closes. ``stats`` counts by
    reason (see :data:`STAT_KEYS`). A bad datagram is counted and logged, never fatal;
    an exception from ``publish`` is counted (``publish_failed``) and logged.
    """

    def __init__(
        self,
        *,
        config: TrapReceiverConfig,
        resolver: DeviceResolver,
        name: str = "snmp_traps",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.ready = asyncio.Event()
        self._config = config
        self._resolver = resolver
        self._clock = clock
        self._communities = tuple(c.get_secret_value().encode() for c in config.communities)
        self._native = config.decoder == "native"
        self._pending: deque[Notification] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._warnings = _Warnings(config.warn_interval, monotonic)
        self._pysnmp: _Pysnmp | None = None
        self._sock: socket.socket | None = None
        self._local: tuple[str, int] | None = None
        self._delivered = False  # set by the pysnmp callback for the datagram in hand
        self._inform = False
        self._current: tuple[Literal["1", "2c", "3"], str] = ("3", "")
        self._v3_later: dict[tuple[bytes, bytes], _UsmKeys] = {}  # (engine ID, user)

    @property
    def local_address(self) -> tuple[str, int] | None:
        """(host, port) the socket is bound to, once ``ready`` is set."""
        return self._local

    # -- receive path: runs in the transport's datagram callback, never waits ---------

    def handle_datagram(self, data: bytes, addr: Sequence[Any]) -> None:
        """Decode one datagram and queue what it carries (called for every datagram)."""
        self.stats["received"] += 1
        try:
            self._handle(data, addr)
        except Exception:  # noqa: BLE001 -- a bug must cost one datagram; _bug logs it
            self._bug("handling a datagram from %s", addr[0])

    def _bug(self, what: str, *args: Any) -> None:
        self.stats["errors"] += 1
        if self._warnings.due("errors", "*") is not None:
            logger.exception("%s: bug while " + what, self.name, *args)

    def _handle(self, data: bytes, addr: Sequence[Any]) -> None:
        source = _host(addr)
        try:
            message = decode_message(data)
        except DecodeError as exc:
            if self._native:
                self.stats["malformed"] += 1
                logger.debug("malformed SNMP datagram from %s: %s", source, exc)
                return
            # decoder "pysnmp" is the fallback should ours reject something valid
            message = Message(_peek_version(data))
        if message.version == 3 or not self._native:
            self._via_pysnmp(data, addr, source, message)
            return
        if not any(hmac.compare_digest(message.community, c) for c in self._communities):
            self.stats["bad_community"] += 1
            self._warn("bad_community", source, "a community we do not accept")
            return
        if not message.is_notification:
            self.stats["ignored"] += 1
            return
        version: Literal["1", "2c"] = "1" if message.version == 0 else "2c"
        inform = message.pdu_type == INFORM_PDU
        note = Notification(version, source, message.varbinds, self._clock(), inform)
        if not self._enqueue(note):
            return  # an unanswered INFORM is sent again: better than acked and lost
        if inform:
            self.stats["informs"] += 1
            self._send(inform_response(data, message), addr)

    def _enqueue(self, note: Notification) -> bool:
        self.stats["notifications"] += 1
        if len(self._pending) >= self._config.max_queue:
            self.stats["dropped_overload"] += 1
            self._warn("overload", "*", "the queue is full (max_queue); dropping")
            return False
        self._pending.append(note)
        if not self._wake.is_set():
            self._wake.set()
        return True

    def _send(self, data: bytes, addr: Sequence[Any]) -> None:
        pysnmp = self._pysnmp
        if pysnmp is not None and pysnmp.transport.transport is not None:
            pysnmp.transport.transport.sendto(data, tuple(addr))

    def _via_pysnmp(self, data: bytes, addr: Sequence[Any], source: str, message: Message) -> None:
        pysnmp = self._pysnmp
        if pysnmp is None:
            return
        version: Literal["1", "2c", "3"] = (
            "1" if message.version == 0 else "2c" if message.version == 1 else "3"
        )
        later = self._v3_later.pop((message.engine_id, message.user), None)
        if later is not None:
            later.register(pysnmp.engine, message.engine_id.hex())
        self._current = (version, source)
        self._delivered = self._inform = False
        try:
            pysnmp.engine.message_dispatcher.receive_message(
                pysnmp.engine, pysnmp.domain, tuple(addr), data
            )
        except Exception as exc:  # noqa: BLE001 -- pysnmp raises anything on odd input
            self.stats["malformed"] += 1
            logger.debug("pysnmp failed on a datagram from %s: %r", source, exc)
            return
        if not self._delivered:
            self._explain_rejection(pysnmp, source, message)

    def _on_pysnmp_request(self, _engine: Any, _point: str, variables: Any, _ctx: Any) -> None:
        pdu = variables.get("pdu")
        self._inform = pdu is not None and pdu.tagSet == pysnmp_v2c.InformRequestPDU.tagSet

    def _on_pysnmp_notification(
        self,
        _engine: Any,
        _state: Any,
        _context_engine_id: Any,
        _context_name: Any,
        var_binds: Any,
        _ctx: Any,
    ) -> None:
        self._delivered = True
        version, source = self._current
        varbinds = tuple(
            (tuple(name), plain_value(value))
            for name, value in var_binds
            if tuple(name) != SNMP_TRAP_COMMUNITY  # a secret: keep it out of everything
        )
        note = Notification(version, source, varbinds, self._clock(), self._inform)
        if self._enqueue(note) and self._inform:
            self.stats["informs"] += 1

    def _explain_rejection(self, pysnmp: _Pysnmp, source: str, message: Message) -> None:
        reasons: set[str] = set()
        for i, (scalar, reason) in enumerate(pysnmp.counters):
            value = int(scalar.syntax)
            if value != pysnmp.seen[i]:
                pysnmp.seen[i] = value
                reasons.add(reason)
        reason = next(
            (r for r in ("malformed", "bad_community", "auth_failed") if r in reasons),
            "ignored",
        )
        self.stats[reason] += 1
        if reason == "bad_community":
            self._warn(reason, source, "a community we do not accept")
        elif reason == "auth_failed":
            user = message.user.decode("utf-8", "replace")
            engine_id = message.engine_id.hex() or "(none)"
            self._warn(
                reason,
                source,
                f"SNMPv3 user {user!r}, engine ID {engine_id}: unknown user or engine ID, "
                "or wrong keys -- check v3_users (engine_ids must list the sender's "
                "snmpEngineID for traps)",
                detail=f"{user} {engine_id}",
            )

    def _warn(self, reason: str, address: str, what: str, detail: str = "") -> None:
        suppressed = self._warnings.due(reason, f"{address} {detail}")
        if suppressed is None:
            return
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        logger.warning("SNMP notification from %s rejected: %s%s", address, what, more)

    # -- publish path: a task of its own ----------------------------------------------

    def _observe(self, note: Notification) -> tuple[Observation, ...]:
        device = None
        for address in sender_addresses(note):
            device = self._resolver.device_for_address(address)
            if device is not None:
                break
        if device is None:
            self.stats["unknown_sender"] += 1
            self._warn(
                "unknown_sender",
                note.source,
                "no inventory device has this address (add it, or check the device's "
                "trap source interface)",
            )
            return ()
        mapped = map_notification(note, device, self._resolver.interface_name)
        if mapped.outcome != "mapped":
            self.stats[mapped.outcome] += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s notification %s from device=%s (%s)",
                    mapped.outcome,
                    dotted(mapped.trap) if mapped.trap else "without snmpTrapOID.0",
                    device,
                    note.source,
                )
        return mapped.observations

    async def _drain(self, publish: Publish) -> None:
        """Map queued notifications and publish them in batches.

        Mapping runs in slices of at most ``_SLICE`` seconds with a yield to the loop in
        between, so a burst never holds the loop for long; a batch is published when it
        is full or the queue is empty (a lone trap goes out at once).
        """
        size = self._config.batch_size
        pending = self._pending
        batch: list[Observation] = []
        while True:
            if not pending:
                if batch:
                    await self._publish(publish, batch)
                    batch = []
                    continue
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = time.perf_counter() + _SLICE
            while pending and len(batch) < size:
                note = pending.popleft()
                try:
                    batch.extend(self._observe(note))
                except Exception:  # noqa: BLE001 -- a resolver/mapping bug; _bug logs it
                    self._bug("mapping a notification from %s", note.source)
                if time.perf_counter() > deadline:
                    break
            if len(batch) >= size or (batch and not pending):
                await self._publish(publish, batch)
                batch = []
            await asyncio.sleep(0)  # let the loop breathe between slices

    async def _publish(self, publish: Publish, batch: list[Observation]) -> None:
        try:
            await publish(batch)
        except Exception:
            # A bus hiccup must not stop reception: count, log (rate-limited), go on.
            self.stats["publish_failed"] += len(batch)
            if self._warnings.due("publish_failed", "*") is not None:
                logger.exception("%s: publishing %d observations failed", self.name, len(batch))
        else:
            self.stats["published"] += len(batch)

    async def _watch_kernel_drops(self) -> None:
        while True:
            self._read_kernel_drops()
            await asyncio.sleep(_KERNEL_POLL)

    def _read_kernel_drops(self) -> None:
        """Linux: the socket's drop counter from /proc/net/udp{,6} (matched by inode)."""
        if self._sock is None:
            return
        try:
            inode = str(os.fstat(self._sock.fileno()).st_ino)
        except OSError:
            return
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table, encoding="ascii") as fh:
                    for line in fh:
                        fields = line.split()
                        if len(fields) >= 13 and fields[9] == inode:
                            self.stats["kernel_drops"] = int(fields[12])
                            return
            except (OSError, ValueError):
                continue

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, publish: Publish, stopping: asyncio.Event) -> None:
        pysnmp = await self._open()
        try:
            async with asyncio.TaskGroup() as tg:
                drain = tg.create_task(self._drain(publish), name=f"{self.name}: publish")
                watch = tg.create_task(
                    self._watch_kernel_drops(), name=f"{self.name}: kernel drops"
                )
                await stopping.wait()
                self._read_kernel_drops()
                self._close(pysnmp)  # stop reading; publish what is queued
                watch.cancel()
                self._closing = True
                self._wake.set()
                done, _ = await asyncio.wait({drain}, timeout=_DRAIN_TIMEOUT)
                if not done:
                    drain.cancel()
                    self.stats["dropped_shutdown"] += len(self._pending)
                    self._pending.clear()
        finally:
            self._close(pysnmp)

    def _close(self, pysnmp: _Pysnmp) -> None:
        if self._pysnmp is None:
            return
        self._pysnmp = None
        pysnmp.engine.close_dispatcher()  # closes the transport and its socket
        self._sock = None

    async def _open(self) -> _Pysnmp:
        cfg = self._config
        host, port = cfg.address
        v6 = ":" in host
        _check_crypto(cfg.v3_users)
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(cfg.receive_buffer))
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = (
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE: "
                "AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit)"
                if exc.errno in (13, 1)
                else ""
            )
            raise ProbeConfigError(
                f"cannot listen for SNMP traps on {cfg.listen}: {exc.strerror}{hint}",
                operation="snmp trap receiver",
            ) from exc
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if got < int(cfg.receive_buffer):  # Linux reports twice what it grants
            logger.warning(
                "%s: the kernel capped the trap socket buffer at %d bytes (asked %d); "
                "raise net.core.rmem_max so a trap storm is not dropped",
                self.name, got, int(cfg.receive_buffer),
            )
        try:
            pysnmp = self._engine(sock, v6)
        except BaseException:
            sock.close()
            raise
        self._pysnmp = pysnmp
        self._sock = sock
        try:
            await pysnmp.transport._lport  # pysnmp binds lazily
        except BaseException:
            self._close(pysnmp)
            raise
        bound = sock.getsockname()
        self._local = (str(bound[0]), int(bound[1]))
        self.ready.set()
        logger.info(
            "%s: listening on %s port %d (%d communities, %d v3 users, decoder %s)",
            self.name, self._local[0], self._local[1], len(self._communities),
            len(cfg.v3_users), cfg.decoder,
        )
        return pysnmp

    def _engine(self, sock: socket.socket, v6: bool) -> _Pysnmp:
        cfg = self._config
        engine = pysnmp_engine.SnmpEngine(
            snmpEngineID=rfc1902.OctetString(hexValue=cfg.engine_id)
        )
        transport = (_Transport6 if v6 else _Transport)()
        transport.receiver = self
        domain = udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME
        pysnmp = _Pysnmp(engine, transport, domain)
        try:
            pysnmp_config.add_transport(engine, domain, transport.open_server_mode(sock=sock))
            if not self._native:
                for i, community in enumerate(cfg.communities):
                    pysnmp_config.add_v1_system(engine, f"c{i}", community.get_secret_value())
            # Our engine ID now (INFORMs); each sender's when its first trap arrives
            # (registering costs ~7 ms each: 2,000 devices would block the loop 14 s).
            self._v3_later.clear()
            for user in cfg.v3_users:
                keys = _UsmKeys.of(user)
                keys.register(engine, None)
                for engine_id in user.engine_ids:
                    self._v3_later[(bytes.fromhex(engine_id), user.user.encode())] = keys
            ntfrcv.NotificationReceiver(engine, self._on_pysnmp_notification)
            engine.observer.register_observer(
                self._on_pysnmp_request, "rfc3412.receiveMessage:request"
            )
            builder = engine.get_mib_builder()
            for module, symbol, reason in _PYSNMP_COUNTERS:
                (scalar,) = builder.import_symbols(module, symbol)
                pysnmp.counters.append((scalar, reason))
                pysnmp.seen.append(int(scalar.syntax))
        except BaseException:
            engine.close_dispatcher()  # its timer task, if the transport was added
            raise
        return pysnmp


@dataclass(frozen=True, slots=True)
class _UsmKeys:
    """One v3 user's protocols and master keys (RFC 3414 2.6: the 1 MB digest, once)."""

    user: str
    auth: Oid
    auth_master: Any
    priv: Oid
    priv_master: Any

    @classmethod
    def of(cls, user: TrapV3User) -> _UsmKeys:
        auth = _AUTH_IDS[user.auth_protocol]
        priv = _PRIV_IDS[user.priv_protocol]
        auth_master = pysnmp_config.AUTH_SERVICES[auth].hash_passphrase(
            user.auth_key.get_secret_value().encode()
        )
        priv_master = None
        if user.priv_key is not None:
            priv_master = pysnmp_config.PRIV_SERVICES[priv].hash_passphrase(
                auth, user.priv_key.get_secret_value().encode()
            )
        return cls(user.user, auth, auth_master, priv, priv_master)

    def register(self, engine: Any, engine_id: str | None) -> None:
        """Add the user for one engine ID (``None``: ours) -- ~7 ms of pysnmp MIB writes."""
        pysnmp_config.add_v3_user(
            engine,
            self.user,
            self.auth,
            self.auth_master,
            self.priv,
            self.priv_master,
            securityEngineId=None
            if engine_id is None
            else rfc1902.OctetString(hexValue=engine_id),
            authKeyType=pysnmp_config.USM_KEY_TYPE_MASTER,
            privKeyType=pysnmp_config.USM_KEY_TYPE_MASTER,
        )
