"""The MQTT bus against a real Mosquitto on loopback: round trip, a broker restart while
pollers keep publishing, a core that is away, two sharded pollers into one core."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import aiomqtt
import pytest
from pydantic import SecretStr

from collector.bus import Batch, CounterTable
from collector.cluster import BrokerConfig, ClusterConfig, owner
from collector.mqtt_bus import MqttPublisher, MqttSubscriber, encode_batch
from collector.roles import close_bus, deliver_counters, plan, polled_devices, publish_counters
from probes.types import InterfaceCounters, Observation
from tests.support.mosquitto import PASSWORD, USER, Mosquitto

pytestmark = pytest.mark.integration


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def cfg(port: int, **kw: object) -> BrokerConfig:
    base: dict[str, object] = {"host": "127.0.0.1", "port": port, "reconnect_min": 0.05,
                               "reconnect_max": 0.3, "connect_timeout": 2.0,
                               "ack_timeout": 2.0, "keepalive": 5}
    return BrokerConfig.model_validate(base | kw)


def ob(device: str, n: int) -> Observation:
    return Observation(device, "snmp", "if_oper_status", "ge-0/0/1", n, 1718000000.0 + n,
                       {"n": str(n)})


async def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


class Sink:
    """A core-side handler that records values per device."""

    def __init__(self) -> None:
        self.by_device: dict[str, list[int]] = defaultdict(list)
        self.batches = 0

    def __call__(self, batch: Batch) -> None:
        self.batches += 1
        for o in batch:
            assert isinstance(o.value, int)
            self.by_device[o.device].append(o.value)

    def count(self) -> int:
        return sum(len(v) for v in self.by_device.values())


@contextlib.asynccontextmanager
async def running(bus: MqttPublisher | MqttSubscriber,
                  handler: Callable[[Batch], None]) -> AsyncIterator[asyncio.Event]:
    stopping = asyncio.Event()
    task = asyncio.create_task(bus.consume(handler, stopping), name="consume")
    try:
        if isinstance(bus, MqttSubscriber):
            waiter = asyncio.ensure_future(bus.subscribed.wait())
            await asyncio.wait({waiter, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task.done():
                task.result()
            assert bus.subscribed.is_set(), "the core did not subscribe"
        yield stopping
    finally:
        stopping.set()
        await asyncio.wait_for(task, 15)


async def publish_rounds(pub: MqttPublisher, devices: Sequence[str], start: int,
                         stop: int) -> None:
    for n in range(start, stop):
        await pub.publish([ob(d, n) for d in devices])


async def test_round_trip_one_message_per_device_in_order(broker: Mosquitto) -> None:
    sink, delivered = Sink(), list[Batch]()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-rt")
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=1000,
                        max_inflight=16)
    devices = ["r1", "r2", "sw/3"]
    async with running(sub, sink), running(pub, delivered.append):
        await publish_rounds(pub, devices, 0, 50)
        await until(lambda: sink.count() == 150, what="150 observations at the core")
        await until(lambda: pub.buffered() == 0)
    assert {d: sink.by_device[d] for d in devices} == {d: list(range(50)) for d in devices}
    assert len(delivered) == 150  # the poller's handler saw each batch the broker took
    assert pub.stats["delivered"] == 150 and pub.stats["connects"] == 1
    assert sub.stats["handled"] == 150 and sub.stats["duplicates"] == 0
    assert sub.stats["missing"] == 0 and sub.stats["malformed"] == 0


async def test_broker_restart_buffers_then_delivers_exactly_once_in_order(
        broker: Mosquitto) -> None:
    sink = Sink()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-restart")
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=5000,
                        max_inflight=32)
    devices = [f"sw{i}" for i in range(10)]
    async with running(sub, sink), running(pub, lambda b: None):
        await publish_rounds(pub, devices, 0, 20)
        await until(lambda: sink.count() == 200, what="the first 200")

        await asyncio.to_thread(broker.stop)
        await until(lambda: not pub.connected and not sub.connected, what="disconnects")
        await publish_rounds(pub, devices, 20, 60)
        await asyncio.sleep(0.3)  # a few reconnect attempts fail meanwhile
        assert pub.buffered() == 400
        assert pub.oldest_age() >= 0.3
        assert pub.stats["connect_failures"] >= 1

        await asyncio.to_thread(broker.start)  # same port, same persistence directory
        await publish_rounds(pub, devices, 60, 70)
        await until(lambda: sink.count() == 700, what="all 700 observations")
        await until(lambda: pub.buffered() == 0)
        await asyncio.sleep(0.2)  # nothing more arrives
    assert {d: sink.by_device[d] for d in devices} == {d: list(range(70)) for d in devices}
    assert sub.stats["handled"] == 700 and sub.stats["missing"] == 0
    assert pub.stats["dropped"] == 0 and pub.stats["connects"] >= 2
    assert sub.stats["connects"] >= 2


async def keep_publishing(pub: MqttPublisher, devices: Sequence[str], rounds: int,
                          every: float = 0.002) -> None:
    for n in range(rounds):
        await pub.publish([ob(d, n) for d in devices])
        await asyncio.sleep(every)


async def test_broker_restart_with_batches_in_flight_loses_and_repeats_nothing(
        broker: Mosquitto) -> None:
    sink = Sink()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-inflight")
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=50_000,
                        max_inflight=64)
    devices = [f"sw{i}" for i in range(20)]
    async with running(sub, sink), running(pub, lambda b: None):
        producer = asyncio.create_task(keep_publishing(pub, devices, 400))
        await until(lambda: sink.count() > 1000, what="traffic")
        await asyncio.to_thread(broker.restart)  # while the producer keeps going
        await until(lambda: pub.stats["connects"] >= 2, what="a reconnect")
        await asyncio.to_thread(broker.restart)  # and once more
        await producer
        await until(lambda: sink.count() == 8000, timeout=30, what="all 8000")
        await asyncio.sleep(0.2)
    assert {d: sink.by_device[d] for d in devices} == {d: list(range(400)) for d in devices}
    assert pub.stats["connects"] >= 3 and sub.stats["missing"] == 0


async def test_core_restart_mid_stream_loses_nothing(broker: Mosquitto) -> None:
    """The core acknowledges after handling: what it received but had not handled when
    it stopped is redelivered to the next run, not lost."""
    first, second = Sink(), Sink()
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=50_000,
                        max_inflight=64)
    devices = [f"sw{i}" for i in range(20)]
    async with running(pub, lambda b: None):
        async with running(MqttSubscriber(broker=cfg(broker.port), client_id="core-mid"),
                           first):
            producer = asyncio.create_task(keep_publishing(pub, devices, 300, every=0))
            await until(lambda: first.count() > 500, what="traffic")
        async with running(MqttSubscriber(broker=cfg(broker.port), client_id="core-mid"),
                           second):
            await producer
            await until(lambda: pub.buffered() == 0)
            await until(lambda: len({(d, v) for s in (first, second)
                                     for d, vs in s.by_device.items() for v in vs}) == 6000,
                        timeout=30, what="every observation at one core run or the other")
    for d in devices:
        got = first.by_device[d] + second.by_device[d]
        assert sorted(set(got)) == list(range(300))
        assert first.by_device[d] == sorted(first.by_device[d])
        assert second.by_device[d] == sorted(second.by_device[d])
    assert 0 < first.count() < 6000


async def test_a_core_that_is_away_gets_everything_on_its_return(broker: Mosquitto) -> None:
    first, second = Sink(), Sink()
    async with running(MqttSubscriber(broker=cfg(broker.port), client_id="core-away"), first):
        pass  # the first connection creates the persistent session and its subscription
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=1000,
                        max_inflight=8)
    async with running(pub, lambda b: None):
        await publish_rounds(pub, ["r1", "r2"], 0, 100)
        await until(lambda: pub.buffered() == 0, what="the broker to take all 200")
    assert first.count() == 0
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-away")
    async with running(sub, second):
        await until(lambda: second.count() == 200, what="the queued 200")
    assert second.by_device == {"r1": list(range(100)), "r2": list(range(100))}


async def test_two_sharded_pollers_and_one_core(broker: Mosquitto) -> None:
    members = ["pop1", "pop2"]
    devices = [f"sw{i:03d}" for i in range(60)]
    sink = Sink()
    seen_topics: dict[str, set[str]] = defaultdict(set)
    core = ClusterConfig.model_validate(
        {"role": "core", "broker": cfg(broker.port).model_dump()})
    core_plan = plan(core)
    assert isinstance(core_plan.bus, MqttSubscriber) and core_plan.correlates
    pollers = []
    for m in members:
        c = ClusterConfig.model_validate({
            "role": "poller", "poller_id": m, "members": members,
            "broker": cfg(broker.auth_port, username=USER, password=PASSWORD).model_dump()})
        p = plan(c)
        assert isinstance(p.bus, MqttPublisher) and not p.correlates
        pollers.append((m, polled_devices(c, devices), p.bus))
    shares = {m: set(share) for m, share, _ in pollers}
    assert shares["pop1"].isdisjoint(shares["pop2"])
    assert shares["pop1"] | shares["pop2"] == set(devices)

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="spy") as spy:
        await spy.subscribe("netreflex/v1/obs/+/+", qos=1)

        async def watch() -> None:
            async for message in spy.messages:
                _, _, _, shard, device = message.topic.value.split("/")
                seen_topics[shard].add(device)

        watcher = asyncio.create_task(watch())
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(running(core_plan.bus, sink))
            for _, _, bus in pollers:
                await stack.enter_async_context(running(bus, lambda b: None))
            for _, share, bus in pollers:
                await publish_rounds(bus, share, 0, 5)
            await until(lambda: sink.count() == 300, what="300 observations at the core")
            await until(lambda: sum(map(len, seen_topics.values())) == 60)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert {d: sink.by_device[d] for d in devices} == {d: list(range(5)) for d in devices}
    assert {s: devs for s, devs in seen_topics.items()} == shares
    assert all(owner(d, members) == s for s, devs in seen_topics.items() for d in devs)
    assert all(bus.stats["connects"] == 1 for _, _, bus in pollers)  # over the auth listener


def counters(n: int, ports: int = 48) -> InterfaceCounters:
    """A 48-port table whose octets grow with ``n``; some columns missing on some ports."""
    return InterfaceCounters(
        if_index=list(range(1, ports + 1)), name=[f"ge-0/0/{i}" for i in range(ports)],
        oper_status=[1 if (i + n) % 5 else 2 for i in range(ports)],
        in_octets=[2**64 - 1 - n if i == 0 else n * 1000 + i for i in range(ports)],
        out_octets=[None if i % 7 == 0 else n * 2000 + i for i in range(ports)],
        in_errors=[n for _ in range(ports)], out_errors=[None] * ports,
        speed_mbps=[None if i == 3 else 10_000 for i in range(ports)])


async def test_counter_tables_reach_the_core_identical_and_in_order_across_a_restart(
        broker: Mosquitto) -> None:
    """Per device, observations and tables arrive interleaved exactly as polled, each
    table column for column, including across a broker restart with tables buffered."""
    events: dict[str, list[tuple[str, object]]] = defaultdict(list)

    def on_batch(batch: Batch) -> None:
        for o in batch:
            events[o.device].append(("obs", o.value))

    def on_table(t: CounterTable) -> None:
        events[t.device].append(("table", t))

    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-counters")
    deliver_counters(sub, on_table)
    pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=5000,
                        max_inflight=16)
    devices = ["r1", "r2", "sw/3"]
    want: dict[str, list[tuple[str, object]]] = defaultdict(list)

    async def poll_round(n: int) -> None:
        for d in devices:
            if d != "r2":  # r2's polls find nothing changed: its tables travel alone
                await pub.publish([ob(d, n)])
                want[d].append(("obs", n))
            t = CounterTable(d, 1718000000.0 + n, counters(n))
            assert await publish_counters(pub, t)
            want[d].append(("table", t))

    async with running(sub, on_batch), running(pub, lambda b: None):
        for n in range(10):
            await poll_round(n)
        await until(lambda: sub.tables["handled"] == 30, what="the first 30 tables")
        await asyncio.to_thread(broker.stop)
        await until(lambda: not pub.connected, what="the poller to notice")
        for n in range(10, 20):
            await poll_round(n)
        assert pub.buffered() == 30  # one message per device and poll, while buffered
        await asyncio.to_thread(broker.start)
        await until(lambda: sub.tables["handled"] == 60, what="all 60 tables")
        await until(lambda: pub.buffered() == 0)
        await asyncio.sleep(0.2)  # nothing more arrives
    assert dict(events) == dict(want)
    assert pub.tables == {"queued": 60, "delivered": 60, "dropped": 0, "unencodable": 0}
    assert pub.stats["delivered"] == 60  # a table rides with its poll's observations
    assert sub.tables == {"handled": 60, "malformed": 0, "ignored": 0, "handler_errors": 0}
    # the broker may redeliver after its restart (at least once); dedup keeps tables single
    assert sub.stats["missing"] == 0


async def test_bad_messages_are_counted_and_skipped_not_fatal(broker: Mosquitto) -> None:
    sink = Sink()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-bad")
    async with running(sub, sink):
        async with aiomqtt.Client("127.0.0.1", broker.port) as raw:
            topic = "netreflex/v1/obs/rogue/r1"
            await raw.publish(topic, b"\x00garbage", qos=1)
            await raw.publish(topic, b'{"v": 2, "poller": "future"}', qos=1)
            await raw.publish(topic, encode_batch([ob("r1", 7)], poller="rogue", seq=1), qos=1)
            await raw.publish(topic, encode_batch([ob("r1", 7)], poller="rogue", seq=1), qos=1)
            ragged = encode_batch([ob("r1", 8)], poller="rogue", seq=2,
                                  counters=CounterTable("r1", 1.0, counters(1)))
            ragged = ragged.replace(b'"in_errors":[1,', b'"in_errors":[')  # 47 of 48
            await raw.publish(topic, ragged, qos=1)
        await until(lambda: sub.stats["received"] == 5)
    assert sink.by_device == {"r1": [7]}  # the ragged table took its message with it
    assert (sub.stats["malformed"], sub.stats["unsupported_version"],
            sub.stats["duplicates"]) == (2, 1, 1)
    assert sub.tables["malformed"] == 1


async def test_wrong_password_is_retried_and_counted_not_fatal(broker: Mosquitto) -> None:
    pub = MqttPublisher(broker=cfg(broker.auth_port, username=USER,
                                   password=SecretStr("wrong-password")),
                        poller_id="pop1", buffer_batches=200, max_inflight=4,
                        flush_timeout=0.2)
    async with running(pub, lambda b: None):
        await pub.publish([ob("r1", 1)])
        await until(lambda: pub.stats["connect_failures"] >= 2, what="retries")
        assert not pub.connected and pub.buffered() == 1
    assert await pub.aclose(0.2) == 1  # the broker never took it: reported, not hidden


async def test_shutdown_flushes_what_is_buffered(broker: Mosquitto) -> None:
    sink = Sink()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-flush")
    async with running(sub, sink):
        pub = MqttPublisher(broker=cfg(broker.port), poller_id="pop1", buffer_batches=5000,
                            max_inflight=16, flush_timeout=10)
        stopping = asyncio.Event()
        stopping.set()  # stop asked before the first connection: still flushes
        await publish_rounds(pub, ["r1"], 0, 300)
        await asyncio.wait_for(pub.consume(lambda b: None, stopping), 15)
        assert pub.buffered() == 0
        # a poll that finishes after the bus stopped is sent by close_bus
        await pub.publish([ob("r1", 300)])
        assert await close_bus(pub, lambda b: None, 5) == 0
        await until(lambda: sink.count() == 301)
    assert sink.by_device["r1"] == list(range(301))


async def test_local_event_sources_reach_the_core_handler(broker: Mosquitto) -> None:
    sink = Sink()
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-local")
    async with running(sub, sink):
        await sub.publish([ob("trap-sender", 1)])
        await until(lambda: sink.count() == 1)
    assert sink.by_device == {"trap-sender": [1]}


async def test_tls_with_the_broker_ca(broker: Mosquitto) -> None:
    sink = Sink()
    tls = cfg(broker.tls_port, tls={"ca_file": str(broker.ca)})
    assert tls.tls is not None and tls.tls.verify_hostname
    sub = MqttSubscriber(broker=cfg(broker.port), client_id="core-tls")
    pub = MqttPublisher(broker=tls, poller_id="pop1", buffer_batches=200, max_inflight=4)
    async with running(sub, sink), running(pub, lambda b: None):
        await publish_rounds(pub, ["r1"], 0, 10)
        await until(lambda: sink.count() == 10)
    assert sink.by_device == {"r1": list(range(10))}


async def test_tls_refuses_a_broker_it_cannot_verify(broker: Mosquitto) -> None:
    pub = MqttPublisher(broker=cfg(broker.tls_port, tls={}), poller_id="pop1",
                        buffer_batches=200, max_inflight=4, flush_timeout=0)
    async with running(pub, lambda b: None):
        await pub.publish([ob("r1", 1)])
        await until(lambda: pub.stats["connect_failures"] >= 1)
        assert not pub.connected and pub.buffered() == 1
