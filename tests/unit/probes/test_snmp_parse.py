"""probes.snmp.parse against recorded replies of real devices, and broken ones."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.snmp import parse
from probes.snmp.parse import (
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_ERRORS,
    IF_NAME,
    IF_OPER_STATUS_COL,
    NAME_COLUMNS,
    STATUS_COLUMNS,
    SYS_UPTIME,
    DeviceState,
    ReplyError,
    Value,
)
from probes.types import DEVICE_RESTARTED, IF_OPER_STATUS, STATUS_NAMES, Observation
from tests.unit.probes.snmp_fakes import column, columns, load_snmprec

TS = 1_700_000_000.0


def poll(
    rows: Mapping[str, Value], prev: DeviceState | None = None, device: str = "sw1"
) -> tuple[DeviceState, list[Observation], str | None]:
    """One poll's worth of parsing, the way the poller chains it."""
    scalars = parse.parse_scalars(rows)
    status = parse.parse_status(
        columns(dict(rows), STATUS_COLUMNS), None if prev is None else prev.status.layout
    )
    why = parse.names_due(prev, scalars, status)
    names = None if why is None else parse.parse_names(columns(dict(rows), NAME_COLUMNS),
                                                        status.layout)
    state, observations, _ = parse.update(prev, scalars, status, names, device=device, ts=TS)
    return state, observations, why


@pytest.fixture
def cisco() -> dict[str, Value]:
    return load_snmprec("cisco-c3560.snmprec")


@pytest.fixture
def juniper() -> dict[str, Value]:
    return load_snmprec("juniper-mx960.snmprec")


def by_instance(observations: list[Observation]) -> dict[str, Observation]:
    return {o.instance: o for o in observations if o.name == IF_OPER_STATUS}


# --- recorded devices ---------------------------------------------------------------


def test_cisco_scalars(cisco: dict[str, Value]) -> None:
    scalars = parse.parse_scalars(cisco)
    assert scalars == parse.Scalars(uptime=492446481, last_change=16085, sys_name="DUMSYS-04")


def test_cisco_baseline_names_admin_and_counters(cisco: dict[str, Value]) -> None:
    state, observations, why = poll(cisco)
    assert why == "first poll"
    oper = by_instance(observations)
    assert len(oper) == 57
    assert oper["Vl1"].value == 2 and oper["Vl1"].labels["admin"] == "down"
    assert oper["Gi0/49"].value == 1
    assert dict(oper["Gi0/49"].labels) == {"admin": "up", "if_index": "10149", "alias": ""}
    assert oper["Gi0/1"].source == "snmp" and oper["Gi0/1"].device == "sw1"
    counters = parse.counters(state)
    assert counters.if_index[:5] == [1, 2, 3, 999, 10101]
    assert counters.name[-1] == "Nu0"
    null0 = counters.if_index.index(10501)
    gi50 = counters.if_index.index(10150)
    # Null0 has no ifHCInOctets row on this switch: None, not 0
    assert counters.in_octets[null0] is None and counters.out_octets[null0] is None
    assert counters.in_octets[gi50] == 18783802582465
    assert counters.speed_mbps[gi50] == 1000
    assert {len(getattr(counters, f)) for f in counters.__slots__} == {57}


def test_juniper_baseline_aliases_and_admin_down(juniper: dict[str, Value]) -> None:
    state, observations, _ = poll(juniper, device="mx1")
    oper = by_instance(observations)
    assert len(oper) == 34
    assert oper["ge-0/0/1"].labels["alias"] == "to-daxueshenghuodongzhongxin-ge-1/0/28"
    assert oper["ge-1/0/5"].labels["admin"] == "down" and oper["ge-1/0/5"].value == 2
    assert oper["fxp0"].value == 2 and oper["fxp0"].labels["admin"] == "up"
    counters = parse.counters(state)
    ge001 = counters.name.index("ge-0/0/1")
    assert counters.in_errors[ge001] == 10782
    assert counters.speed_mbps[counters.name.index("ae1")] == 20000


def test_unchanged_poll_reuses_layout_and_emits_nothing(cisco: dict[str, Value]) -> None:
    first, _, _ = poll(cisco)
    second, observations, why = poll(cisco, first)
    assert why is None
    assert observations == []
    assert second.status.layout is first.status.layout
    assert second.names is first.names


def test_one_port_down_is_one_observation(cisco: dict[str, Value]) -> None:
    first, _, _ = poll(cisco)
    cisco[f"{IF_OPER_STATUS_COL}.10150"] = 2
    _, observations, why = poll(cisco, first)
    assert why is None
    assert [(o.name, o.instance, o.value) for o in observations] == [
        (IF_OPER_STATUS, "Gi0/50", 2)
    ]
    assert observations[0].labels["if_index"] == "10150"


def test_admin_change_alone_is_reported(juniper: dict[str, Value]) -> None:
    first, _, _ = poll(juniper)
    juniper[f"{IF_ADMIN_STATUS}.558"] = 2  # ge-0/0/7, oper already down
    _, observations, _ = poll(juniper, first)
    assert [(o.instance, o.value, o.labels["admin"]) for o in observations] == [
        ("ge-0/0/7", 2, "down")
    ]


def test_restart_reports_and_rebaselines(cisco: dict[str, Value]) -> None:
    first, _, _ = poll(cisco)
    cisco[SYS_UPTIME] = 4200
    second, observations, why = poll(cisco, first)
    assert why == "device restarted"
    assert observations[0].name == DEVICE_RESTARTED and observations[0].value == 42.0
    assert len(by_instance(observations)) == 57
    assert second.names is not first.names


@pytest.mark.parametrize(
    ("before", "after", "restarted"),
    [
        (1000, 999, True),
        (1000, 1000, False),
        (2**32 - 100, 50, False),  # 497-day wrap of TimeTicks
        (2**32 - 10_000_000, 50, True),  # far from the wrap: a restart
    ],
)
def test_is_restart(before: int, after: int, restarted: bool) -> None:
    assert parse.is_restart(before, after) is restarted


def test_last_change_rereads_names_and_reports_renames(juniper: dict[str, Value]) -> None:
    first, _, _ = poll(juniper)
    juniper["1.3.6.1.2.1.31.5.0"] = 0  # unrelated row: no effect
    juniper[parse.IF_TABLE_LAST_CHANGE] = 2227666
    juniper[f"{IF_ALIAS}.551"] = b"new customer"
    _, observations, why = poll(juniper, first)
    assert why == "ifTableLastChange changed"
    assert [(o.instance, o.labels["alias"]) for o in observations] == [
        ("ge-0/0/2", "new customer")
    ]


def test_absent_last_change_is_unknown_not_a_change(cisco: dict[str, Value]) -> None:
    del cisco[parse.IF_TABLE_LAST_CHANGE]
    first, _, _ = poll(cisco)
    assert first.scalars.last_change is None
    _, _, why = poll(cisco, first)
    assert why is None


def test_new_interface_rereads_names_and_reports_only_it(cisco: dict[str, Value]) -> None:
    first, _, _ = poll(cisco)
    added: dict[str, Value] = {
        IF_OPER_STATUS_COL: 1, IF_ADMIN_STATUS: 1, IF_NAME: b"Po1", IF_DESCR: b"Port-channel1"
    }
    for col, value in added.items():
        cisco[f"{col}.5001"] = value
    cisco = dict(sorted(cisco.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))
    second, observations, why = poll(cisco, first)
    assert why == "ifIndex set changed"
    assert [(o.instance, o.value) for o in observations] == [("Po1", 1)]
    counters = parse.counters(second)
    po1 = counters.if_index.index(5001)
    assert counters.in_errors[po1] is None  # no row for it in that column
    assert counters.in_errors[counters.if_index.index(10501)] == 0


def test_removed_interface_changes_layout_without_bogus_changes(
    cisco: dict[str, Value],
) -> None:
    first, _, _ = poll(cisco)
    for oid in [o for o in cisco if o.endswith(".10148")]:
        del cisco[oid]
    second, observations, why = poll(cisco, first)
    assert why == "ifIndex set changed"
    assert observations == []
    assert 10148 not in second.status.layout.if_index


def test_name_falls_back_to_descr_then_index(cisco: dict[str, Value]) -> None:
    cisco[f"{IF_NAME}.2"] = b""
    del cisco[f"{IF_NAME}.3"]
    del cisco[f"{IF_DESCR}.3"]
    state, _, _ = poll(cisco)
    assert state.names.name[:3] == ["Vl1", "Vlan2", "3"]


def test_misordered_column_is_aligned_by_index(cisco: dict[str, Value]) -> None:
    errors = column(cisco, IF_IN_ERRORS)
    cols = columns(cisco, STATUS_COLUMNS)
    cols[IF_IN_ERRORS] = list(reversed(errors))
    cisco_vl2 = f"{IF_IN_ERRORS}.2"
    status = parse.parse_status(cols, None)
    assert status.in_errors[1] == cisco[cisco_vl2]
    assert status.in_errors == [v for _, v in errors]


def test_counters_are_copies_the_caller_may_mutate(cisco: dict[str, Value]) -> None:
    state, _, _ = poll(cisco)
    counters = parse.counters(state)
    counters.oper_status[0] = 1
    counters.name[0] = "mutated"
    _, observations, _ = poll(cisco, state)
    assert observations == []
    assert parse.counters(state).name[0] == "Vl1"


# --- broken replies -----------------------------------------------------------------


def test_missing_uptime_is_no_such_object(cisco: dict[str, Value]) -> None:
    del cisco[SYS_UPTIME]
    with pytest.raises(ReplyError) as err:
        parse.parse_scalars(cisco)
    assert err.value.reason == "no_such_object"
    assert SYS_UPTIME in err.value.detail


@pytest.mark.parametrize("value", [b"\x01\x02", "1.3.6", None, 1.5])
def test_uptime_of_the_wrong_type_is_bad_type(cisco: dict[str, Value], value: Value) -> None:
    cisco[SYS_UPTIME] = value
    with pytest.raises(ReplyError) as err:
        parse.parse_scalars(cisco)
    assert err.value.reason == "bad_type"
    assert SYS_UPTIME in err.value.detail


def test_empty_oper_column_is_no_such_object(cisco: dict[str, Value]) -> None:
    cols = columns(cisco, STATUS_COLUMNS)
    cols[IF_OPER_STATUS_COL] = []
    with pytest.raises(ReplyError) as err:
        parse.parse_status(cols, None)
    assert err.value.reason == "no_such_object"


def test_missing_admin_column_is_no_such_object(cisco: dict[str, Value]) -> None:
    cols = columns(cisco, STATUS_COLUMNS)
    del cols[IF_ADMIN_STATUS]
    with pytest.raises(ReplyError) as err:
        parse.parse_status(cols, None)
    assert err.value.reason == "no_such_object"


@pytest.mark.parametrize(
    ("oid", "value", "section"),
    [
        (f"{IF_OPER_STATUS_COL}.10150", b"up", "status"),  # OctetString for an Integer
        (f"{IF_ADMIN_STATUS}.10150", "1.3.6.1", "status"),
        (f"{IF_HC_IN_OCTETS}.10150", b"\x00\x01", "status"),
        (f"{IF_NAME}.10150", 7, "names"),
        (f"{IF_HIGH_SPEED}.10150", b"1000", "names"),
    ],
)
def test_wrong_value_type_is_bad_type_naming_the_oid(
    cisco: dict[str, Value], oid: str, value: Value, section: str
) -> None:
    first, _, _ = poll(cisco)
    cisco[oid] = value
    if section == "status":
        with pytest.raises(ReplyError) as err:
            parse.parse_status(columns(cisco, STATUS_COLUMNS), first.status.layout)
    else:
        status = parse.parse_status(columns(cisco, STATUS_COLUMNS), first.status.layout)
        with pytest.raises(ReplyError) as err:
            parse.parse_names(columns(cisco, NAME_COLUMNS), status.layout)
    assert err.value.reason == "bad_type"
    assert err.value.detail.startswith(oid + " (")


@pytest.mark.parametrize(
    "bad_oid",
    [f"{IF_OPER_STATUS_COL}.1.5", f"{IF_OPER_STATUS_COL}.x", f"{IF_OPER_STATUS_COL}."],
)
def test_index_that_is_not_one_integer_is_decode(cisco: dict[str, Value], bad_oid: str) -> None:
    cols = columns(cisco, STATUS_COLUMNS)
    cols[IF_OPER_STATUS_COL].append((bad_oid, 1))
    with pytest.raises(ReplyError) as err:
        parse.parse_status(cols, None)
    assert err.value.reason == "decode"
    assert bad_oid in err.value.detail


def test_duplicate_index_is_decode(cisco: dict[str, Value]) -> None:
    cols = columns(cisco, STATUS_COLUMNS)
    cols[IF_OPER_STATUS_COL].append(cols[IF_OPER_STATUS_COL][0])
    with pytest.raises(ReplyError) as err:
        parse.parse_status(cols, None)
    assert err.value.reason == "decode"


def test_update_refuses_stale_names(cisco: dict[str, Value]) -> None:
    first, _, _ = poll(cisco)
    cols = columns(cisco, STATUS_COLUMNS)
    cols[IF_OPER_STATUS_COL] = cols[IF_OPER_STATUS_COL][1:]
    status = parse.parse_status(cols, first.status.layout)
    with pytest.raises(ValueError, match="names must be read"):
        parse.update(first, first.scalars, status, None, device="sw1", ts=TS)


# --- properties ---------------------------------------------------------------------

_table = st.dictionaries(
    keys=st.integers(min_value=1, max_value=2**31 - 1),
    values=st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3, 5, 7])),
    min_size=1,
    max_size=12,
)


def _rows(table: dict[int, tuple[int, int]], uptime: int) -> dict[str, Value]:
    rows: dict[str, Value] = {SYS_UPTIME: uptime}
    for i in sorted(table):
        admin, oper = table[i]
        rows[f"{IF_ADMIN_STATUS}.{i}"] = admin
        rows[f"{IF_OPER_STATUS_COL}.{i}"] = oper
        rows[f"{IF_NAME}.{i}"] = f"if{i}".encode()
    return dict(sorted(rows.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))


@settings(max_examples=200, deadline=None)
@given(before=_table, after=_table)
def test_observations_are_exactly_the_changed_interfaces(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> None:
    prev, _, _ = poll(_rows(before, 1000))
    _, observations, _ = poll(_rows(after, 2000), prev)
    reported = {int(o.labels["if_index"]): (o.value, o.labels["admin"]) for o in observations}
    expected = {
        i: (oper, STATUS_NAMES[admin])
        for i, (admin, oper) in after.items()
        if before.get(i) != (admin, oper)
    }
    assert reported == expected


_values = st.one_of(
    st.none(), st.integers(), st.binary(max_size=8), st.text(max_size=8), st.floats()
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(STATUS_COLUMNS + NAME_COLUMNS),
            st.text(alphabet="0123456789.", min_size=0, max_size=6),
            _values,
        ),
        max_size=30,
    ),
    uptime=_values,
)
def test_garbage_raises_only_reply_error(
    rows: list[tuple[str, str, Value]], uptime: Value
) -> None:
    data: dict[str, list[tuple[str, Value]]] = {}
    for col, suffix, value in rows:
        data.setdefault(col, []).append((f"{col}.{suffix}", value))
    try:
        parse.parse_scalars({SYS_UPTIME: uptime})
        status = parse.parse_status(data, None)
        parse.parse_names(data, status.layout)
    except ReplyError as exc:
        assert exc.reason in {"no_such_object", "bad_type", "decode"}
