"""probes.gnmi parsing against recorded notification shapes (tests/fixtures/gnmi), and the
probe's pure parts: config rules, backoff, the requests it builds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pygnmi.spec.v080 import gnmi_pb2 as pb  # type: ignore[import-untyped]

from probes.gnmi import (
    ALARM,
    CPU_UTILIZATION,
    IF_IN_OCTETS,
    OPTICAL_RX_DBM,
    GnmiBackoff,
    GnmiProbe,
    GnmiProbeConfig,
    ParseState,
    parse_get_response,
    parse_notification,
    parse_pygnmi,
    parse_response,
)
from probes.gnmi.parse import typed_value
from probes.gnmi.paths import split_path
from probes.gnmi.probe import backoff_delay
from probes.gnmi.session import get_request, subscribe_request
from probes.types import IF_ADMIN_STATUS, IF_OPER_STATUS, Observation

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gnmi"
NOW = 1_700_000_500.0


def run_fixture(data: dict[str, Any]) -> tuple[list[Observation], int, dict[str, int]]:
    state = ParseState()
    out: list[Observation] = []
    syncs = 0
    now = data.get("now", 1.0)
    for item in data["input"]:
        if data["format"] == "pygnmi":
            syncs += parse_pygnmi(item, state, device=data["device"], now=now, out=out)
        else:
            response = json_format.ParseDict(item, pb.SubscribeResponse())
            syncs += parse_response(response, state, device=data["device"], now=now, out=out)
    return out, syncs, state.stats


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    data = json.loads(path.read_text())
    out, syncs, stats = run_fixture(data)
    expect = data["expect"]
    assert len(out) == len(expect["observations"])
    for o, (name, instance, value, ts, labels) in zip(out, expect["observations"], strict=True):
        assert (o.name, o.instance, o.value, dict(o.labels)) == (name, instance, value, labels)
        assert type(o.value) is type(value)  # a counter stays an int, dBm a float
        assert math.isclose(o.ts, ts, rel_tol=0, abs_tol=1e-6)
    assert {o.device for o in out} <= {data["device"]}
    assert {o.source for o in out} <= {"gnmi"}
    assert syncs == expect["syncs"]
    assert stats == expect["stats"]


def test_every_fixture_says_where_it_comes_from() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 8
    readme = (FIXTURES / "README.md").read_text()
    for path in files:
        data = json.loads(path.read_text())
        assert data["shape"] and data["description"]
        assert path.name in readme


# --- state kept between notifications --------------------------------------------------------


def leaf(path: str, value: Any, ts: int = 1_700_000_000_000_000_000) -> Any:
    _, names, keys = split_path(path)
    return pb.Notification(timestamp=ts, update=[pb.Update(
        path=pb.Path(elem=[pb.PathElem(name=n, key=dict(k or {}))
                           for n, k in zip(names, keys, strict=True)]),
        val=pb.TypedValue(json_ietf_val=json.dumps(value).encode()),
    )])


def parse(state: ParseState, *notifications: Any) -> list[Observation]:
    out: list[Observation] = []
    for n in notifications:
        parse_notification(n, state, device="r1", now=NOW, out=out)
    return out


ETH1 = "/interfaces/interface[name=et-0/0/1]/state"


def test_admin_status_is_remembered_for_later_oper_status() -> None:
    state = ParseState()
    first = parse(state, leaf(f"{ETH1}/admin-status", "DOWN"))
    assert [(o.name, o.value) for o in first] == [(IF_ADMIN_STATUS, 2)]
    later = parse(state, leaf(f"{ETH1}/oper-status", "DOWN"))
    assert [(o.name, o.instance, o.value, dict(o.labels)) for o in later] == [
        (IF_OPER_STATUS, "et-0/0/1", 2, {"admin": "down"})]


def test_admin_change_alone_restates_oper_with_the_new_admin() -> None:
    state = ParseState()
    parse(state, leaf(f"{ETH1}/admin-status", "DOWN"), leaf(f"{ETH1}/oper-status", "DOWN"))
    out = parse(state, leaf(f"{ETH1}/admin-status", "UP"))
    oper = [o for o in out if o.name == IF_OPER_STATUS]
    assert [(o.value, o.labels["admin"]) for o in oper] == [(2, "up")]


def test_states_are_published_on_change_and_restated_on_a_new_stream() -> None:
    state = ParseState()
    n = leaf(f"{ETH1}/oper-status", "UP")
    assert len(parse(state, n)) == 1
    assert parse(state, n) == []  # a heartbeat: nothing new
    state.new_stream()
    assert len(parse(state, n)) == 1


@pytest.mark.parametrize(("path", "value"), [
    (f"{ETH1}/counters/in-octets", -1),
    (f"{ETH1}/counters/in-octets", 1.5),
    (f"{ETH1}/counters/in-octets", True),
    ("/system/cpus/cpu[index=0]/state/total/instant", "NaN"),
    ("/system/cpus/cpu[index=0]/state/total/instant", "high"),
    (f"{ETH1}/oper-status", 1),
])
def test_impossible_values_are_malformed(path: str, value: Any) -> None:
    state = ParseState()
    assert parse(state, leaf(path, value)) == []
    assert state.stats["malformed"] == 1


def test_counters_are_published_every_sample() -> None:
    state = ParseState()
    n = leaf(f"{ETH1}/counters/in-octets", "12345678901234")
    out = parse(state, n, n)
    assert [(o.name, o.value) for o in out] == [(IF_IN_OCTETS, 12345678901234)] * 2


def test_a_deleted_interface_is_forgotten() -> None:
    state = ParseState()
    parse(state, leaf(f"{ETH1}/admin-status", "DOWN"), leaf(f"{ETH1}/oper-status", "DOWN"))
    gone = pb.Notification(timestamp=1, delete=[pb.Path(elem=[
        pb.PathElem(name="interfaces"), pb.PathElem(name="interface", key={"name": "et-0/0/1"})])])
    assert parse(state, gone) == []
    assert "et-0/0/1" not in state.admin and "et-0/0/1" not in state.oper
    back = parse(state, leaf(f"{ETH1}/oper-status", "UP"))
    assert [dict(o.labels) for o in back] == [{}]  # admin unknown again


def test_get_response_and_stream_share_the_state() -> None:
    state = ParseState()
    out: list[Observation] = []
    get = pb.GetResponse(notification=[leaf(f"{ETH1}/oper-status", "UP")])
    parse_get_response(get, state, device="r1", now=NOW, out=out)
    response = pb.SubscribeResponse(update=leaf(f"{ETH1}/oper-status", "UP"))
    assert parse_response(response, state, device="r1", now=NOW, out=out) is False
    assert len(out) == 1
    assert parse_response(pb.SubscribeResponse(sync_response=True), state, device="r1",
                          now=NOW, out=out) is True


def test_alarm_without_severity_waits_for_it() -> None:
    state = ParseState()
    base = "/system/alarms/alarm[id=LOS-1]/state"
    assert parse(state, leaf(f"{base}/text", "Loss of signal")) == []
    out = parse(state, leaf(f"{base}/severity", "openconfig-alarm-types:CRITICAL"))
    assert [(o.name, o.instance, o.value, dict(o.labels)) for o in out] == [
        (ALARM, "LOS-1", "CRITICAL", {"text": "Loss of signal"})]


def test_alarms_not_restated_by_a_new_stream_were_cleared_meanwhile() -> None:
    state = ParseState()
    state.new_stream()
    raise_ = [leaf(f"/system/alarms/alarm[id={a}]/state/severity", "MAJOR") for a in "AB"]
    out = parse(state, *raise_)
    sync = pb.SubscribeResponse(sync_response=True)
    assert parse_response(sync, state, device="r1", now=NOW, out=out) is True
    assert [(o.instance, o.value) for o in out] == [("A", "MAJOR"), ("B", "MAJOR")]
    state.new_stream()  # a redial: only B is still raised
    out = parse(state, raise_[1])
    parse_response(sync, state, device="r1", now=NOW, out=out)
    assert [(o.instance, o.value, o.ts) for o in out] == [("B", "MAJOR", 1_700_000_000.0),
                                                         ("A", "CLEARED", NOW)]
    assert list(state.alarms) == ["B"]
    out = []
    parse_response(sync, state, device="r1", now=NOW, out=out)  # only the first sync
    assert out == []


def test_a_json_tree_at_the_root_is_walked() -> None:
    tree = {"openconfig-interfaces:interfaces": {"interface": [
        {"name": "Ethernet1", "state": {"oper-status": "DOWN", "admin-status": "UP"}}]}}
    state = ParseState()
    out = parse(state, leaf("/", tree))
    assert [(o.name, o.value, dict(o.labels)) for o in out] == [
        (IF_ADMIN_STATUS, 1, {}), (IF_OPER_STATUS, 2, {"admin": "up"})]
    parse(state, leaf("/", "UP"))
    assert state.stats["malformed"] == 1


def test_json_subtree_lists_are_walked_by_their_keys() -> None:
    tree = {"openconfig-platform:component": [
        {"name": "CPU0", "cpu": {"utilization": {"state": {"instant": 37}}}},
        {"name": "xcvr-1", "transceiver": {"physical-channels": {"channel": [
            {"index": 0, "state": {"input-power": {"instant": "-2.50"}}}]}}},
        {"cpu": {"utilization": {"state": {"instant": 1}}}},  # no key: malformed
    ]}
    n = leaf("/components", tree)
    state = ParseState()
    out = parse(state, n)
    assert [(o.name, o.instance, o.value, dict(o.labels)) for o in out] == [
        (CPU_UTILIZATION, "CPU0", 37, {}),
        (OPTICAL_RX_DBM, "xcvr-1", -2.5, {"channel": "0"}),
    ]
    assert state.stats["malformed"] == 1


# --- values, timestamps, paths ---------------------------------------------------------------


@pytest.mark.parametrize(("val", "expected"), [
    (pb.TypedValue(json_ietf_val=b'"UP"'), "UP"),
    (pb.TypedValue(json_val=b'{"a": 1}'), {"a": 1}),
    (pb.TypedValue(uint_val=2**64 - 1), 2**64 - 1),
    (pb.TypedValue(int_val=-3), -3),
    (pb.TypedValue(double_val=-7.25), -7.25),
    (pb.TypedValue(decimal_val=pb.Decimal64(digits=-312, precision=2)), -3.12),
    (pb.TypedValue(ascii_val="x"), "x"),
    (pb.TypedValue(bool_val=True), True),
    (pb.TypedValue(leaflist_val=pb.ScalarArray(element=[pb.TypedValue(string_val="a"),
                                                        pb.TypedValue(uint_val=2)])),
     ["a", 2]),
])
def test_typed_values(val: Any, expected: Any) -> None:
    assert typed_value(val) == expected


@pytest.mark.parametrize("val", [
    pb.TypedValue(bytes_val=b"\x00"), pb.TypedValue(), pb.TypedValue(json_ietf_val=b"{not json"),
    pb.TypedValue(decimal_val=pb.Decimal64(digits=1, precision=2**32 - 1)),  # would hang
])
def test_unreadable_values_are_value_errors(val: Any) -> None:
    with pytest.raises(ValueError):
        typed_value(val)


@pytest.mark.parametrize("stamp", [1_700_000_000_250_000_000, 1_700_000_000_250_000,
                                   1_700_000_000_250, 1_700_000_000.25])
def test_timestamps_in_any_unit_become_seconds(stamp: float) -> None:
    n = leaf(f"{ETH1}/counters/in-octets", 1)
    if isinstance(stamp, int):
        n.timestamp = stamp
        assert parse(ParseState(), n)[0].ts == pytest.approx(1_700_000_000.25)
    else:  # seconds, only from pygnmi's dicts (the protobuf field is an int64)
        d = {"update": {"timestamp": stamp, "update": [
            {"path": "interfaces/interface[name=x]/state/counters/in-octets", "val": 1}]}}
        out: list[Observation] = []
        parse_pygnmi(d, ParseState(), device="r1", now=NOW, out=out)
        assert out[0].ts == pytest.approx(1_700_000_000.25)


def test_paths() -> None:
    assert split_path("openconfig:/interfaces/interface[name=Ethernet1/1]/state") == (
        "openconfig", ("interfaces", "interface", "state"), (None, {"name": "Ethernet1/1"}, None))
    assert split_path("/oc-if:interfaces/interface[name=a\\]b]")[1:] == (
        ("interfaces", "interface"), (None, {"name": "a]b"}))
    assert split_path("/a[k1=1][k2=2]/b")[2][0] == {"k1": "1", "k2": "2"}
    for bad, where in (("/a[name=x", "unclosed"), ("/a[name]/b", "without '='"),
                       ("/a]b", "unexpected ']'"), ("/a[k=v]x/b", "unexpected 'x'")):
        with pytest.raises(ValueError, match=where):
            split_path(bad)


# --- never raising -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=3),
    max_leaves=12,
)
KNOWN = [f"{ETH1}/oper-status", f"{ETH1}/admin-status", f"{ETH1}/counters/in-octets",
         "/system/alarms/alarm[id=A]/state/severity", "/system/cpus/cpu[index=0]/state/total",
         "/components/component[name=c]/transceiver/physical-channels/channel[index=1]/state",
         "/network-instances/network-instance[name=x]/protocols/protocol[identifier=BGP]"
         "[name=b]/bgp/neighbors/neighbor[neighbor-address=1.2.3.4]/state/session-state",
         "/interfaces", "/"]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(KNOWN), value=json_values)
def test_any_json_at_any_known_path_is_counted_not_raised(path: str, value: Any) -> None:
    state = ParseState()
    try:
        n = leaf(path, value)
    except ValueError:  # NaN / infinity: json.dumps writes them, json.loads reads them
        return
    out = parse(state, n)
    s = state.stats
    assert s["updates"] == 1
    assert s["malformed"] + s["unmatched"] <= 1
    assert all(isinstance(o.value, int | float | str) for o in out)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["notification", "update", "sync_response"]),
                            json_values, max_size=3))
def test_any_dict_is_counted_not_raised(data: dict[str, Any]) -> None:
    out: list[Observation] = []
    state = ParseState()
    parse_pygnmi(data, state, device="r1", now=NOW, out=out)
    s = state.stats
    assert s["malformed"] + s["unmatched"] <= s["updates"] + s["notifications"] + 1
    assert s["observations"] == len(out)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=200))
def test_any_decodable_bytes_are_counted_not_raised(blob: bytes) -> None:
    response = pb.SubscribeResponse()
    try:
        response.ParseFromString(blob)
    except Exception:  # noqa: BLE001 -- not a message at all: nothing to parse
        return
    out: list[Observation] = []
    state = ParseState()
    parse_response(response, state, device="r1", now=NOW, out=out)
    s = state.stats
    assert s["malformed"] + s["unmatched"] <= s["updates"] + 1
    assert s["observations"] == len(out)


# --- config, backoff, requests (the probe's pure parts) ----------------------------------------


def test_default_config_subscribes_openconfig_paths() -> None:
    cfg = GnmiProbeConfig(insecure=True)
    assert cfg.port == 9339
    modes = {p.path.rsplit("/", 1)[-1]: p.mode for p in cfg.paths}
    assert modes["oper-status"] == "on_change" and modes["in-octets"] == "sample"
    assert cfg.cadence() == 10.0 and cfg.silence_deadline >= 2 * 10.0


@pytest.mark.parametrize(("data", "message"), [
    ({"silence_deadline": 15}, "must be at least twice .* \\(10 s\\)"),
    ({"paths": [{"path": "/a", "mode": "on_change"}], "heartbeat_interval": None},
     "nothing periodic"),
    ({"password": "x"}, "password is set but username is not"),
    ({"paths": [{"path": "/a[name=x"}]}, "unclosed"),
    ({"paths": [{"path": "/a"}, {"path": "/a"}]}, "listed twice"),
    ({"backoff": {"initial": 5, "maximum": 1}}, "maximum must be >= initial"),
    ({"sample_interval": 1, "typo": 1}, "Extra inputs are not permitted"),
])
def test_config_rules(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GnmiProbeConfig.model_validate({"insecure": True, **data})


def test_password_is_not_in_the_config_repr() -> None:
    cfg = GnmiProbeConfig.model_validate({"insecure": True, "username": "u",
                                          "password": "hunter2"})
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_backoff_is_capped_and_jittered_downwards() -> None:
    b = GnmiBackoff(initial=1, maximum=30, multiplier=2, jitter=0.5)
    assert [backoff_delay(n, b, rand=lambda: 0.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, b, rand=lambda: 1.0) == 4.0
    assert backoff_delay(10_000, b, rand=lambda: 0.0) == 30  # no overflow


def test_requests_carry_modes_intervals_and_origin() -> None:
    cfg = GnmiProbeConfig.model_validate({
        "insecure": True, "sample_interval": 5, "heartbeat_interval": 20,
        "paths": [{"path": "openconfig:/interfaces/interface[name=Ethernet1/1]/state/oper-status",
                   "mode": "on_change"},
                  {"path": "/interfaces/interface/state/counters", "sample_interval": 2.5}],
    })
    probe = GnmiProbe(device="r1", address="2001:db8::1", config=cfg)
    assert repr(probe) == "GnmiProbe(device='r1', target='[2001:db8::1]:9339')"
    sl = subscribe_request(cfg, pb.JSON_IETF).subscribe
    assert sl.mode == pb.SubscriptionList.STREAM and sl.encoding == pb.JSON_IETF
    on_change, sample = sl.subscription
    assert on_change.path.origin == "openconfig"
    assert on_change.path.elem[1].key == {"name": "Ethernet1/1"}
    assert (on_change.mode, on_change.heartbeat_interval) == (pb.ON_CHANGE, 20 * 10**9)
    assert (sample.mode, sample.sample_interval) == (pb.SAMPLE, 2_500_000_000)
    get = get_request(cfg, pb.JSON)
    assert len(get.path) == 2 and get.encoding == pb.JSON
