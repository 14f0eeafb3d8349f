"""The demo's simulated SNMP agents, checked with clients that share no code with them.

net-snmp's CLI (C) and gufo-snmp (Rust) talk to the agents over loopback UDP; a few
checks decode the raw reply with pysnmp's protocol layer. The agents' clock is fake, so
uptimes and counters are exact; the sockets and the clients' timeouts are real.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from gufo.snmp import NoSuchInstance
from gufo.snmp.aio.client import SnmpSession
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api

from collector.demo.agents import DeviceSpec, InterfaceSpec, SimulatedFleet

pytestmark = pytest.mark.integration

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
IF_LAST_CHANGE = "1.3.6.1.2.1.2.2.1.9"
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN = "1.3.6.1.2.1.31.1.1.1.6"
IF_HC_OUT = "1.3.6.1.2.1.31.1.1.1.10"
IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"
IF_TABLE_LAST_CHANGE = "1.3.6.1.2.1.31.1.5.0"  # the last OID the agents serve

ACCESS = DeviceSpec(
    "acc1",
    community="acc-ro",
    sys_descr="Simulated access switch",
    interfaces=[
        InterfaceSpec(1, "Gi0/1", "cust-alice"),
        InterfaceSpec(2, "Gi0/2", "cust-bob", speed_mbps=100, oper_up=False),
        InterfaceSpec(3, "Gi0/3", admin_up=False, oper_up=False),
        InterfaceSpec(24, "Te0/24", "uplink agg1", speed_mbps=10_000, in_bps=8.0, out_bps=16.0),
    ],
)
AGGREGATION = DeviceSpec(
    "agg1", interfaces=[InterfaceSpec(i, f"Te1/{i}", f"acc{i}") for i in (1, 2)]
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fleet(clock: FakeClock) -> AsyncIterator[SimulatedFleet]:
    async with SimulatedFleet([ACCESS, AGGREGATION], clock=clock) as fleet:
        yield fleet


@pytest.fixture(scope="module", autouse=True)
def _netsnmp_tools() -> None:
    if shutil.which("snmpbulkwalk") is None:
        pytest.fail("net-snmp CLI tools are missing: apt-get install snmp")


async def netsnmp(
    tool: str,
    fleet: SimulatedFleet,
    device: str,
    *oids: str,
    community: str,
    options: Sequence[str] = (),
    wait: float = 1.0,
) -> tuple[int, str, str]:
    """Run a net-snmp CLI tool against one device: (exit code, stdout, stderr)."""
    target = f"{fleet.address}:{fleet.port(device)}"
    proc = await asyncio.create_subprocess_exec(
        *(tool, "-v2c", "-c", community, "-m", "", "-On", "-Oe", "-t", str(wait), "-r", "0"),
        *options,
        target,
        *oids,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(wait + 10):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def parse(out: str) -> dict[str, str]:
    """``.1.3.6.1.2.1.2.2.1.8.1 = INTEGER: 1`` lines -> {"1.3.6.1.2.1.2.2.1.8.1": "INTEGER: 1"}."""
    rows = (line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    return {oid.lstrip("."): value for oid, value in rows}


async def walk(fleet: SimulatedFleet, device: str, oid: str, community: str) -> dict[str, str]:
    code, out, err = await netsnmp("snmpbulkwalk", fleet, device, oid, community=community)
    assert code == 0, err
    return parse(out)


def session(
    fleet: SimulatedFleet, device: str, community: str, timeout: float = 1.0
) -> SnmpSession:
    return SnmpSession(fleet.address, fleet.port(device), community=community, timeout=timeout)


def get_request(community: str, *oids: str, version: int = api.SNMP_VERSION_2C) -> bytes:
    """A GET request encoded by pysnmp's protocol layer."""
    proto = api.PROTOCOL_MODULES[version]
    pdu = proto.GetRequestPDU()
    proto.apiPDU.set_defaults(pdu)
    proto.apiPDU.set_varbinds(pdu, [(univ.ObjectIdentifier(oid), proto.null) for oid in oids])
    msg = proto.Message()
    proto.apiMessage.set_defaults(msg)
    proto.apiMessage.set_community(msg, community)
    proto.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def decode_response(reply: bytes) -> list[Any]:
    """[(oid, value)…] of a reply, decoded by pysnmp's protocol layer."""
    answer, rest = decoder.decode(reply, asn1Spec=V2C.Message())
    assert rest == b""
    response = V2C.apiMessage.get_pdu(answer)
    assert response.isSameTypeWith(V2C.ResponsePDU())
    assert int(V2C.apiPDU.get_error_status(response)) == 0
    return list(V2C.apiPDU.get_varbinds(response))


async def exchange(fleet: SimulatedFleet, device: str, datagram: bytes, wait: float = 2) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, datagram, (fleet.address, fleet.port(device)))
        async with asyncio.timeout(wait):
            reply, _ = await loop.sock_recvfrom(sock, 65_535)
    return reply


async def test_ports_are_os_chosen_and_distinct(fleet: SimulatedFleet) -> None:
    ports = {fleet.port(name) for name in fleet.devices}
    assert fleet.address == "127.0.0.1"
    assert len(ports) == 2
    assert 161 not in ports


async def test_bulkwalk_returns_the_configured_ports(fleet: SimulatedFleet) -> None:
    oper = await walk(fleet, "acc1", IF_OPER, "acc-ro")
    admin = await walk(fleet, "acc1", IF_ADMIN, "acc-ro")
    names = await walk(fleet, "acc1", IF_NAME, "acc-ro")
    aliases = await walk(fleet, "acc1", IF_ALIAS, "acc-ro")

    assert oper == {
        f"{IF_OPER}.1": "INTEGER: 1",
        f"{IF_OPER}.2": "INTEGER: 2",
        f"{IF_OPER}.3": "INTEGER: 2",
        f"{IF_OPER}.24": "INTEGER: 1",
    }
    assert list(admin.values()) == ["INTEGER: 1", "INTEGER: 1", "INTEGER: 2", "INTEGER: 1"]
    assert list(names.values()) == [
        'STRING: "Gi0/1"',
        'STRING: "Gi0/2"',
        'STRING: "Gi0/3"',
        'STRING: "Te0/24"',
    ]
    assert aliases[f"{IF_ALIAS}.24"] == 'STRING: "uplink agg1"'


async def test_getnext_walk_and_bulkwalk_of_the_whole_mib_agree(fleet: SimulatedFleet) -> None:
    code, by_next, err = await netsnmp("snmpwalk", fleet, "agg1", ".1", community="public")
    assert code == 0, err
    by_bulk = await walk(fleet, "agg1", ".1", "public")

    assert parse(by_next) == by_bulk  # net-snmp also checks that OIDs increase
    assert by_bulk[SYS_NAME] == 'STRING: "agg1"'
    assert by_bulk[f"{IF_HC_IN}.2"].startswith("Counter64: ")
    assert by_bulk["1.3.6.1.2.1.2.1.0"] == "INTEGER: 2"  # ifNumber
    assert len(by_bulk) == 6 + 2 * 18


async def test_getbulk_honours_non_repeaters_and_max_repetitions(fleet: SimulatedFleet) -> None:
    code, out, err = await netsnmp(
        "snmpbulkget",
        fleet,
        "acc1",
        "1.3.6.1.2.1.1.3",
        IF_OPER,
        IF_NAME,
        community="acc-ro",
        options=("-Cn1", "-Cr3"),
    )
    assert code == 0, err
    assert list(parse(out)) == [
        SYS_UPTIME,
        f"{IF_OPER}.1",
        f"{IF_NAME}.1",
        f"{IF_OPER}.2",
        f"{IF_NAME}.2",
        f"{IF_OPER}.3",
        f"{IF_NAME}.3",
    ]


async def test_set_oper_status_flips_the_next_walk(fleet: SimulatedFleet, clock: FakeClock) -> None:
    clock.now += 12.5
    fleet.set_oper_status("acc1", 1, False)
    fleet.set_oper_status("acc1", 2, True)

    oper = await walk(fleet, "acc1", IF_OPER, "acc-ro")
    last_change = await walk(fleet, "acc1", IF_LAST_CHANGE, "acc-ro")
    code, out, err = await netsnmp(
        "snmpget", fleet, "acc1", IF_TABLE_LAST_CHANGE, community="acc-ro"
    )
    assert code == 0, err

    assert oper[f"{IF_OPER}.1"] == "INTEGER: 2"
    assert oper[f"{IF_OPER}.2"] == "INTEGER: 1"
    assert last_change[f"{IF_LAST_CHANGE}.1"].startswith("Timeticks: (1250)")
    assert last_change[f"{IF_LAST_CHANGE}.24"].startswith("Timeticks: (0)")
    # RFC 2863: ifTableLastChange moves only when rows are created or deleted.
    assert parse(out)[IF_TABLE_LAST_CHANGE].startswith("Timeticks: (0)")


async def test_admin_down_port_cannot_come_up(fleet: SimulatedFleet) -> None:
    with pytest.raises(ValueError, match="admin-down"):
        fleet.set_oper_status("acc1", 3, True)
    with pytest.raises(KeyError, match="no ifIndex 99"):
        fleet.set_oper_status("acc1", 99, True)


async def test_counters_grow_at_the_port_rate_and_stop_when_down(
    fleet: SimulatedFleet, clock: FakeClock
) -> None:
    uplink_in, uplink_out = f"{IF_HC_IN}.24", f"{IF_HC_OUT}.24"  # 1 and 2 octets/s
    clock.now += 2**32 + 300  # past a Counter32 wrap
    async with session(fleet, "acc1", "acc-ro") as snmp:
        first = await snmp.get_many([uplink_in, uplink_out, f"{IF_IN_OCTETS}.24"])
        fleet.set_oper_status("acc1", 24, False)
        clock.now += 60
        second = await snmp.get_many([uplink_in, uplink_out, f"{IF_HC_IN}.2"])

    assert first[uplink_in] == 2**32 + 300
    assert first[uplink_out] == 2 * (2**32 + 300)
    assert first[f"{IF_IN_OCTETS}.24"] == 300  # Counter32 wrapped
    assert second[uplink_in] == first[uplink_in]  # down: no traffic
    assert second[f"{IF_HC_IN}.2"] == 0  # down from the start


@pytest.mark.parametrize("octets", [0, 127, 128, 255, 256, 2**31, 2**32 - 1, 2**40 + 1])
async def test_counter_encoding_matches_pysnmp(clock: FakeClock, octets: int) -> None:
    port = InterfaceSpec(1, "Gi0/1", in_bps=8.0)  # one octet a second
    async with SimulatedFleet([DeviceSpec("box", interfaces=[port])], clock=clock) as fleet:
        clock.now += octets
        request = get_request("public", f"{IF_HC_IN}.1", f"{IF_IN_OCTETS}.1")
        varbinds = decode_response(await exchange(fleet, "box", request))

    (_, hc), (_, c32) = varbinds
    assert hc.isSameTypeWith(V2C.Counter64()) and int(hc) == octets
    assert c32.isSameTypeWith(V2C.Counter32()) and int(c32) == octets % 2**32


async def test_silent_device_times_out_until_revived(fleet: SimulatedFleet) -> None:
    fleet.set_silent("agg1", True)
    async with session(fleet, "agg1", "public", timeout=0.3) as snmp:
        with pytest.raises(TimeoutError):
            await snmp.get(SYS_NAME)
        assert await session(fleet, "acc1", "acc-ro").get(SYS_NAME) == b"acc1"

        fleet.set_silent("agg1", False)
        assert await snmp.get(SYS_NAME) == b"agg1"


async def test_wrong_community_times_out(fleet: SimulatedFleet) -> None:
    code, out, err = await netsnmp(
        "snmpbulkwalk", fleet, "acc1", IF_OPER, community="public", wait=0.3
    )

    assert code != 0
    assert "Timeout" in err and out == ""
    assert fleet.stats("acc1").ignored == 1
    assert fleet.stats("acc1").answered == 0


async def test_restart_resets_sysuptime(fleet: SimulatedFleet, clock: FakeClock) -> None:
    async with session(fleet, "agg1", "public") as snmp:
        clock.now += 3_600
        before = await snmp.get(SYS_UPTIME)
        fleet.restart("agg1")
        clock.now += 1
        after = await snmp.get_many([SYS_UPTIME, f"{IF_HC_IN}.1"])

    assert before == 360_000
    assert after[SYS_UPTIME] == 100
    assert after[f"{IF_HC_IN}.1"] == 12_500_000  # 10 % of 1 Gbit/s, from zero again


async def test_past_the_end_is_end_of_mib_view(fleet: SimulatedFleet) -> None:
    code, out, err = await netsnmp(
        "snmpgetnext", fleet, "agg1", IF_TABLE_LAST_CHANGE, community="public"
    )
    assert code == 0, err
    assert "No more variables left in this MIB View" in out

    async with session(fleet, "agg1", "public") as snmp:
        assert [vb async for vb in snmp.getbulk(IF_TABLE_LAST_CHANGE)] == []


async def test_get_of_missing_oids(fleet: SimulatedFleet) -> None:
    code, out, err = await netsnmp(
        "snmpget",
        fleet,
        "agg1",
        "1.3.6.1.2.1.1.5.1",  # sysName exists, this instance does not
        f"{IF_OPER}.7",
        "1.3.6.1.2.1.1.9.0",  # sysORTable is not served
        community="public",
    )
    assert code == 0, err
    assert list(parse(out).values()) == [
        "No Such Instance currently exists at this OID",
        "No Such Instance currently exists at this OID",
        "No Such Object available on this agent at this OID",
    ]
    async with session(fleet, "agg1", "public") as snmp:
        with pytest.raises(NoSuchInstance):
            await snmp.get(f"{IF_OPER}.7")


async def test_garbage_is_counted_and_does_not_break_the_endpoint(fleet: SimulatedFleet) -> None:
    get_msg = get_request("public", SYS_NAME)
    garbage = [
        b"",
        b"\x00\xffnot snmp",
        bytes(range(256)),
        get_msg[:-3],  # truncated
        get_msg + b"\x00",  # trailing bytes
        encoder.encode(univ.Integer(5)),
        b"\x30\x84\xff\xff\xff\xff",  # a 4 GB length
        get_msg[:2],
        # an indefinite-length varbind with a third component: pyasn1 raises IndexError
        bytes.fromhex(
            "303702010104067075626c6963a02a0203466206020100020100301d308006082b06010201"
            "0103000500300d06092b060102011f0105000500"
        ),
    ]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for datagram in garbage:
            await loop.sock_sendto(sock, datagram, (fleet.address, fleet.port("agg1")))

    assert decode_response(await exchange(fleet, "agg1", get_msg))[0][1] == b"agg1"
    async with session(fleet, "agg1", "public") as snmp:
        assert await snmp.get(SYS_NAME) == b"agg1"
    assert fleet.malformed == len(garbage)
    assert fleet.stats("agg1").answered == 2


async def test_snmpv1_and_set_requests_are_not_served(fleet: SimulatedFleet) -> None:
    with pytest.raises(TimeoutError):
        v1_get = get_request("public", SYS_NAME, version=api.SNMP_VERSION_1)
        await exchange(fleet, "agg1", v1_get, wait=0.3)

    code, _, err = await netsnmp(
        "snmpset", fleet, "agg1", SYS_NAME, "s", "pwned", community="public"
    )
    assert code != 0 and "noAccess" in err
    assert fleet.stats("agg1").ignored == 1
    assert fleet.stats("agg1").malformed == 0


async def test_exit_closes_every_endpoint(clock: FakeClock) -> None:
    async with SimulatedFleet([AGGREGATION], clock=clock) as fleet:
        port = fleet.port("agg1")
    with pytest.raises(RuntimeError, match="not running"):
        fleet.port("agg1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # free again


async def test_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="duplicate if_index"):
        DeviceSpec("x", interfaces=[InterfaceSpec(1, "a"), InterfaceSpec(1, "b")])
    with pytest.raises(ValueError, match="admin-down"):
        InterfaceSpec(1, "a", admin_up=False)
    with pytest.raises(ValueError, match="two devices"):
        SimulatedFleet([AGGREGATION, AGGREGATION])
    with pytest.raises(KeyError, match="no simulated device 'nope'"):
        SimulatedFleet([AGGREGATION]).set_silent("nope", True)


class _TrapSink(asyncio.DatagramProtocol):
    """A trap receiver on 127.0.0.1: every datagram and the address it came from."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (str(addr[0]), addr[1])))


async def test_port_changes_send_link_traps_from_the_device_address(clock: FakeClock) -> None:
    # decoded by netreflex's own BER trap decoder: it shares no code with pysnmp's encoder
    from probes.snmp.traps import (
        LINK_DOWN,
        LINK_UP,
        SNMP_TRAP_OID,
        Notification,
        decode_message,
        map_notification,
    )

    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(_TrapSink, local_addr=("127.0.0.1", 0))
    dest = transport.get_extra_info("sockname")
    acc = DeviceSpec("acc1", interfaces=ACCESS.interfaces, address="127.0.0.7")
    quiet = DeviceSpec("agg1", interfaces=AGGREGATION.interfaces, traps=False)
    try:
        async with SimulatedFleet(
            [acc, quiet], clock=clock, trap_destination=dest, trap_community="traps-rw"
        ) as fleet:
            assert fleet.address_of("acc1") == "127.0.0.7"
            clock.now += 12.5
            fleet.set_oper_status("acc1", 24, up=False)
            fleet.set_oper_status("acc1", 24, up=False)  # no change: no trap
            fleet.set_oper_status("agg1", 1, up=False)  # a device without traps
            clock.now += 1.0
            fleet.set_oper_status("acc1", 24, up=True)
            async with asyncio.timeout(5):
                first = await sink.received.get()
                second = await sink.received.get()
            await asyncio.sleep(0.2)
            assert sink.received.empty()
            assert fleet.traps_sent == 2
            agent_port = fleet.port("acc1")
    finally:
        transport.close()

    for (data, (host, port)), trap, oper, uptime in (
        (first, LINK_DOWN, 2, 1250),
        (second, LINK_UP, 1, 1350),
    ):
        # sent from the agent's own socket, so from the device's address: how a receiver
        # tells which device it came from
        assert (host, port) == ("127.0.0.7", agent_port)
        msg = decode_message(data)
        assert msg.version == 1 and msg.community == b"traps-rw"
        assert msg.is_notification
        varbinds = dict(msg.varbinds)
        assert varbinds[tuple(int(x) for x in SYS_UPTIME.split("."))] == uptime
        assert varbinds[SNMP_TRAP_OID] == trap
        assert varbinds[tuple(int(x) for x in f"{IF_OPER}.24".split("."))] == oper
        assert varbinds[tuple(int(x) for x in f"{IF_ADMIN}.24".split("."))] == 1
        assert varbinds[(1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 24)] == 24
        assert [name for name, _ in msg.varbinds][:2] == [
            (1, 3, 6, 1, 2, 1, 1, 3, 0),
            SNMP_TRAP_OID,
        ]  # RFC 3416 4.2.6: these come first
        note = Notification("2c", host, msg.varbinds, 0.0)
        mapped = map_notification(note, "acc1", lambda device, index: None)
        assert mapped.outcome == "mapped"
        (obs,) = mapped.observations
        assert (obs.device, obs.instance, obs.value) == ("acc1", "24", oper)


async def test_no_trap_destination_sends_nothing(fleet: SimulatedFleet) -> None:
    fleet.set_oper_status("acc1", 1, up=False)
    assert fleet.traps_sent == 0
