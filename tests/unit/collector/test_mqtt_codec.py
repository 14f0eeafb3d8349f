"""The MQTT bus without a broker: payload codec, topics, dedup, backoff, the poller's
buffer and the core's handling of bad messages."""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.cluster import BrokerConfig
from collector.mqtt_bus import (
    Dedup,
    MqttPublisher,
    MqttSubscriber,
    PayloadError,
    UnsupportedVersion,
    backoff,
    decode_batch,
    encode_batch,
    topic_filters,
    topic_for,
)
from probes.types import Observation

BROKER = BrokerConfig(host="127.0.0.1", port=1883)


def obs(device: str = "r1", value: float | int | str = 1, **labels: str) -> Observation:
    return Observation(device, "snmp", "if_oper_status", "ge-0/0/1", value, 1718000000.25,
                       labels)


# --- codec ---------------------------------------------------------------------------------


def test_round_trip_keeps_every_field_and_type() -> None:
    batch = [obs(value=2, admin="1"), obs(value=0.5), obs(value="down"),
             Observation("r1", "syslog", "reachable", "", 10**20, 0.0)]
    env = decode_batch(encode_batch(batch, poller="pop1", seq=7, epoch=99))
    assert (env.poller, env.seq, env.epoch) == ("pop1", 7, 99)
    assert list(env.observations) == batch
    assert [type(o.value) for o in env.observations] == [int, float, str, int]
    assert dict(env.observations[0].labels) == {"admin": "1"}


def test_payload_is_the_documented_compact_v1_layout() -> None:
    doc = json.loads(encode_batch([obs(), obs(admin="2")], poller="p", seq=1, epoch=5))
    assert doc == {"v": 1, "poller": "p", "epoch": 5, "seq": 1, "observations": [
        ["r1", "snmp", "if_oper_status", "ge-0/0/1", 1, 1718000000.25],
        ["r1", "snmp", "if_oper_status", "ge-0/0/1", 1, 1718000000.25, {"admin": "2"}],
    ]}


def test_non_finite_values_survive() -> None:
    env = decode_batch(encode_batch([obs(value=math.inf), obs(value=math.nan)], poller="p",
                                    seq=1))
    assert env.observations[0].value == math.inf
    assert math.isnan(float(env.observations[1].value))


def test_unknown_top_level_keys_are_ignored_within_v1() -> None:
    doc = json.loads(encode_batch([obs()], poller="p", seq=3))
    doc["later"] = {"x": 1}
    assert decode_batch(json.dumps(doc).encode()).observations == (obs(),)


text = st.text(max_size=20)
values = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=False), text)
observations = st.builds(
    Observation, device=text, source=text, name=text, instance=text, value=values,
    ts=st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=4e9),
    labels=st.dictionaries(text, text, max_size=3))


@settings(max_examples=150)
@given(batch=st.lists(observations, max_size=20), seq=st.integers(0, 2**63),
       epoch=st.integers(0, 2**63), poller=st.text(min_size=1, max_size=10))
def test_any_batch_round_trips(batch: list[Observation], seq: int, epoch: int,
                               poller: str) -> None:
    env = decode_batch(encode_batch(batch, poller=poller, seq=seq, epoch=epoch))
    assert list(env.observations) == batch
    assert (env.poller, env.seq, env.epoch) == (poller, seq, epoch)
    for got, want in zip(env.observations, batch, strict=True):
        assert type(got.value) is type(want.value)


@settings(max_examples=200)
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=7) | st.dictionaries(
        st.sampled_from(["v", "poller", "epoch", "seq", "observations", "x"]), kids),
    max_leaves=30)))
def test_garbage_raises_payload_error_and_nothing_else(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_batch(payload)


@pytest.mark.parametrize(("doc", "reason"), [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"v": 1, "poller": "", "epoch": 0, "seq": 1, "observations": []}', "poller"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": -1, "observations": []}', "seq"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": true, "observations": []}', "seq"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": 1, "observations": {}}', "observations"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": 1, "observations": [[1,2]]}', "[0]"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": 1, '
     b'"observations": [["d","s","n","i",null,1.0]]}', "value"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": 1, '
     b'"observations": [["d","s","n","i",1,"x"]]}', "ts"),
    (b'{"v": 1, "poller": "p", "epoch": 0, "seq": 1, '
     b'"observations": [["d","s","n","i",1,1.0,{"a":1}]]}', "labels"),
])
def test_malformed_payloads_say_what_is_wrong(doc: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[")):
        decode_batch(doc)


def test_another_version_is_its_own_error() -> None:
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_batch(b'{"v": 2, "poller": "p"}')


# --- topics --------------------------------------------------------------------------------


def test_topic_layout_and_device_names_stay_one_level() -> None:
    assert topic_for("netreflex", "pop1", "core1.fra") == "netreflex/v1/obs/pop1/core1.fra"
    assert topic_for("isp/nrx", "p", "a/b+c#d%") == "isp/nrx/v1/obs/p/a%2Fb%2Bc%23d%25"
    assert topic_for("netreflex", "p", "") == "netreflex/v1/obs/p/%00"
    assert topic_filters("netreflex") == ["netreflex/v1/obs/#"]
    assert topic_filters("netreflex", ["a", "b"]) == ["netreflex/v1/obs/a/#",
                                                     "netreflex/v1/obs/b/#"]


# --- dedup and backoff ---------------------------------------------------------------------


def test_dedup_drops_replays_counts_gaps_and_tells_restarts_apart() -> None:
    d = Dedup()
    assert [d.check("p1", 1, s) for s in (1, 2, 2, 1, 3, 6, 5, 7)] == [0, 0, None, None, 0, 2,
                                                                      None, 0]
    assert d.check("p1", 2, 1) == 0  # the poller restarted: a new epoch starts afresh
    assert d.check("p1", 1, 7) is None  # a late replay from before the restart
    assert d.check("p2", 1, 1) == 0  # pollers are independent


def test_dedup_state_is_bounded() -> None:
    d = Dedup(streams=2)
    d.check("a", 1, 5)
    d.check("b", 1, 5)
    d.check("c", 1, 5)  # evicts a
    assert d.check("a", 1, 5) == 0
    assert d.check("c", 1, 5) is None


def test_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff(a, low=0.5, high=30, rng=rng) for a in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, so pollers do not retry in lockstep
    assert backoff(10_000, low=0.5, high=30, rng=rng) <= 30


# --- the poller's buffer, without a broker ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_publish_splits_by_device_keeps_order_and_buffers_without_a_broker() -> None:
    clock = Clock()
    pub = MqttPublisher(broker=BROKER, poller_id="pop1", buffer_batches=100, max_inflight=2,
                        clock=clock, epoch=5)
    await pub.publish([obs("r1", 1), obs("r2", 1), obs("r1", 2)])
    clock.now += 3
    await pub.publish([obs("r2", 2)])
    assert pub.buffered() == pub.depth() == 3
    assert pub.oldest_age() == 3.0
    items = list(pub._pending)
    assert [(i.seq, i.topic) for i in items] == [(1, "netreflex/v1/obs/pop1/r1"),
                                                 (2, "netreflex/v1/obs/pop1/r2"),
                                                 (3, "netreflex/v1/obs/pop1/r2")]
    assert [o.value for o in items[0].batch] == [1, 2]
    assert pub.stats["queued"] == 3 and pub.stats["dropped"] == 0


async def test_a_full_buffer_drops_the_oldest_and_counts_it() -> None:
    clock = Clock()
    pub = MqttPublisher(broker=BROKER, poller_id="p", buffer_batches=100, max_inflight=2,
                        clock=clock)
    for i in range(130):
        clock.now += 1
        await pub.publish([obs("r1", i), obs("r1", i)])
    assert pub.buffered() == 100
    assert pub.stats["dropped"] == 30 and pub.stats["dropped_observations"] == 60
    assert pub._pending[0].seq == 31  # the newest are kept
    assert pub.oldest_age() == 99.0


def test_the_publisher_refuses_a_window_as_large_as_its_buffer() -> None:
    with pytest.raises(ValueError, match="max_inflight"):
        MqttPublisher(broker=BROKER, poller_id="p", buffer_batches=10, max_inflight=10)


# --- the core's handling of what arrives ---------------------------------------------------


def test_subscriber_counts_and_skips_bad_and_duplicate_messages() -> None:
    sub = MqttSubscriber(broker=BROKER)
    got: list[Sequence[Observation]] = []
    handle = got.append
    good = encode_batch([obs()], poller="p", seq=1, epoch=1)
    for payload in (good, b"{not json", good, b'{"v": 9}', "text",
                    encode_batch([obs(value=2)], poller="p", seq=4, epoch=1)):
        sub.handle("t", payload, handle)
    assert [[o.value for o in b] for b in got] == [[1], [2]]
    assert {k: sub.stats[k] for k in ("received", "handled", "duplicates", "malformed",
                                       "unsupported_version", "missing")} == {
        "received": 6, "handled": 2, "duplicates": 1, "malformed": 2,
        "unsupported_version": 1, "missing": 2}


def test_a_failing_handler_is_counted_not_raised() -> None:
    sub = MqttSubscriber(broker=BROKER)

    def boom(_: object) -> None:
        raise RuntimeError("correlator bug")

    sub.handle("t", encode_batch([obs()], poller="p", seq=1), boom)
    assert sub.stats["handler_errors"] == 1
