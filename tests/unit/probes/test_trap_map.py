"""probes.snmp.traps without sockets: decoding datagrams, mapping notifications, counting.

The golden datagrams were sent by net-snmp 5.9.3 ``snmptrap`` / ``snmpinform`` (an
independent implementation) and captured off a UDP socket. Hypothesis cross-checks the
decoder against pysnmp/pyasn1 on random messages that pysnmp encodes, and feeds random
bytes, mangled datagrams and random varbind lists to the decode and map path.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pydantic import ValidationError
from pysnmp.proto.api import v1 as api_v1
from pysnmp.proto.api import v2c as api_v2c
from pysnmp.proto.proxy import rfc2576

from probes.snmp.trap_config import TrapReceiverConfig, default_engine_id, parse_listen
from probes.snmp.traps import (
    BGP_PEER_STATE,
    BGP_TRAPS,
    COLD_START,
    INFORM_PDU,
    LINK_DOWN,
    LINK_UP,
    RESPONSE_PDU,
    SNMP_TRAP_ADDRESS,
    SNMP_TRAP_COMMUNITY,
    SNMP_TRAP_ENTERPRISE,
    SNMP_TRAP_OID,
    SYS_UPTIME,
    WARM_START,
    DecodeError,
    Notification,
    TrapReceiver,
    VarBind,
    decode_message,
    inform_response,
    map_notification,
    oid,
    plain_value,
    sender_addresses,
)
from probes.types import DEVICE_RESTARTED, IF_OPER_STATUS, STATUS_NAMES

TS = 1_700_000_000.0

# --- golden datagrams (net-snmp 5.9.3) ---------------------------------------------------

# snmptrap -v1 -c public H 1.3.6.1.4.1.9.1.1 10.1.2.3 2 0 12345 ifIndex.3 i 3
#   ifDescr.3 s GigabitEthernet0/3  ifType.3 i 6  locIfReason.3 s "administratively down"
V1_LINK_DOWN = (
    "30819502010004067075626c6963a4818706082b0601040109010140040a01020302010202010043023039"
    "306b300f060a2b0601020102020101030201033020060a2b06010201020201020304124769676162697445"
    "746865726e6574302f33300f060a2b0601020102020103030201063025060c2b06010401090202010114030"
    "41561646d696e6973747261746976656c7920646f776e"
)
# snmptrap -v1 -c public H 1.3.6.1.2.1.15.7 10.1.2.3 6 2 777
#   bgpPeerLastError.198.51.100.7 x 0402  bgpPeerState.198.51.100.7 i 3
V1_BGP = (
    "305302010004067075626c6963a44606072b060102010f0740040a01020302010602010243020309302b30"
    "14060e2b060102010f03010e8146336407040204023013060e2b060102010f0301028146336407020103"
)
# snmptrap -v2c -c public H 4242 linkDown ifIndex.513 i 513 ifAdminStatus.513 i 1
#   ifOperStatus.513 i 2 ifName.513 s ge-0/0/0
V2C_LINK_DOWN = (
    "30819602010104067075626c6963a78188020400d9e8a4020100020100307a300e06082b06010201010300"
    "430210923017060a2b06010603010104010006092b06010603010105033011060b2b060102010202010184"
    "01020202013010060b2b060102010202010784010201013010060b2b060102010202010884010201023018"
    "060c2b060102011f010101018401040867652d302f302f30"
)
# snmpinform -v2c -c public H 4243 linkUp ifIndex.7 i 7 ifAdminStatus.7 i 1 ifOperStatus.7 i 1
V2C_INFORM_LINK_UP = (
    "307702010104067075626c6963a66a020466564c81020100020100305c300e06082b060102010103004302"
    "10933017060a2b06010603010104010006092b0601060301010504300f060a2b0601020102020101070201"
    "07300f060a2b060102010202010707020101300f060a2b060102010202010807020101"
)
# snmptrap -v2c ... 1.3.6.1.4.1.99.0.1 with c 4294967295, C 2^64-1, u 7, a 192.0.2.55,
#   o 1.3.6.1.4.1.2636.1.1.1.2.29, i -5, x 00ff10, t 100
V2C_TYPES = (
    "3081d802010104067075626c6963a781ca02045f7241ba0201000201003081bb300d06082b060102010103"
    "004301013016060a2b06010603010104010006082b06010401630001301106082b06010401630101410500"
    "ffffffff301506082b06010401630102460900ffffffffffffffff300d06082b06010401630103420107"
    "301006082b060104016301044004c0000237301806082b06010401630105060c2b06010401944c01010102"
    "1d300d06082b060104016301060201fb300f06082b06010401630107040300ff10300d06082b0601040163"
    "0108430164"
)
# snmptrap -v3 -u netreflex -l authPriv -a SHA -x AES -e 0x80001f8803aabbccddeeff H '' coldStart
V3_TRAP = (
    "3081a5020103301102046105bd09020300ffe3040103020103043a3038040b80001f8803aabbccddeeff02"
    "0101020302516704096e65747265666c6578040cb61416c2e7f86242bcab436e04085b21fc43935bc78b04"
    "51ac2826d1e197635ab3e517557c3e050de6791527ef14ab0ebc2c7c2ef68f9f9d890bc04148af9a2ae591"
    "f9299de9e6256c8fcfa285da087af99cb2e7bbd6bece1fb20793a2e8cd689813fb3a3569fe0f9e"
)


class Inventory:
    """A DeviceResolver over dicts."""

    def __init__(
        self,
        devices: dict[str, str] | None = None,
        names: dict[tuple[str, int], str] | None = None,
    ) -> None:
        self.devices = devices or {}
        self.names = names or {}

    def device_for_address(self, address: str) -> str | None:
        return self.devices.get(address)

    def interface_name(self, device: str, if_index: int) -> str | None:
        return self.names.get((device, if_index))


NO_NAMES = Inventory().interface_name


def note(varbinds: Sequence[VarBind], *, version: str = "2c", source: str = "192.0.2.1") -> Notification:
    return Notification(version, source, tuple(varbinds), TS)  # type: ignore[arg-type]


def v2(trap: str, *varbinds: tuple[str, Any]) -> list[VarBind]:
    return [(SYS_UPTIME, 4242), (SNMP_TRAP_OID, oid(trap))] + [(oid(o), v) for o, v in varbinds]


# --- decoding ---------------------------------------------------------------------------


def test_v2c_link_down_from_net_snmp() -> None:
    msg = decode_message(bytes.fromhex(V2C_LINK_DOWN))
    assert (msg.version, msg.community, msg.pdu_type) == (1, b"public", 0xA7)
    assert msg.is_notification
    assert list(msg.varbinds) == [
        (SYS_UPTIME, 4242),
        (SNMP_TRAP_OID, LINK_DOWN),
        (oid("1.3.6.1.2.1.2.2.1.1.513"), 513),
        (oid("1.3.6.1.2.1.2.2.1.7.513"), 1),
        (oid("1.3.6.1.2.1.2.2.1.8.513"), 2),
        (oid("1.3.6.1.2.1.31.1.1.1.1.513"), b"ge-0/0/0"),
    ]


def test_v1_trap_is_translated_to_the_v2_form_of_rfc_3584() -> None:
    msg = decode_message(bytes.fromhex(V1_LINK_DOWN))
    assert (msg.version, msg.pdu_type) == (0, 0xA4)
    vbs = dict(msg.varbinds)
    assert msg.varbinds[0] == (SYS_UPTIME, 12345)
    assert msg.varbinds[1] == (SNMP_TRAP_OID, LINK_DOWN)  # generic-trap 2
    assert vbs[SNMP_TRAP_ADDRESS] == "10.1.2.3"
    assert vbs[SNMP_TRAP_ENTERPRISE] == oid("1.3.6.1.4.1.9.1.1")
    assert vbs[oid("1.3.6.1.2.1.2.2.1.2.3")] == b"GigabitEthernet0/3"
    assert SNMP_TRAP_COMMUNITY not in vbs  # the community is a secret


def test_v1_enterprise_specific_trap_oid_is_enterprise_0_specific() -> None:
    msg = decode_message(bytes.fromhex(V1_BGP))
    assert msg.varbinds[1] == (SNMP_TRAP_OID, oid("1.3.6.1.2.1.15.7.0.2"))
    assert oid("1.3.6.1.2.1.15.7.0.2") in BGP_TRAPS


def test_every_value_type_net_snmp_sends() -> None:
    vbs = dict(decode_message(bytes.fromhex(V2C_TYPES)).varbinds)
    base = "1.3.6.1.4.1.99.1."
    assert vbs[oid(base + "1")] == 2**32 - 1  # Counter32
    assert vbs[oid(base + "2")] == 2**64 - 1  # Counter64
    assert vbs[oid(base + "3")] == 7  # Unsigned32
    assert vbs[oid(base + "4")] == "192.0.2.55"  # IpAddress
    assert vbs[oid(base + "5")] == oid("1.3.6.1.4.1.2636.1.1.1.2.29")  # multi-byte subid
    assert vbs[oid(base + "6")] == -5
    assert vbs[oid(base + "7")] == b"\x00\xff\x10"
    assert vbs[oid(base + "8")] == 100  # TimeTicks


def test_inform_response_is_the_same_message_as_a_response_pdu() -> None:
    data = bytes.fromhex(V2C_INFORM_LINK_UP)
    msg = decode_message(data)
    assert msg.pdu_type == INFORM_PDU
    reply = inform_response(data, msg)
    assert len(reply) == len(data) and reply[msg.pdu_offset] == RESPONSE_PDU
    # pysnmp reads it as a GetResponse with the same request-id and varbinds.
    parsed, _ = ber_decoder.decode(reply, asn1Spec=api_v2c.Message())
    pdu = api_v2c.apiMessage.get_pdu(parsed)
    request = api_v2c.apiMessage.get_pdu(ber_decoder.decode(data, asn1Spec=api_v2c.Message())[0])
    assert pdu.tagSet == api_v2c.GetResponsePDU.tagSet
    assert api_v2c.apiPDU.get_request_id(pdu) == api_v2c.apiPDU.get_request_id(request)
    assert int(api_v2c.apiPDU.get_error_status(pdu)) == 0
    assert decode_message(reply).varbinds == ()  # a response is not a notification


def test_v3_header_names_engine_and_user() -> None:
    msg = decode_message(bytes.fromhex(V3_TRAP))
    assert msg.version == 3
    assert msg.engine_id == bytes.fromhex("80001f8803aabbccddeeff")
    assert msg.user == b"netreflex"
    assert not msg.is_notification  # encrypted: pysnmp decides


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"\x30\x03\x02\x01", "runs past"),
        (bytes.fromhex(V2C_LINK_DOWN)[:-1], "runs past"),
        (bytes.fromhex("300602010204007000"), "unknown SNMP version 2"),
        (bytes.fromhex("3080020101"), "length form"),  # indefinite length: not in SNMP
        # v1 message carrying a v2 trap PDU
        (bytes.fromhex("301002010004067075626c6963a703020100"), "not valid in SNMP version 0"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "expected tag 0x30"),  # TLS hello
    ],
)
def test_broken_datagrams_raise_decode_error(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_message(data)


def test_long_form_lengths_of_up_to_four_octets() -> None:
    data = bytes.fromhex(V2C_LINK_DOWN)  # 30 81 96 ...: re-encode the length as 84 00 00 00 96
    padded = b"\x30\x84\x00\x00\x00\x96" + data[3:]
    assert decode_message(padded).varbinds == decode_message(data).varbinds


def test_oid_sub_identifier_above_32_bits_is_rejected() -> None:
    # varbind name 1.3.<2^35> -- a crafted OID must not become a huge integer
    name = bytes((0x06, 7, 0x2B, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00))
    vb = bytes((0x30, len(name) + 2)) + name + b"\x05\x00"
    vbs = bytes((0x30, len(vb))) + vb
    pdu = bytes.fromhex("020101020100020100") + vbs
    msg = bytes.fromhex("020101040170") + bytes((0xA7, len(pdu))) + pdu
    with pytest.raises(DecodeError, match="2\\^32"):
        decode_message(bytes((0x30, len(msg))) + msg)


def test_a_get_request_is_snmp_but_not_a_notification() -> None:
    # snmpget -v2c -c public H sysUpTime.0
    data = bytes.fromhex(
        "302902010104067075626c6963a01c02045a1b3c4d020100020100300e300c06082b060102010103000500"
    )
    msg = decode_message(data)
    assert msg.pdu_type == 0xA0 and not msg.is_notification and msg.varbinds == ()


# --- mapping ----------------------------------------------------------------------------


def test_link_down_takes_the_inventory_name_and_statuses() -> None:
    vbs = decode_message(bytes.fromhex(V2C_LINK_DOWN)).varbinds
    names = Inventory(names={("edge1", 513): "xe-0/0/0.inventory"}).interface_name
    mapped = map_notification(note(vbs), "edge1", names)
    assert mapped.outcome == "mapped"
    (obs,) = mapped.observations
    assert (obs.device, obs.source, obs.name, obs.instance, obs.value, obs.ts) == (
        "edge1", "trap", IF_OPER_STATUS, "xe-0/0/0.inventory", 2, TS,
    )
    assert dict(obs.labels) == {"admin": "up", "if_index": "513"}


def test_interface_name_falls_back_to_ifname_then_ifdescr_then_index() -> None:
    vbs = decode_message(bytes.fromhex(V2C_LINK_DOWN)).varbinds
    assert map_notification(note(vbs), "e", NO_NAMES).observations[0].instance == "ge-0/0/0"
    descr_only = v2("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.1.9", 9),
                    ("1.3.6.1.2.1.2.2.1.2.9", b"Ethernet9\x00"))
    assert map_notification(note(descr_only), "e", NO_NAMES).observations[0].instance == "Ethernet9"
    bare = v2("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.1.9", 9))
    assert map_notification(note(bare), "e", NO_NAMES).observations[0].instance == "9"


def test_cisco_v1_link_down_without_oper_status_is_down_by_trap_type() -> None:
    vbs = decode_message(bytes.fromhex(V1_LINK_DOWN)).varbinds
    (obs,) = map_notification(note(vbs, version="1"), "core1", NO_NAMES).observations
    assert (obs.instance, obs.value, obs.labels["admin"]) == ("GigabitEthernet0/3", 2, "up")


def test_link_up_admin_down_and_alias() -> None:
    vbs = v2("1.3.6.1.6.3.1.1.5.4", ("1.3.6.1.2.1.2.2.1.1.4", 4), ("1.3.6.1.2.1.2.2.1.7.4", 2),
             ("1.3.6.1.2.1.2.2.1.8.4", 7), ("1.3.6.1.2.1.31.1.1.1.18.4", b"cust ACME"))
    (obs,) = map_notification(note(vbs), "e", NO_NAMES).observations
    assert (obs.value, dict(obs.labels)) == (7, {"admin": "down", "if_index": "4", "alias": "cust ACME"})


def test_if_index_from_the_column_suffix_when_there_is_no_ifindex_varbind() -> None:
    vbs = v2("1.3.6.1.6.3.1.1.5.3", ("1.3.6.1.2.1.2.2.1.7.12", 1), ("1.3.6.1.2.1.2.2.1.8.12", 2))
    (obs,) = map_notification(note(vbs), "e", NO_NAMES).observations
    assert (obs.instance, obs.labels["if_index"]) == ("12", "12")


def test_link_down_without_any_interface_is_incomplete() -> None:
    mapped = map_notification(note(v2("1.3.6.1.6.3.1.1.5.3")), "e", NO_NAMES)
    assert (mapped.outcome, mapped.observations, mapped.trap) == ("incomplete", (), LINK_DOWN)


@pytest.mark.parametrize(("trap", "kind"), [(COLD_START, "cold_start"), (WARM_START, "warm_start")])
def test_restart_traps(trap: tuple[int, ...], kind: str) -> None:
    mapped = map_notification(note([(SYS_UPTIME, 1234), (SNMP_TRAP_OID, trap)]), "e", NO_NAMES)
    (obs,) = mapped.observations
    assert (obs.name, obs.instance, obs.value, dict(obs.labels)) == (
        DEVICE_RESTARTED, "", 12.34, {"kind": kind},
    )


def bgp(trap: str, *varbinds: tuple[str, Any]) -> tuple[str, int, dict[str, str]] | str:
    mapped = map_notification(note(v2(trap, *varbinds)), "pe1", NO_NAMES)
    if mapped.outcome != "mapped":
        return mapped.outcome
    (obs,) = mapped.observations
    assert obs.name == BGP_PEER_STATE and obs.device == "pe1"
    return obs.instance, int(obs.value), dict(obs.labels)


def test_bgp4_mib_backward_transition_peer_from_the_index() -> None:
    assert bgp("1.3.6.1.2.1.15.7.2", ("1.3.6.1.2.1.15.3.1.14.203.0.113.9", b"\x06\x02"),
               ("1.3.6.1.2.1.15.3.1.2.203.0.113.9", 1)) == (
        "203.0.113.9", 1, {"event": "backward_transition"})


def test_bgp_v1_trap_from_net_snmp() -> None:
    vbs = decode_message(bytes.fromhex(V1_BGP)).varbinds
    (obs,) = map_notification(note(vbs, version="1"), "pe1", NO_NAMES).observations
    assert (obs.instance, obs.value, obs.labels["event"]) == ("198.51.100.7", 3, "backward_transition")


def test_rfc4273_established_without_state_is_established() -> None:
    assert bgp("1.3.6.1.2.1.15.0.1", ("1.3.6.1.2.1.15.3.1.7.10.0.0.1", "10.0.0.1")) == (
        "10.0.0.1", 6, {"event": "established"})


def test_cisco_peer2_ipv6_peer_from_the_inet_index() -> None:
    v6 = ipaddress.IPv6Address("2001:db8::2")
    index = ".".join(map(str, (2, 16, *v6.packed)))
    assert bgp("1.3.6.1.4.1.9.9.187.0.6", (f"1.3.6.1.4.1.9.9.187.1.2.5.1.3.{index}", 3)) == (
        "2001:db8::2", 3, {"event": "backward_transition"})


def test_juniper_bgp4_v2_peer_from_remote_addr() -> None:
    # as in a real jnxBgpM2BackwardTransition: index routing-instance.type.local.type.remote
    local, remote = ipaddress.IPv6Address("2001:d88:1::1"), ipaddress.IPv6Address("2001:d88:1::2")
    index = ".".join(map(str, (0, 2, *local.packed, 2, *remote.packed)))
    col = "1.3.6.1.4.1.2636.5.1.1.2.1.1.1."
    with_addr = bgp("1.3.6.1.4.1.2636.5.1.1.1.0.2", (col + "11." + index, remote.packed),
                    (col + "2." + index, 1))
    assert with_addr == ("2001:d88:1::2", 1, {"event": "backward_transition"})
    # without the address varbind the index alone names the peer
    assert bgp("1.3.6.1.4.1.2636.5.1.1.1.0.2", (col + "2." + index, 1))[0] == "2001:d88:1::2"


def test_arista_bgp4v2_ipv4_peer_from_the_index() -> None:
    assert bgp("1.3.6.1.4.1.30065.4.1.0.2",
               ("1.3.6.1.4.1.30065.4.1.1.2.1.13.1.1.4.192.168.100.5", 2)) == (
        "192.168.100.5", 2, {"event": "backward_transition"})


def test_bgp_trap_without_a_peer_is_incomplete() -> None:
    assert bgp("1.3.6.1.2.1.15.0.2") == "incomplete"


def test_unknown_trap_is_unmatched_with_its_oid() -> None:
    mapped = map_notification(note(v2("1.3.6.1.4.1.9.9.41.2.0.1")), "e", NO_NAMES)
    assert (mapped.outcome, mapped.trap) == ("unmatched", oid("1.3.6.1.4.1.9.9.41.2.0.1"))


def test_notification_without_snmp_trap_oid_is_incomplete() -> None:
    assert map_notification(note([(SYS_UPTIME, 1)]), "e", NO_NAMES).outcome == "incomplete"


def test_sender_addresses_v1_agent_addr_first_v2c_source_first() -> None:
    vbs = [(SNMP_TRAP_OID, LINK_UP), (SNMP_TRAP_ADDRESS, "10.9.9.9")]
    assert sender_addresses(note(vbs, version="1", source="192.0.2.1")) == ("10.9.9.9", "192.0.2.1")
    assert sender_addresses(note(vbs, version="2c", source="192.0.2.1")) == ("192.0.2.1", "10.9.9.9")
    unset = [(SNMP_TRAP_ADDRESS, "0.0.0.0")]
    assert sender_addresses(note(unset, version="1", source="192.0.2.1")) == ("192.0.2.1",)


def test_plain_value_of_pysnmp_types() -> None:
    assert plain_value(api_v2c.Counter64(2**64 - 1)) == 2**64 - 1
    assert plain_value(api_v2c.IpAddress("192.0.2.1")) == "192.0.2.1"
    v1_trap = api_v1.TrapPDU()
    api_v1.apiTrapPDU.set_defaults(v1_trap)
    api_v1.apiTrapPDU.set_agent_address(v1_trap, "10.1.2.3")
    assert plain_value(api_v1.apiTrapPDU.get_agent_address(v1_trap)) == "10.1.2.3"  # as pysnmp has it
    assert plain_value(api_v2c.ObjectIdentifier("1.3.6.1")) == (1, 3, 6, 1)
    assert plain_value(api_v2c.OctetString(b"\x00x")) == b"\x00x"
    assert plain_value(api_v2c.NoSuchObject()) is None
    assert plain_value(api_v2c.Integer()) is None  # a schema object without a value


# --- the receive path (no socket: datagrams handed in directly) ---------------------------


def receiver(**overrides: Any) -> TrapReceiver:
    cfg = TrapReceiverConfig.model_validate(
        {"listen": "127.0.0.1:0", "communities": ["public"], **overrides}
    )
    return TrapReceiver(config=cfg, resolver=Inventory({"192.0.2.1": "edge1"}))


def test_counts_by_reason_and_garbage_does_not_stop_the_next_trap() -> None:
    r = receiver()
    addr = ("192.0.2.1", 50000)
    r.handle_datagram(b"\xff" * 40, addr)
    r.handle_datagram(bytes.fromhex(V2C_LINK_DOWN).replace(b"public", b"pub1ic"), addr)
    r.handle_datagram(bytes.fromhex(V2C_LINK_DOWN), addr)
    r.handle_datagram(bytes.fromhex(V2C_INFORM_LINK_UP), addr)
    stats = {k: v for k, v in r.stats.items() if v}
    assert stats == {"received": 4, "malformed": 1, "bad_community": 1, "notifications": 2,
                     "informs": 1}


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    r = receiver(max_queue=3)
    for _ in range(5):
        r.handle_datagram(bytes.fromhex(V2C_INFORM_LINK_UP), ("192.0.2.1", 50000))
    assert r.stats["dropped_overload"] == 2
    assert r.stats["informs"] == 3  # dropped INFORMs are not acknowledged: the sender retries


def test_warnings_about_one_sender_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    cfg = TrapReceiverConfig.model_validate(
        {"listen": "127.0.0.1:0", "communities": ["public"], "warn_interval": 60}
    )
    r = TrapReceiver(config=cfg, resolver=Inventory(), monotonic=lambda: now[0])
    bad = bytes.fromhex(V2C_LINK_DOWN).replace(b"public", b"secret")
    with caplog.at_level(logging.WARNING, logger="probes.snmp.traps"):
        for _ in range(3):
            r.handle_datagram(bad, ("198.51.100.1", 162))
        r.handle_datagram(bad, ("198.51.100.2", 162))
        now[0] = 61.0
        r.handle_datagram(bad, ("198.51.100.1", 162))
    messages = [rec.getMessage() for rec in caplog.records]
    assert len(messages) == 3
    assert "198.51.100.1" in messages[0] and "198.51.100.2" in messages[1]
    assert "2 more since the last warning" in messages[2]
    assert all("secret" not in m and "public" not in m for m in messages)
    assert r.stats["bad_community"] == 5


def test_a_bug_while_handling_costs_one_datagram(caplog: pytest.LogCaptureFixture) -> None:
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("clock broke")
        return TS

    cfg = TrapReceiverConfig.model_validate({"listen": "127.0.0.1:0", "communities": ["public"]})
    r = TrapReceiver(config=cfg, resolver=Inventory(), clock=clock)
    with caplog.at_level(logging.ERROR, logger="probes.snmp.traps"):
        r.handle_datagram(bytes.fromhex(V2C_LINK_DOWN), ("192.0.2.1", 1))
        r.handle_datagram(bytes.fromhex(V2C_LINK_DOWN), ("192.0.2.1", 1))
    assert (r.stats["errors"], r.stats["notifications"]) == (1, 1)
    assert "clock broke" in caplog.text


# --- config -----------------------------------------------------------------------------


def test_config_problems_are_errors() -> None:
    with pytest.raises(ValidationError, match="accepts nothing"):
        TrapReceiverConfig.model_validate({"listen": "127.0.0.1:0"})
    with pytest.raises(ValidationError, match="needs a priv_key"):
        TrapReceiverConfig.model_validate({"v3_users": [{"user": "u", "auth_key": "12345678"}]})
    with pytest.raises(ValidationError, match="5 to 32 octets"):
        TrapReceiverConfig.model_validate({"communities": ["c"], "engine_id": "0x8000"})
    with pytest.raises(ValidationError, match="brackets"):
        TrapReceiverConfig.model_validate({"communities": ["c"], "listen": "::1:162"})
    with pytest.raises(ValidationError, match=r"Extra inputs"):
        TrapReceiverConfig.model_validate({"communities": ["c"], "max_queu": 5})


def test_config_normalizes_engine_ids_and_parses_listen() -> None:
    cfg = TrapReceiverConfig.model_validate({
        "listen": "[::]:1162",
        "v3_users": [{"user": "u", "auth_key": "12345678", "priv_key": "abcdefgh",
                      "engine_ids": ["80:00:1F:88:03:AA:BB:CC", "0x80001f8803aabbcd"]}],
    })
    assert cfg.v3_users[0].engine_ids == ["80001f8803aabbcc", "80001f8803aabbcd"]
    assert cfg.address == ("::", 1162)
    assert parse_listen("0.0.0.0:162") == ("0.0.0.0", 162)
    assert cfg.engine_id == default_engine_id() == default_engine_id()  # stable


# --- hypothesis: decoder against pysnmp, and fuzz ------------------------------------------

subid = st.integers(0, 2**32 - 1)
oids = st.builds(
    lambda first, second, rest: (first, second, *rest),
    st.integers(0, 1), st.integers(0, 39), st.lists(subid, max_size=12),
) | st.builds(lambda second, rest: (2, second, *rest), st.integers(0, 1000), st.lists(subid, max_size=8))

# (pysnmp value, what decode_message should yield)
v2_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(lambda i: (api_v2c.Integer32(i), i)),
    st.binary(max_size=300).map(lambda b: (api_v2c.OctetString(b), b)),
    oids.map(lambda o: (api_v2c.ObjectIdentifier(o), o)),
    st.ip_addresses(v=4).map(lambda a: (api_v2c.IpAddress(str(a)), str(a))),
    st.integers(0, 2**32 - 1).map(lambda i: (api_v2c.Counter32(i), i)),
    st.integers(0, 2**32 - 1).map(lambda i: (api_v2c.Gauge32(i), i)),
    st.integers(0, 2**32 - 1).map(lambda i: (api_v2c.TimeTicks(i), i)),
    st.integers(0, 2**64 - 1).map(lambda i: (api_v2c.Counter64(i), i)),
    st.binary(max_size=20).map(lambda b: (api_v2c.Opaque(b), b)),
    st.just((api_v2c.Null(""), None)),
    st.just((api_v2c.NoSuchInstance(""), None)),
)
v1_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(lambda i: (api_v1.Integer(i), i)),
    st.binary(max_size=100).map(lambda b: (api_v1.OctetString(b), b)),
    oids.map(lambda o: (api_v1.ObjectIdentifier(o), o)),
    st.ip_addresses(v=4).map(lambda a: (api_v1.IpAddress(str(a)), str(a))),
    st.integers(0, 2**32 - 1).map(lambda i: (api_v1.Counter(i), i)),
    st.integers(0, 2**32 - 1).map(lambda i: (api_v1.TimeTicks(i), i)),
)


def encode_v2c(community: bytes, varbinds: list[tuple[tuple[int, ...], Any]], inform: bool) -> bytes:
    pdu = api_v2c.InformRequestPDU() if inform else api_v2c.SNMPv2TrapPDU()
    api_v2c.apiPDU.set_defaults(pdu)
    api_v2c.apiPDU.set_varbinds(pdu, varbinds)
    msg = api_v2c.Message()
    api_v2c.apiMessage.set_defaults(msg)
    api_v2c.apiMessage.set_community(msg, community)
    api_v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(ber_encoder.encode(msg))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    community=st.binary(min_size=1, max_size=40),
    trap=oids,
    values=st.lists(st.tuples(oids, v2_values), max_size=12),
    inform=st.booleans(),
)
def test_v2c_decoder_agrees_with_pysnmp(
    community: bytes, trap: tuple[int, ...], values: list[tuple[Any, Any]], inform: bool
) -> None:
    pysnmp_vbs = [(SYS_UPTIME, api_v2c.TimeTicks(5)), (SNMP_TRAP_OID, api_v2c.ObjectIdentifier(trap))]
    pysnmp_vbs += [(name, value) for name, (value, _) in values]
    data = encode_v2c(community, pysnmp_vbs, inform)
    msg = decode_message(data)
    assert msg.community == community
    assert msg.pdu_type == (0xA6 if inform else 0xA7)
    assert list(msg.varbinds) == [(SYS_UPTIME, 5), (SNMP_TRAP_OID, trap)] + [
        (name, expected) for name, (_, expected) in values
    ]
    parsed, _ = ber_decoder.decode(data, asn1Spec=api_v2c.Message())
    theirs = api_v2c.apiPDU.get_varbinds(api_v2c.apiMessage.get_pdu(parsed))
    assert [(tuple(n), plain_value(v)) for n, v in theirs] == list(msg.varbinds)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    enterprise=oids,
    agent=st.ip_addresses(v=4),
    generic=st.integers(0, 6),
    specific=st.integers(0, 2**31 - 1),
    uptime=st.integers(0, 2**32 - 1),
    values=st.lists(st.tuples(oids, v1_values), max_size=10),
)
def test_v1_translation_agrees_with_pysnmp_rfc2576(
    enterprise: tuple[int, ...], agent: Any, generic: int, specific: int, uptime: int,
    values: list[tuple[Any, Any]],
) -> None:
    pdu = api_v1.TrapPDU()
    api_v1.apiTrapPDU.set_defaults(pdu)
    api_v1.apiTrapPDU.set_enterprise(pdu, enterprise)
    api_v1.apiTrapPDU.set_agent_address(pdu, str(agent))
    api_v1.apiTrapPDU.set_generic_trap(pdu, generic)
    api_v1.apiTrapPDU.set_specific_trap(pdu, specific)
    api_v1.apiTrapPDU.set_timestamp(pdu, uptime)
    api_v1.apiTrapPDU.set_varbinds(pdu, [(name, value) for name, (value, _) in values])
    msg = api_v1.Message()
    api_v1.apiMessage.set_defaults(msg)
    api_v1.apiMessage.set_community(msg, "public")
    api_v1.apiMessage.set_pdu(msg, pdu)
    ours = decode_message(bytes(ber_encoder.encode(msg))).varbinds
    theirs = [
        (tuple(n), plain_value(v))
        for n, v in api_v2c.apiPDU.get_varbinds(rfc2576.v1_to_v2(pdu, snmpTrapCommunity="public"))
        if tuple(n) != SNMP_TRAP_COMMUNITY
    ]
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except DecodeError:
        return
    assert msg.version in (0, 1, 3)


GOLDEN = [V1_LINK_DOWN, V1_BGP, V2C_LINK_DOWN, V2C_INFORM_LINK_UP, V2C_TYPES, V3_TRAP]


@settings(max_examples=300)
@given(
    golden=st.sampled_from(GOLDEN),
    edits=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255), st.sampled_from("rid")),
                   min_size=1, max_size=6),
    cut=st.integers(0, 300),
)
def test_mangled_datagrams_decode_or_fail_cleanly_and_map_without_raising(
    golden: str, edits: list[tuple[int, int, str]], cut: int
) -> None:
    data = bytearray(bytes.fromhex(golden))
    for pos, byte, op in edits:
        pos %= len(data) or 1
        if op == "r" and data:
            data[pos] = byte
        elif op == "i":
            data.insert(pos, byte)
        elif data:
            del data[pos]
    if cut < len(data) and cut % 3 == 0:
        del data[cut:]
    try:
        msg = decode_message(bytes(data))
    except DecodeError:
        return
    if msg.is_notification:
        mapped = map_notification(note(msg.varbinds), "dev", NO_NAMES)
        assert mapped.outcome in ("mapped", "unmatched", "incomplete")


interesting = st.sampled_from([
    "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8",
    "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.31.1.1.1.18", "1.3.6.1.2.1.15.3.1.2",
    "1.3.6.1.2.1.15.3.1.7", "1.3.6.1.4.1.9.9.187.1.2.5.1.3", "1.3.6.1.4.1.2636.5.1.1.2.1.1.1.2",
    "1.3.6.1.4.1.2636.5.1.1.2.1.1.1.11", "1.3.6.1.4.1.30065.4.1.1.2.1.13", "1.3.6.1.2.1.1.3.0",
    "1.3.6.1.6.3.18.1.3.0",
]).map(oid)
varbind_names = st.one_of(
    oids,
    st.tuples(interesting, st.lists(st.integers(0, 300), max_size=20)).map(lambda t: t[0] + tuple(t[1])),
)
any_value = st.one_of(
    st.none(), st.integers(-(2**70), 2**70), st.binary(max_size=40), st.text(max_size=20),
    oids, st.ip_addresses().map(str),
)
trap_oids = st.one_of(
    st.sampled_from([LINK_DOWN, LINK_UP, COLD_START, WARM_START, *BGP_TRAPS]), oids, st.none()
)


@settings(max_examples=300)
@given(trap=trap_oids, varbinds=st.lists(st.tuples(varbind_names, any_value), max_size=10),
       named=st.booleans())
def test_random_varbinds_map_to_well_formed_observations(
    trap: tuple[int, ...] | None, varbinds: list[VarBind], named: bool
) -> None:
    vbs = ([] if trap is None else [(SNMP_TRAP_OID, trap)]) + varbinds
    names = Inventory(names={("dev", i): f"if{i}" for i in range(300)}).interface_name
    mapped = map_notification(note(vbs), "dev", names if named else NO_NAMES)
    assert mapped.outcome in ("mapped", "unmatched", "incomplete")
    assert (mapped.outcome == "mapped") == bool(mapped.observations)
    for obs in mapped.observations:
        assert obs.device == "dev" and obs.source == "trap" and obs.ts == TS
        if obs.name == IF_OPER_STATUS:
            assert isinstance(obs.value, int) and obs.value in STATUS_NAMES
            assert obs.instance and obs.labels["if_index"].isdigit()
            assert obs.labels["admin"]
        elif obs.name == BGP_PEER_STATE:
            ipaddress.ip_address(obs.instance)
            assert isinstance(obs.value, int)
        else:
            assert obs.name == DEVICE_RESTARTED and isinstance(obs.value, float)
