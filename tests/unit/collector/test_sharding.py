"""Rendezvous sharding, the cluster config and what each role does."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collector.bus import InProcessBus
from collector.cluster import ClusterConfig, owner, shard
from collector.mqtt_bus import MqttPublisher, MqttSubscriber
from collector.roles import correlates, plan, polled_devices, polls

DEVICES = [f"sw{i:05d}.pop{i % 37}" for i in range(6000)]
member_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1,
                     max_size=12).filter(lambda s: s[0] != "-")
member_sets = st.lists(member_ids, min_size=1, max_size=10, unique=True)


def test_owner_is_stable_and_independent_of_member_order() -> None:
    # BLAKE2b of "member\0device": the same on every host, Python version and restart.
    # A change to these values re-shards every deployment: it must be deliberate.
    devices = ["core1", "edge7", "sw00042.pop5", "bras-3", "olt.fra.12", "pe9"]
    golden = ["pop2", "pop1", "pop2", "pop3", "pop3", "pop3"]
    assert [owner(d, ["pop1", "pop2", "pop3"]) for d in devices] == golden
    assert [owner(d, ["pop3", "pop1", "pop2"]) for d in devices] == golden


def test_owner_needs_members() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        owner("core1", [])


@settings(max_examples=40, derandomize=True, deadline=None)
@given(members=member_sets)
def test_shares_are_balanced(members: list[str]) -> None:
    counts = Counter(owner(d, members) for d in DEVICES)
    fair = len(DEVICES) / len(members)
    # 6000 devices, at most 10 members: a share is >= 600, its binomial sd <= 25
    for m in members:
        assert abs(counts[m] - fair) <= max(0.15 * fair, 1), (m, counts[m], fair)


@settings(max_examples=20, derandomize=True, deadline=None)
@given(members=member_sets, new=member_ids)
def test_adding_a_member_moves_only_its_share_and_only_to_it(members: list[str],
                                                              new: str) -> None:
    if new in members:
        return
    before = {d: owner(d, members) for d in DEVICES}
    after = {d: owner(d, [*members, new]) for d in DEVICES}
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert all(after[d] == new for d in moved)
    expected = len(DEVICES) / (len(members) + 1)
    assert abs(len(moved) - expected) <= 0.15 * expected, (len(moved), expected)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(members=member_sets.filter(lambda m: len(m) >= 2), data=st.data())
def test_removing_a_member_moves_only_its_devices(members: list[str],
                                                   data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(members))
    rest = [m for m in members if m != gone]
    for d in DEVICES[:1500]:
        before, after = owner(d, members), owner(d, rest)
        assert after == before or before == gone


@given(members=member_sets)
def test_shard_partitions_the_devices(members: list[str]) -> None:
    parts = shard(DEVICES[:300], members)
    assert set(parts) == set(members)
    assert sorted(d for ds in parts.values() for d in ds) == sorted(DEVICES[:300])


# --- config and roles ----------------------------------------------------------------------


def cluster(**kw: object) -> ClusterConfig:
    return ClusterConfig.model_validate(kw)


def test_default_is_the_embedded_single_process() -> None:
    c = ClusterConfig()
    assert c.role == "all" and c.broker is None
    p = plan(c)
    assert isinstance(p.bus, InProcessBus) and p.correlates and p.polls("anything")


@pytest.mark.parametrize(("kw", "message"), [
    ({"role": "poller"}, "role poller needs broker"),
    ({"role": "core"}, "role core needs broker"),
    ({"role": "poller", "broker": {"host": "b"}}, "needs poller_id"),
    ({"role": "poller", "broker": {"host": "b"}, "poller_id": "p3", "members": ["p1"]},
     "'p3' is not in members"),
    ({"members": ["p1", "p1"]}, "listed more than once: p1"),
    ({"members": ["p/1"]}, "member id 'p/1'"),
    ({"poller_id": "a b"}, "use letters"),
    ({"role": "core", "broker": {"host": "b", "password": "x"}}, "username is not"),
    ({"role": "core", "broker": {"host": "b", "topic_prefix": "a/#"}}, "topic prefix"),
    ({"role": "core", "broker": {"host": "b", "tls": {"cert_file": __file__}}},
     "go together"),
    ({"role": "core", "broker": {"host": "b", "tls": {"ca_file": "/nonexistent/ca.pem"}}},
     "file not found"),
    ({"role": "core", "broker": {"host": "b", "hostname": "typo"}}, "Extra inputs"),
])
def test_bad_cluster_config_says_what_is_wrong(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cluster(**kw)


def test_ports_and_client_ids_have_sensible_defaults() -> None:
    core = cluster(role="core", broker={"host": "b"})
    assert core.broker is not None and core.broker.effective_port == 1883
    assert core.client_id() == "netreflex-core"
    tls = cluster(role="core", broker={"host": "b", "tls": {}})
    assert tls.broker is not None and tls.broker.effective_port == 8883
    p = cluster(role="poller", broker={"host": "b", "client_id": "x1"}, poller_id="p1",
                members=["p1"])
    assert p.client_id() == "x1"
    assert cluster(role="poller", broker={"host": "b"}, poller_id="p1",
                   members=["p1"]).client_id() == "netreflex-poller-p1"


def test_password_is_a_secret() -> None:
    c = cluster(role="core", broker={"host": "b", "username": "core", "password": "hunter22"})
    assert "hunter22" not in repr(c)
    assert c.broker is not None and c.broker.password is not None
    assert c.broker.password.get_secret_value() == "hunter22"


def test_each_poller_polls_its_share_and_together_they_poll_everything() -> None:
    members = ["pop1", "pop2", "pop3"]
    polled = {}
    for m in members:
        c = cluster(role="poller", broker={"host": "b"}, poller_id=m, members=members)
        polled[m] = polled_devices(c, DEVICES[:600])
        assert not correlates(c)
        p = plan(c)
        assert isinstance(p.bus, MqttPublisher) and not p.correlates
        assert p.bus.client_id == f"netreflex-poller-{m}"
    assert sorted(d for ds in polled.values() for d in ds) == sorted(DEVICES[:600])
    assert all(len(ds) > 100 for ds in polled.values())


def test_the_core_polls_nothing_and_subscribes() -> None:
    c = cluster(role="core", broker={"host": "b"})
    assert not polls(c, "core1") and correlates(c)
    p = plan(c)
    assert isinstance(p.bus, MqttSubscriber)
    assert p.bus.filters == ["netreflex/v1/obs/#"]
