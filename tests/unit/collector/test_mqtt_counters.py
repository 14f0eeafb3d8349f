"""SNMP interface counter tables on the MQTT bus, without a broker: the columnar codec,
its validation, how the poller queues tables next to observations, how the core hands
them over, and the metrics that count them."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from collector.bus import CounterTable
from collector.cluster import BrokerConfig
from collector.mqtt_bus import (
    _COLUMN_CHECKS,
    COUNTER_COLUMNS,
    CountersError,
    MqttPublisher,
    MqttSubscriber,
    PayloadError,
    _column_ok,
    decode_batch,
    encode_batch,
)
from collector.roles import deliver_counters, publish_counters, register_metrics
from probes.types import InterfaceCounters, Observation

BROKER = BrokerConfig(host="127.0.0.1", port=1883)


def table(device: str = "r1", ts: float = 1718000000.5, n: int = 3) -> CounterTable:
    """Three ports (or the first ``n``), with a 64-bit counter at its top and gaps."""
    return CounterTable(device, ts, InterfaceCounters(
        if_index=[1, 2, 3][:n], name=["ge-0/0/1", "ge-0/0/2", "ge-0/0/3"][:n],
        oper_status=[1, 2, 7][:n], in_octets=[2**64 - 1, None, 0][:n],
        out_octets=[10, 20, None][:n], in_errors=[0, None, 3][:n],
        out_errors=[None, 0, 1][:n], speed_mbps=[1000, None, 100_000][:n]))


def obs(device: str = "r1", value: int = 1) -> Observation:
    return Observation(device, "snmp", "if_oper_status", "ge-0/0/1", value, 1718000000.0)


def doc_with(**columns: Any) -> bytes:
    doc = json.loads(encode_batch([], poller="p", seq=1, counters=table()))
    doc["counters"].update(columns)
    return json.dumps(doc).encode()


# --- codec ---------------------------------------------------------------------------------


def test_the_v1_columns_are_interface_counters_fields() -> None:
    # A new InterfaceCounters field must be decided on in mqtt_bus (optional or v: 2).
    assert tuple(f.name for f in fields(InterfaceCounters)) == COUNTER_COLUMNS


def test_round_trip_keeps_every_column_none_and_64_bit_counters() -> None:
    t = table()
    env = decode_batch(encode_batch([obs()], poller="pop1", seq=4, epoch=9, counters=t))
    assert env.counters == t
    assert env.observations == (obs(),)
    assert (env.poller, env.seq, env.epoch) == ("pop1", 4, 9)
    assert env.counters is not None and env.counters.counters.in_octets[0] == 2**64 - 1


def test_the_table_is_columns_not_one_object_per_interface() -> None:
    doc = json.loads(encode_batch([], poller="p", seq=1, epoch=5, counters=table(n=2)))
    assert doc == {"v": 1, "poller": "p", "epoch": 5, "seq": 1, "observations": [],
                   "counters": {"device": "r1", "ts": 1718000000.5, "if_index": [1, 2],
                                "name": ["ge-0/0/1", "ge-0/0/2"], "oper_status": [1, 2],
                                "in_octets": [2**64 - 1, None], "out_octets": [10, 20],
                                "in_errors": [0, None], "out_errors": [None, 0],
                                "speed_mbps": [1000, None]}}


def test_a_message_without_counters_has_none_and_an_empty_table_round_trips() -> None:
    assert decode_batch(encode_batch([obs()], poller="p", seq=1)).counters is None
    empty = table(n=0)
    assert decode_batch(encode_batch([], poller="p", seq=1, counters=empty)).counters == empty


def test_unknown_keys_inside_the_table_are_ignored_within_v1() -> None:
    env = decode_batch(doc_with(in_discards=[1, 2, 3]))
    assert env.counters == table()


def test_ragged_columns_are_refused_on_the_poller_before_they_leave() -> None:
    t = table()
    t.counters.in_errors.pop()
    with pytest.raises(ValueError, match="in_errors has 2 values for 3 interfaces"):
        encode_batch([], poller="p", seq=1, counters=t)


counts = st.one_of(st.none(), st.integers(0, 2**64 - 1))


@st.composite
def tables(draw: st.DrawFn) -> CounterTable:
    n = draw(st.integers(0, 12))

    def col(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))

    return CounterTable(draw(st.text(max_size=10)),
                        draw(st.floats(0, 4e9, allow_nan=False)),
                        InterfaceCounters(col(st.integers(0, 2**31)), col(st.text(max_size=8)),
                                          col(st.integers(1, 7)), col(counts), col(counts),
                                          col(counts), col(counts), col(counts)))


@settings(max_examples=100)
@given(t=tables())
def test_any_table_round_trips(t: CounterTable) -> None:
    assert decode_batch(encode_batch([], poller="p", seq=1, counters=t)).counters == t


@pytest.mark.parametrize(("counters", "reason"), [
    ([1, 2], "counters: expected an object"),
    ({"ts": 1.0}, "counters.device"),
    ({"device": "r1", "ts": "x"}, "counters.ts"),
    ({"device": "r1", "ts": True}, "counters.ts"),
    ({"device": "r1", "ts": 1.0}, "counters.if_index: expected a list"),
])
def test_a_table_that_is_not_an_object_with_device_and_ts_is_malformed(
        counters: object, reason: str) -> None:
    doc = json.loads(encode_batch([], poller="p", seq=1))
    doc["counters"] = counters
    with pytest.raises(CountersError, match=reason):
        decode_batch(json.dumps(doc).encode())


@pytest.mark.parametrize(("columns", "reason"), [
    ({"name": None}, r"counters\.name: expected a list"),
    ({"oper_status": [1, 2]}, r"counters\.oper_status: 2 values for 3 interfaces"),
    ({"if_index": [1, 2, 3, 4]}, r"counters\.name: 3 values for 4 interfaces"),
    ({"if_index": [1, True, 3]}, r"counters\.if_index\[1\]: expected an integer"),
    ({"name": ["a", "b", 3]}, r"counters\.name\[2\]: expected a string"),
    ({"oper_status": [1, None, 1]}, r"counters\.oper_status\[1\]: expected an integer"),
    ({"in_octets": [1, -1, 2]}, r"counters\.in_octets\[1\]: expected a non-negative"),
    ({"out_errors": [1.5, 0, 0]}, r"counters\.out_errors\[0\]"),
    ({"speed_mbps": ["1000", None, None]}, r"counters\.speed_mbps\[0\]"),
])
def test_malformed_columns_say_which_and_where(columns: dict[str, Any], reason: str) -> None:
    with pytest.raises(CountersError, match=reason):
        decode_batch(doc_with(**columns))


json_scalars = st.none() | st.booleans() | st.integers(-5, 2**65) | st.floats() | st.text(
    max_size=3)


@settings(max_examples=300)
@given(col=st.sampled_from(COUNTER_COLUMNS), values=st.lists(json_scalars, max_size=6))
def test_the_fast_column_check_agrees_with_the_one_that_names_the_culprit(
        col: str, values: list[Any]) -> None:
    ok, _ = _COLUMN_CHECKS[col]
    assert _column_ok(col, values) == all(map(ok, values))


def test_a_missing_column_is_malformed_not_defaulted() -> None:
    doc = json.loads(doc_with())
    del doc["counters"]["out_errors"]
    with pytest.raises(PayloadError, match="out_errors: expected a list"):
        decode_batch(json.dumps(doc).encode())


# --- the poller's queue --------------------------------------------------------------------


async def test_a_table_rides_with_the_observations_of_its_device_still_waiting() -> None:
    pub = MqttPublisher(broker=BROKER, poller_id="pop1", buffer_batches=100, max_inflight=2)
    await pub.publish([obs("r1"), obs("r2")])
    await publish_counters(pub, table("r2"))  # r2's batch is the last one queued: joins it
    await publish_counters(pub, table("r1"))  # r1's is not (r2's follows): its own message
    await publish_counters(pub, table("r1"))  # the previous is a table alone: again its own
    items = list(pub._pending)
    assert [(i.seq, i.topic, len(i.batch), i.counters is not None) for i in items] == [
        (1, "netreflex/v1/obs/pop1/r1", 1, False),
        (2, "netreflex/v1/obs/pop1/r2", 1, True),
        (3, "netreflex/v1/obs/pop1/r1", 0, True),
        (4, "netreflex/v1/obs/pop1/r1", 0, True)]
    assert pub.stats["queued"] == 4 and pub.tables["queued"] == 3


async def test_tables_obey_the_buffer_limit_and_count_what_is_dropped() -> None:
    pub = MqttPublisher(broker=BROKER, poller_id="p", buffer_batches=10, max_inflight=2)
    for i in range(15):
        await pub.publish([obs("r1", i)])
        await pub.publish_counters(table("r1", ts=float(i)))  # joins each batch
        await pub.publish_counters(table("r9", ts=float(i)))  # alone
    assert pub.buffered() == 10
    assert pub.stats["dropped"] == 20 and pub.stats["dropped_observations"] == 10
    assert pub.tables == {"queued": 30, "delivered": 0, "dropped": 20, "unencodable": 0}
    assert [i.counters.ts for i in pub._pending if i.counters] == [
        float(i) for i in range(10, 15) for _ in (1, 2)]  # the newest are kept


async def test_the_in_process_bus_does_not_carry_tables() -> None:
    from collector.bus import InProcessBus

    bus = InProcessBus()
    assert await publish_counters(bus, table()) is False
    assert bus.depth() == 0


# --- the core ------------------------------------------------------------------------------


def test_the_core_hands_tables_over_after_the_batch_and_dedups_them() -> None:
    sub = MqttSubscriber(broker=BROKER)
    calls: list[tuple[str, object]] = []
    deliver_counters(sub, lambda t: calls.append(("table", t)))
    both = encode_batch([obs()], poller="p", seq=1, counters=table())
    for payload in (both, both, encode_batch([], poller="p", seq=2, counters=table("r2"))):
        sub.handle("t", payload, lambda b: calls.append(("batch", list(b))))
    assert calls == [("batch", [obs()]), ("table", table()), ("table", table("r2"))]
    assert sub.stats["handled"] == 1 and sub.stats["duplicates"] == 1
    assert sub.tables == {"handled": 2, "malformed": 0, "ignored": 0, "handler_errors": 0}


def test_bad_tables_and_failing_handlers_are_counted_never_raised() -> None:
    sub = MqttSubscriber(broker=BROKER)
    got: list[object] = []
    sub.handle("t", doc_with(in_octets="lots"), got.append)  # whole message skipped
    sub.handle("t", encode_batch([], poller="p", seq=2, counters=table()), got.append)

    def boom(_: CounterTable) -> None:
        raise RuntimeError("detector bug")

    sub.on_counters = boom
    sub.handle("t", encode_batch([obs()], poller="p", seq=3, counters=table()), got.append)
    assert got == [(obs(),)]
    assert sub.stats["malformed"] == 1
    assert sub.tables == {"handled": 1, "malformed": 1, "ignored": 1, "handler_errors": 1}


def test_table_outcomes_are_exported_next_to_the_batch_metrics() -> None:
    registry = CollectorRegistry()
    sub = MqttSubscriber(broker=BROKER)
    register_metrics(sub, registry)
    sub.handle("t", doc_with(name=[1, 2, 3]), lambda b: None)
    text = generate_latest(registry).decode()
    assert 'netreflex_bus_interface_tables_total{outcome="malformed"} 1.0' in text
    assert 'netreflex_bus_interface_tables_total{outcome="handled"} 0.0' in text
    assert 'netreflex_bus_batches_total{outcome="malformed"} 1.0' in text
