"""Simulated SNMPv2c agents: one UDP endpoint per device on 127.0.0.1, one event loop.

Each agent serves a small, sorted, in-memory MIB (system group, IF-MIB ifTable and
ifXTable) built from a :class:`DeviceSpec`. Octet counters grow with time at a per-port
rate; the controls flip a port, silence a device or reboot it.

Requests are decoded by pysnmp's protocol layer (pyasn1 BER). Responses are framed here
from values that pyasn1 encoded: a row whose value cannot change until the next control
call is encoded once, when the MIB is rebuilt, so answering a poll costs little more than
decoding it. ``_Agent`` holds the logic and does no I/O; ``_Endpoint`` is its socket.

Given a trap destination, an agent also sends an SNMPv2c linkDown/linkUp notification
(RFC 3418 / IF-MIB) from its own socket whenever a control changes a port's ifOperStatus.
Each device may have its own loopback address (``DeviceSpec.address``, e.g. 127.0.0.12):
a trap receiver tells devices apart by the address traps come from.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

__all__ = ["AgentStats", "DeviceSpec", "InterfaceSpec", "SimulatedFleet"]

log = logging.getLogger(__name__)

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_MSG, _PDU, _BULK = _V2C.apiMessage, _V2C.apiPDU, _V2C.apiBulkPDU

Oid = tuple[int, ...]

_SYS = (1, 3, 6, 1, 2, 1, 1)
_IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
_IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_IF_TABLE_LAST_CHANGE = (1, 3, 6, 1, 2, 1, 31, 1, 5, 0)
_SYS_UPTIME = (*_SYS, 3, 0)
_SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
_LINK_DOWN = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
_LINK_UP = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)

_C32, _C64 = 2**32, 2**64
_UP, _DOWN = 1, 2  # ifAdminStatus / ifOperStatus
_NO_ACCESS, _TOO_BIG = 6, 1  # error-status (RFC 3416)
_MAX_DATAGRAM = 65_000  # stay under the UDP/IPv4 payload limit of 65,507
_MAX_BULK_BYTES = _MAX_DATAGRAM - 1_024  # room for the headers and the community
_SEQUENCE, _RESPONSE = 0x30, 0xA2  # BER tags: SEQUENCE, [2] IMPLICIT (Response-PDU)

_ZERO = encoder.encode(_V2C.Integer(0))
_NO_SUCH_OBJECT = encoder.encode(_V2C.NoSuchObject(""))
_NO_SUCH_INSTANCE = encoder.encode(_V2C.NoSuchInstance(""))
_END_OF_MIB_VIEW = encoder.encode(_V2C.EndOfMibView(""))
_WRAP = {_V2C.TimeTicks: _C32, _V2C.Counter32: _C32, _V2C.Counter64: _C64}
_TAG = {kind: encoder.encode(kind(0))[0] for kind in _WRAP}  # BER tag of each type


@dataclass(frozen=True, slots=True)
class InterfaceSpec:
    """One port. Traffic defaults to 10 % of the speed inbound and 5 % outbound."""

    if_index: int
    name: str
    alias: str = ""
    speed_mbps: int = 1000
    admin_up: bool = True
    oper_up: bool = True
    in_bps: float | None = None
    out_bps: float | None = None
    if_type: int = 6  # ethernetCsmacd
    mtu: int = 1500

    def __post_init__(self) -> None:
        if not 1 <= self.if_index < 2**31:
            raise ValueError(f"{self.name}: if_index must be 1..2147483647 (got {self.if_index})")
        if self.oper_up and not self.admin_up:
            raise ValueError(f"{self.name}: an admin-down port cannot be oper-up")

    @property
    def rates(self) -> tuple[float, float]:
        """Octets per second in and out while the port is up."""
        bps = self.speed_mbps * 1e6
        in_bps = bps * 0.10 if self.in_bps is None else self.in_bps
        out_bps = bps * 0.05 if self.out_bps is None else self.out_bps
        return in_bps / 8, out_bps / 8


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device. ``name`` is its sysName and the handle the controls take.

    ``address`` is the loopback address its agent binds; ``traps`` says whether it sends
    notifications when the fleet has a trap destination (a device watched over gNMI
    instead may not)."""

    name: str
    community: str = "public"
    sys_descr: str = "netreflex simulated device"
    interfaces: Sequence[InterfaceSpec] = ()
    sys_object_id: str = "1.3.6.1.4.1.8072.3.2.10"
    address: str = "127.0.0.1"
    traps: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "interfaces", tuple(self.interfaces))
        if not ipaddress.ip_address(self.address).is_loopback:
            raise ValueError(f"{self.name}: address must be a loopback address ({self.address})")
        indexes = [i.if_index for i in self.interfaces]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"{self.name}: duplicate if_index in {sorted(indexes)}")


@dataclass(slots=True)
class AgentStats:
    """What one agent did with the datagrams it received."""

    answered: int = 0
    ignored: int = 0  # wrong community, not v2c, or a PDU an agent does not answer
    malformed: int = 0  # not decodable as an SNMP message
    dropped: int = 0  # received while silent


@dataclass(slots=True)
class _Port:
    spec: InterfaceSpec
    oper_up: bool
    last_change: int = 0  # sysUpTime (centiseconds) when ifOperStatus last changed
    since: float = 0.0  # clock time of the octet bases below
    in_base: float = 0.0
    out_base: float = 0.0

    def in_octets(self, now: float) -> int:
        elapsed = now - self.since if self.oper_up else 0.0
        return int(self.in_base + self.spec.rates[0] * elapsed)

    def out_octets(self, now: float) -> int:
        elapsed = now - self.since if self.oper_up else 0.0
        return int(self.out_base + self.spec.rates[1] * elapsed)

    def settle(self, now: float) -> None:
        """Fold the traffic so far into the bases (before the rate changes)."""
        self.in_base, self.out_base = self.in_octets(now), self.out_octets(now)
        self.since = now


@dataclass(frozen=True, slots=True)
class _Live:
    """A value that moves with time: an unsigned pysnmp type and how to read it."""

    kind: Any  # TimeTicks, Counter32 or Counter64
    read: Callable[[float], int]  # clock time -> value (wrapped here to the type)


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + body


def _unsigned(tag: int, value: int) -> bytes:
    """BER of a Counter32/Counter64/TimeTicks, as pyasn1 would (checked in the tests)."""
    return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _integer(value: int) -> bytes:
    return _ZERO if value == 0 else bytes(encoder.encode(_V2C.Integer(value)))


def _varbind(oid: Oid, value_ber: bytes) -> bytes:
    return _tlv(_SEQUENCE, encoder.encode(_V2C.ObjectIdentifier(oid)) + value_ber)


class _Agent:
    """One device's state and MIB; ``answer`` turns a request datagram into a reply."""

    def __init__(self, spec: DeviceSpec, number: int, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.silent = False
        self.stats = AgentStats()
        self._number = number
        self._clock = clock
        self._community = spec.community.encode()
        self._boot = clock()
        self._ports = {i.if_index: _Port(i, i.oper_up, since=self._boot) for i in spec.interfaces}
        self._oids: list[Oid] = []
        self._rows: list[bytes | tuple[bytes, _Live]] = []  # encoded varbind, or OID + live
        self._objects: set[Oid] = set()
        self._trap_id = 0
        self._rebuild()

    # -- controls ------------------------------------------------------------------------

    def set_oper_status(self, if_index: int, up: bool) -> bool:
        """Set a port's ifOperStatus; True when that changed it."""
        port = self._ports.get(if_index)
        if port is None:
            raise KeyError(
                f"{self.spec.name} has no ifIndex {if_index} (has {sorted(self._ports)})"
            )
        if up and not port.spec.admin_up:
            raise ValueError(f"{self.spec.name} ifIndex {if_index} is admin-down")
        if port.oper_up == up:
            return False
        now = self._clock()
        port.settle(now)
        port.oper_up = up
        port.last_change = self._uptime(now)
        self._rebuild()
        return True

    def link_trap(self, if_index: int, community: str) -> bytes:
        """An SNMPv2-Trap-PDU saying port ``if_index`` went down or up (RFC 2863 linkDown /
        linkUp: ifIndex, ifAdminStatus, ifOperStatus), encoded by pysnmp's protocol layer."""
        port = self._ports[if_index]
        v = _V2C
        self._trap_id = (self._trap_id + 1) % 2**31
        pdu = v.SNMPv2TrapPDU()
        _PDU.set_defaults(pdu)
        _PDU.set_request_id(pdu, self._trap_id)
        _PDU.set_varbinds(
            pdu,
            [
                (_SYS_UPTIME, v.TimeTicks(self._uptime(self._clock()))),
                (_SNMP_TRAP_OID, v.ObjectIdentifier(_LINK_UP if port.oper_up else _LINK_DOWN)),
                ((*_IF_ENTRY, 1, if_index), v.Integer(if_index)),
                ((*_IF_ENTRY, 7, if_index), v.Integer(_UP if port.spec.admin_up else _DOWN)),
                ((*_IF_ENTRY, 8, if_index), v.Integer(_UP if port.oper_up else _DOWN)),
            ],
        )
        msg = _V2C.Message()
        _MSG.set_defaults(msg)
        _MSG.set_community(msg, community)
        _MSG.set_pdu(msg, pdu)
        return bytes(encoder.encode(msg))

    def restart(self) -> None:
        """Reboot: sysUpTime, ifLastChange and the counters start again from zero."""
        self._boot = now = self._clock()
        for port in self._ports.values():
            port.last_change, port.since, port.in_base, port.out_base = 0, now, 0.0, 0.0
        self._rebuild()

    # -- the MIB -------------------------------------------------------------------------

    def _uptime(self, now: float) -> int:
        return int((now - self._boot) * 100) % _C32

    def _rebuild(self) -> None:
        rows = sorted(self._mib(), key=lambda row: row[0])
        self._oids = [oid for oid, _ in rows]
        self._objects = {oid[:-1] for oid in self._oids}
        self._rows = []
        for oid, value in rows:
            oid_ber = encoder.encode(_V2C.ObjectIdentifier(oid))
            if isinstance(value, _Live):
                self._rows.append((oid_ber, value))
            else:
                self._rows.append(_tlv(_SEQUENCE, oid_ber + encoder.encode(value)))

    def _mib(self) -> Iterable[tuple[Oid, Any]]:
        v, spec = _V2C, self.spec
        yield (*_SYS, 1, 0), v.OctetString(spec.sys_descr)
        yield (*_SYS, 2, 0), v.ObjectIdentifier(spec.sys_object_id)
        yield (*_SYS, 3, 0), _Live(v.TimeTicks, self._uptime)
        yield (*_SYS, 5, 0), v.OctetString(spec.name)
        yield _IF_NUMBER, v.Integer(len(self._ports))
        # Rows are never created or deleted here, so it stays 0 (RFC 2863); a port
        # changing state moves ifLastChange, not this.
        yield _IF_TABLE_LAST_CHANGE, v.TimeTicks(0)
        for index, port in self._ports.items():
            p = port.spec
            mac = b"\x02\x00" + (self._number % 2**16).to_bytes(2) + (index % 2**16).to_bytes(2)
            columns: list[tuple[int, Any]] = [
                (1, v.Integer(index)),
                (2, v.OctetString(p.name)),
                (3, v.Integer(p.if_type)),
                (4, v.Integer(p.mtu)),
                (5, v.Gauge32(min(p.speed_mbps * 1_000_000, _C32 - 1))),
                (6, v.OctetString(mac)),
                (7, v.Integer(_UP if p.admin_up else _DOWN)),
                (8, v.Integer(_UP if port.oper_up else _DOWN)),
                (9, v.TimeTicks(port.last_change)),
                (10, _Live(v.Counter32, port.in_octets)),
                (14, v.Counter32(0)),
                (16, _Live(v.Counter32, port.out_octets)),
                (20, v.Counter32(0)),
            ]
            for column, value in columns:
                yield (*_IF_ENTRY, column, index), value
            x_columns: list[tuple[int, Any]] = [
                (1, v.OctetString(p.name)),
                (6, _Live(v.Counter64, port.in_octets)),
                (10, _Live(v.Counter64, port.out_octets)),
                (15, v.Gauge32(p.speed_mbps)),
                (18, v.OctetString(p.alias)),
            ]
            for column, value in x_columns:
                yield (*_IFX_ENTRY, column, index), value

    def _row(self, i: int, now: float) -> bytes:
        row = self._rows[i]
        if isinstance(row, bytes):
            return row
        oid_ber, live = row
        value = _unsigned(_TAG[live.kind], live.read(now) % _WRAP[live.kind])
        return _tlv(_SEQUENCE, oid_ber + value)

    def _get(self, oid: Oid, now: float) -> bytes:
        i = bisect.bisect_left(self._oids, oid)
        if i < len(self._oids) and self._oids[i] == oid:
            return self._row(i, now)
        known = any(oid[:k] in self._objects for k in range(len(oid), 0, -1))
        return _varbind(oid, _NO_SUCH_INSTANCE if known else _NO_SUCH_OBJECT)

    def _next(self, oid: Oid, now: float) -> tuple[bytes, Oid | None]:
        """The varbind after ``oid`` and its OID (None at the end of the MIB)."""
        i = bisect.bisect_right(self._oids, oid)
        if i == len(self._oids):
            return _varbind(oid, _END_OF_MIB_VIEW), None
        return self._row(i, now), self._oids[i]

    def _bulk(
        self, oids: list[Oid], non_repeaters: int, max_repetitions: int, now: float
    ) -> list[bytes]:
        n = min(max(non_repeaters, 0), len(oids))
        out = [self._next(oid, now)[0] for oid in oids[:n]]
        cursors = oids[n:]
        size = sum(map(len, out))
        for _ in range(max(max_repetitions, 0) if cursors else 0):
            row: list[bytes] = []
            ended = 0
            for j, oid in enumerate(cursors):
                varbind, following = self._next(oid, now)
                row.append(varbind)
                if following is None:
                    ended += 1
                else:
                    cursors[j] = following
            size += sum(map(len, row))
            if size > _MAX_BULK_BYTES and out:  # fewer repetitions than asked: allowed
                break
            out += row
            if ended == len(cursors):  # the whole row is endOfMibView
                break
        return out

    # -- the protocol --------------------------------------------------------------------

    def answer(self, datagram: bytes) -> bytes | None:
        """The reply to one datagram, or None when a real agent would stay silent."""
        try:
            msg, rest = decoder.decode(datagram, asn1Spec=_V2C.Message())
            if rest:
                raise PyAsn1Error(f"{len(rest)} bytes after the message")
        # pyasn1 0.6 raises IndexError on some indefinite-length SEQUENCEs (found by fuzzing)
        except (PyAsn1Error, IndexError) as exc:
            self.stats.malformed += 1
            log.debug("%s: malformed datagram ignored: %r", self.spec.name, exc)
            return None
        reply = self._reply(msg)
        if reply is None:
            self.stats.ignored += 1
        else:
            self.stats.answered += 1
        return reply

    def _reply(self, msg: Any) -> bytes | None:
        if int(_MSG.get_version(msg)) != api.SNMP_VERSION_2C:
            return None
        if _MSG.get_community(msg).asOctets() != self._community:
            return None
        pdu = _MSG.get_pdu(msg)
        now = self._clock()
        oids = [oid.asTuple() for oid, _ in _PDU.get_varbinds(pdu)]
        status = 0
        if pdu.tagSet == _V2C.GetRequestPDU.tagSet:
            varbinds = [self._get(oid, now) for oid in oids]
        elif pdu.tagSet == _V2C.GetNextRequestPDU.tagSet:
            varbinds = [self._next(oid, now)[0] for oid in oids]
        elif pdu.tagSet == _V2C.GetBulkRequestPDU.tagSet:
            non_repeaters = int(_BULK.get_non_repeaters(pdu))
            max_repetitions = int(_BULK.get_max_repetitions(pdu))
            varbinds = self._bulk(oids, non_repeaters, max_repetitions, now)
        elif pdu.tagSet == _V2C.SetRequestPDU.tagSet:
            varbinds = [encoder.encode(vb) for vb in _PDU.get_varbind_list(pdu)]
            status = _NO_ACCESS
        else:  # a response, trap, inform or report: nothing to answer
            return None
        reply = self._frame(msg, pdu, varbinds, status, 1 if status and varbinds else 0)
        if len(reply) > _MAX_DATAGRAM:
            reply = self._frame(msg, pdu, [], _TOO_BIG, 0)
        return reply

    @staticmethod
    def _frame(msg: Any, pdu: Any, varbinds: list[bytes], status: int, index: int) -> bytes:
        body = (
            encoder.encode(_PDU.get_request_id(pdu))
            + _integer(status)
            + _integer(index)
            + _tlv(_SEQUENCE, b"".join(varbinds))
        )
        head = encoder.encode(_MSG.get_version(msg)) + encoder.encode(_MSG.get_community(msg))
        return _tlv(_SEQUENCE, head + _tlv(_RESPONSE, body))


class _Endpoint(asyncio.DatagramProtocol):
    """The I/O: hands each datagram to its agent and sends back the reply, if any."""

    def __init__(self, agent: _Agent) -> None:
        self.agent = agent
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.agent.silent:
            self.agent.stats.dropped += 1
            return
        if self.transport is None:
            return
        try:
            reply = self.agent.answer(data)
        except Exception:  # a bug here must not close the socket and fake a dead device
            log.exception("%s: failed to answer %s", self.agent.spec.name, addr)
            return
        if reply is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.agent.spec.name, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class SimulatedFleet:
    """Simulated devices answering SNMPv2c on loopback, one OS-chosen UDP port each (on
    127.0.0.1 unless a spec names another loopback address).

    ``async with SimulatedFleet(specs) as fleet:`` binds every endpoint; leaving the block
    closes them. The controls are plain methods, called from the same event loop.

    With ``trap_destination`` (host, port), every port change made by ``set_oper_status``
    is also sent there as a v2c linkDown/linkUp trap with ``trap_community``, from the
    device's own socket (so from its address), by devices whose spec has ``traps``.
    """

    address = "127.0.0.1"  # the default; see ``address_of``

    def __init__(
        self,
        specs: Iterable[DeviceSpec],
        *,
        clock: Callable[[], float] = time.monotonic,
        trap_destination: tuple[str, int] | None = None,
        trap_community: str = "public",
    ) -> None:
        self.trap_destination = trap_destination
        self.trap_community = trap_community
        self.traps_sent = 0
        self._agents: dict[str, _Agent] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        for number, spec in enumerate(specs, start=1):
            if spec.name in self._agents:
                raise ValueError(f"two devices are named {spec.name!r}")
            self._agents[spec.name] = _Agent(spec, number, clock)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        try:
            for name, agent in self._agents.items():
                _, self._endpoints[name] = await loop.create_datagram_endpoint(
                    functools.partial(_Endpoint, agent), local_addr=(agent.spec.address, 0)
                )
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        closed = [endpoint.closed for endpoint in self._endpoints.values()]
        self.close()
        await asyncio.gather(*closed)  # the sockets are released when this returns

    def close(self) -> None:
        """Start closing every endpoint (idempotent); ``async with`` also waits for it."""
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    @property
    def devices(self) -> list[str]:
        return list(self._agents)

    def port(self, device: str) -> int:
        port: int = self._transport(device).get_extra_info("sockname")[1]
        return port

    def address_of(self, device: str) -> str:
        """The loopback address the device's agent is bound to."""
        return self._agent(device).spec.address

    def set_oper_status(self, device: str, if_index: int, up: bool) -> None:
        """Take a port down or bring it back; moves its ifLastChange and, when that changed
        the port and there is a trap destination, sends a linkDown/linkUp trap."""
        agent = self._agent(device)
        if not agent.set_oper_status(if_index, up):
            return
        if self.trap_destination is None or not agent.spec.traps or agent.silent:
            return
        endpoint = self._endpoints.get(device)
        if endpoint is None or endpoint.transport is None:
            return  # not running: nothing to send from
        trap = agent.link_trap(if_index, self.trap_community)
        endpoint.transport.sendto(trap, self.trap_destination)
        self.traps_sent += 1

    def set_silent(self, device: str, silent: bool) -> None:
        """A silent device drops every datagram, like a dead box."""
        self._agent(device).silent = silent

    def restart(self, device: str) -> None:
        """Reboot: sysUpTime, ifLastChange and the counters start again from zero."""
        self._agent(device).restart()

    def stats(self, device: str) -> AgentStats:
        return self._agent(device).stats

    @property
    def malformed(self) -> int:
        """Datagrams that were not SNMP messages, over the whole fleet."""
        return sum(agent.stats.malformed for agent in self._agents.values())

    def _transport(self, device: str) -> asyncio.DatagramTransport:
        self._agent(device)
        endpoint = self._endpoints.get(device)
        if endpoint is None or endpoint.transport is None:
            raise RuntimeError("the fleet is not running: use `async with SimulatedFleet(...)`")
        return endpoint.transport

    def _agent(self, device: str) -> _Agent:
        try:
            return self._agents[device]
        except KeyError:
            raise KeyError(
                f"no simulated device {device!r} (have {sorted(self._agents)})"
            ) from None
