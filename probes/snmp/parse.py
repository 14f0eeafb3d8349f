"""From SNMP replies to interface state, counters and Observations -- no I/O here.

Input is what gufo-snmp yields: numeric OIDs without a leading dot, and values that are
``int`` (INTEGER, Counter32/64, Gauge32, TimeTicks), ``bytes`` (OCTET STRING), ``str``
(OBJECT IDENTIFIER, IpAddress), ``float`` or ``None``. A walked column is a sequence of
``(oid, value)`` rows in agent order.

The table is kept as columns (parallel lists ordered like the agent's rows). On the
usual poll, where no interface came or went, each column is recognised by comparing its
OIDs with the OIDs the previous poll saw -- one C-level tuple comparison -- and its
values are used as they are, without per-row Python work.

Any reply we cannot use raises :class:`ReplyError` with a ``PollResult`` error code; the
poller turns it into a result and keeps the last good state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from probes.types import (
    DEVICE_RESTARTED,
    IF_OPER_STATUS,
    REACHABLE,
    STATUS_NAMES,
    InterfaceCounters,
    Observation,
)

Value = None | str | bytes | int | float
Row = tuple[str, Value]

SOURCE: Final = "snmp"

# Scalars (GET).
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
SYS_NAME: Final = "1.3.6.1.2.1.1.5.0"
IF_TABLE_LAST_CHANGE: Final = "1.3.6.1.2.1.31.1.5.0"

# ifTable / ifXTable columns (GETBULK walks).
IF_DESCR: Final = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN_STATUS: Final = "1.3.6.1.2.1.2.2.1.7"
IF_OPER_STATUS_COL: Final = "1.3.6.1.2.1.2.2.1.8"
IF_IN_ERRORS: Final = "1.3.6.1.2.1.2.2.1.14"
IF_OUT_ERRORS: Final = "1.3.6.1.2.1.2.2.1.20"
IF_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN_OCTETS: Final = "1.3.6.1.2.1.31.1.1.1.6"
IF_HC_OUT_OCTETS: Final = "1.3.6.1.2.1.31.1.1.1.10"
IF_HIGH_SPEED: Final = "1.3.6.1.2.1.31.1.1.1.15"
IF_ALIAS: Final = "1.3.6.1.2.1.31.1.1.1.18"

# Read on every poll.
STATUS_COLUMNS: Final = (
    IF_ADMIN_STATUS,
    IF_OPER_STATUS_COL,
    IF_IN_ERRORS,
    IF_OUT_ERRORS,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
)
# Read on the first poll and again only when the table changed (see names_due).
NAME_COLUMNS: Final = (IF_NAME, IF_DESCR, IF_ALIAS, IF_HIGH_SPEED)

COLUMN_NAMES: Final[Mapping[str, str]] = {
    SYS_UPTIME: "sysUpTime.0",
    SYS_NAME: "sysName.0",
    IF_TABLE_LAST_CHANGE: "ifTableLastChange.0",
    IF_DESCR: "ifDescr",
    IF_ADMIN_STATUS: "ifAdminStatus",
    IF_OPER_STATUS_COL: "ifOperStatus",
    IF_IN_ERRORS: "ifInErrors",
    IF_OUT_ERRORS: "ifOutErrors",
    IF_NAME: "ifName",
    IF_HC_IN_OCTETS: "ifHCInOctets",
    IF_HC_OUT_OCTETS: "ifHCOutOctets",
    IF_HIGH_SPEED: "ifHighSpeed",
    IF_ALIAS: "ifAlias",
}

_TICKS_WRAP: Final = 2**32  # sysUpTime is TimeTicks (hundredths of a second), 32 bits
_WRAP_SLACK: Final = 360_000  # an uptime within an hour of the wrap that restarts low: a wrap


class ReplyError(Exception):
    """The agent answered with something we cannot use.

    ``reason`` is a ``PollResult.error`` code (``no_such_object``, ``bad_type``,
    ``decode``); ``detail`` names the OID.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- scalars -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalars:
    uptime: int  # sysUpTime, hundredths of a second
    last_change: int | None  # ifTableLastChange; None when the agent does not have it
    sys_name: str | None  # only when asked for


def parse_scalars(reply: Mapping[str, Value]) -> Scalars:
    """The GET of sysUpTime.0 + ifTableLastChange.0 (+ sysName.0 on the first poll).

    gufo leaves out what the agent reported as noSuchObject / noSuchInstance.
    """
    if SYS_UPTIME not in reply:
        raise ReplyError("no_such_object", f"{SYS_UPTIME} (sysUpTime.0) is missing")
    uptime = reply[SYS_UPTIME]
    if type(uptime) is not int:
        raise ReplyError("bad_type", _bad(SYS_UPTIME, uptime, "TimeTicks"))
    last_change = reply.get(IF_TABLE_LAST_CHANGE)
    if last_change is not None and type(last_change) is not int:
        raise ReplyError("bad_type", _bad(IF_TABLE_LAST_CHANGE, last_change, "TimeTicks"))
    sys_name = reply.get(SYS_NAME)
    if sys_name is not None and not isinstance(sys_name, bytes):
        raise ReplyError("bad_type", _bad(SYS_NAME, sys_name, "OCTET STRING"))
    return Scalars(
        uptime=uptime,
        last_change=last_change,
        sys_name=None if sys_name is None else _text(sys_name),
    )


def is_restart(prev_uptime: int, uptime: int) -> bool:
    """sysUpTime went backwards -- unless it wrapped after 497 days."""
    if uptime >= prev_uptime:
        return False
    wrapped = prev_uptime > _TICKS_WRAP - _WRAP_SLACK and uptime < _WRAP_SLACK
    return not wrapped


# --- columns -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """The interfaces a device has: ifIndex list and the OIDs each column has for it."""

    if_index: tuple[int, ...]
    oids: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, if_index: Sequence[int]) -> Layout:
        index = tuple(if_index)
        suffixes = [f".{i}" for i in index]
        columns = STATUS_COLUMNS + NAME_COLUMNS
        return cls(index, {col: tuple(col + s for s in suffixes) for col in columns})


@dataclass(frozen=True, slots=True)
class Status:
    """The per-poll columns, aligned with ``layout.if_index``."""

    layout: Layout
    admin: list[int | None]
    oper: list[int]
    in_errors: list[int | None]
    out_errors: list[int | None]
    in_octets: list[int | None]
    out_octets: list[int | None]


@dataclass(frozen=True, slots=True)
class Names:
    """The descriptive columns, aligned with ``layout.if_index``.

    ``name`` is what observations use as the instance: ifName, else ifDescr, else the
    ifIndex as text.
    """

    layout: Layout
    name: list[str]
    alias: list[str]
    speed_mbps: list[int | None]


def parse_status(columns: Mapping[str, Sequence[Row]], known: Layout | None) -> Status:
    """The walks of STATUS_COLUMNS. ``known`` is the previous poll's layout, if any.

    ifOperStatus decides which interfaces exist; rows of other columns for other
    ifIndexes are ignored, and missing ones are ``None``.
    """
    oper_rows = columns.get(IF_OPER_STATUS_COL, ())
    if not oper_rows:
        raise ReplyError(
            "no_such_object", f"{IF_OPER_STATUS_COL} (ifOperStatus) has no rows"
        )
    oids, values = _split(oper_rows)
    layout = known
    if layout is None or oids != layout.oids[IF_OPER_STATUS_COL]:
        if_index = _indexes(IF_OPER_STATUS_COL, oids)
        if layout is None or tuple(if_index) != layout.if_index:
            layout = Layout.of(if_index)
    _check_ints(oids, values)
    oper: list[int] = list(values)  # type: ignore[arg-type]  # checked just above
    admin = _int_column(columns, IF_ADMIN_STATUS, layout)
    if admin.count(None) == len(admin):
        raise ReplyError("no_such_object", f"{IF_ADMIN_STATUS} (ifAdminStatus) has no rows")
    return Status(
        layout=layout,
        admin=admin,
        oper=oper,
        in_errors=_int_column(columns, IF_IN_ERRORS, layout),
        out_errors=_int_column(columns, IF_OUT_ERRORS, layout),
        in_octets=_int_column(columns, IF_HC_IN_OCTETS, layout),
        out_octets=_int_column(columns, IF_HC_OUT_OCTETS, layout),
    )


def parse_names(columns: Mapping[str, Sequence[Row]], layout: Layout) -> Names:
    """The walks of NAME_COLUMNS, aligned with ``layout`` (from :func:`parse_status`)."""
    if_name = _text_column(columns, IF_NAME, layout)
    descr = _text_column(columns, IF_DESCR, layout)
    alias = _text_column(columns, IF_ALIAS, layout)
    return Names(
        layout=layout,
        name=[n or d or str(i) for n, d, i in zip(if_name, descr, layout.if_index, strict=True)],
        alias=[a or "" for a in alias],
        speed_mbps=_int_column(columns, IF_HIGH_SPEED, layout),
    )


def _split(rows: Sequence[Row]) -> tuple[tuple[str, ...], tuple[Value, ...]]:
    oids, values = zip(*rows, strict=True)
    return oids, values


def _indexes(column: str, oids: Sequence[str]) -> list[int]:
    """ifIndex of each row; slow path, taken only when the interface set changed."""
    start = len(column) + 1
    out: list[int] = []
    for oid in oids:
        tail = oid[start:]
        if not oid.startswith(column + ".") or not (tail.isascii() and tail.isdigit()):
            raise ReplyError("decode", f"{oid}: not a row of {column} indexed by one ifIndex")
        out.append(int(tail))
    if len(set(out)) != len(out):
        raise ReplyError("decode", f"{column}: the agent returned an ifIndex twice")
    return out


def _aligned(
    columns: Mapping[str, Sequence[Row]], column: str, layout: Layout
) -> tuple[Sequence[str], Sequence[Value]]:
    """OIDs and values of ``column`` in ``layout`` order; ``None`` values where absent."""
    rows = columns.get(column, ())
    n = len(layout.if_index)
    if not rows:
        return layout.oids[column], (None,) * n
    oids, values = _split(rows)
    expected = layout.oids[column]
    if oids == expected:  # the usual poll: same interfaces, same order
        return oids, values
    position = {oid: p for p, oid in enumerate(expected)}
    out: list[Value] = [None] * n
    for oid, value in rows:
        p = position.get(oid)
        if p is not None:
            out[p] = value
    return expected, out


def _int_column(
    columns: Mapping[str, Sequence[Row]], column: str, layout: Layout
) -> list[int | None]:
    oids, values = _aligned(columns, column, layout)
    kinds = set(map(type, values))
    if not kinds <= {int, type(None)}:
        _check_ints(oids, values, allow_none=True)
    return list(values)  # type: ignore[arg-type]  # checked just above


def _text_column(
    columns: Mapping[str, Sequence[Row]], column: str, layout: Layout
) -> list[str | None]:
    oids, values = _aligned(columns, column, layout)
    out: list[str | None] = []
    for oid, value in zip(oids, values, strict=True):
        if value is None:
            out.append(None)
        elif isinstance(value, bytes):
            out.append(_text(value))
        else:
            raise ReplyError("bad_type", _bad(oid, value, "OCTET STRING"))
    return out


def _check_ints(
    oids: Sequence[str], values: Sequence[Value], *, allow_none: bool = False
) -> None:
    if set(map(type, values)) == {int}:
        return
    for oid, value in zip(oids, values, strict=True):
        if type(value) is not int and not (allow_none and value is None):
            raise ReplyError("bad_type", _bad(oid, value, "an integer"))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").rstrip("\x00")


def _bad(oid: str, value: Value, expected: str) -> str:
    kinds = {bytes: "OCTET STRING", str: "OBJECT IDENTIFIER or IpAddress", float: "REAL"}
    got = "NULL" if value is None else kinds.get(type(value), type(value).__name__)
    name = COLUMN_NAMES.get(oid) or COLUMN_NAMES.get(oid.rsplit(".", 1)[0], "")
    where = f"{oid} ({name})" if name else oid
    return f"{where}: expected {expected}, got {got} {value!r:.40}"


# --- state and what changed --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The last good poll of one device, held by its poller."""

    scalars: Scalars
    status: Status
    names: Names


def names_due(prev: DeviceState | None, scalars: Scalars, status: Status) -> str | None:
    """Why the descriptive columns must be read again, or ``None`` when they need not."""
    if prev is None:
        return "first poll"
    if is_restart(prev.scalars.uptime, scalars.uptime):
        return "device restarted"
    if scalars.last_change != prev.scalars.last_change:
        return "ifTableLastChange changed"
    if status.layout is not prev.status.layout:
        return "ifIndex set changed"
    return None


def update(
    prev: DeviceState | None,
    scalars: Scalars,
    status: Status,
    names: Names | None,
    *,
    device: str,
    ts: float,
) -> tuple[DeviceState, list[Observation], InterfaceCounters]:
    """Fold one good poll into the state; return the new state, what changed, counters.

    ``names`` is ``None`` when :func:`names_due` said they need not be read: the
    previous ones are kept. Observations: ``DEVICE_RESTARTED`` when sysUpTime went
    backwards; ``IF_OPER_STATUS`` for every interface on the first poll and after a
    restart (a baseline), and afterwards for each interface whose oper or admin status,
    name or alias changed. ``REACHABLE`` is the poller's (see :func:`reachable`).
    """
    if names is None:
        if prev is None or prev.names.layout is not status.layout:
            raise ValueError("names must be read when the interface set changed")
        names = prev.names
    if names.layout is not status.layout:
        raise ValueError("names and status come from different layouts")
    state = DeviceState(scalars=scalars, status=status, names=names)
    restarted = prev is not None and is_restart(prev.scalars.uptime, scalars.uptime)
    observations: list[Observation] = []
    if restarted:
        observations.append(
            Observation(device, SOURCE, DEVICE_RESTARTED, "", scalars.uptime / 100, ts)
        )
    if prev is None or restarted:
        changed: Sequence[int] = range(len(status.oper))
    else:
        changed = _changed(prev, state)
    for p in changed:
        observations.append(_oper_observation(state, p, device=device, ts=ts))
    return state, observations, counters(state)


def _changed(prev: DeviceState, new: DeviceState) -> list[int]:
    """Positions (in ``new``) of interfaces whose status or description changed."""
    old_s, new_s = prev.status, new.status
    same_names = prev.names is new.names
    if old_s.layout is new_s.layout:
        if old_s.oper == new_s.oper and old_s.admin == new_s.admin and same_names:
            return []
        old_p: Sequence[int | None] = range(len(new_s.oper))
    else:
        where = {i: p for p, i in enumerate(old_s.layout.if_index)}
        old_p = [where.get(i) for i in new_s.layout.if_index]
    out = []
    for p, q in enumerate(old_p):
        if (
            q is None
            or old_s.oper[q] != new_s.oper[p]
            or old_s.admin[q] != new_s.admin[p]
            or (
                not same_names
                and (
                    prev.names.name[q] != new.names.name[p]
                    or prev.names.alias[q] != new.names.alias[p]
                )
            )
        ):
            out.append(p)
    return out


def _oper_observation(state: DeviceState, p: int, *, device: str, ts: float) -> Observation:
    admin = state.status.admin[p]
    labels = {
        "admin": "unknown" if admin is None else STATUS_NAMES.get(admin, str(admin)),
        "if_index": str(state.status.layout.if_index[p]),
        "alias": state.names.alias[p],
    }
    return Observation(
        device, SOURCE, IF_OPER_STATUS, state.names.name[p], state.status.oper[p], ts, labels
    )


def reachable(device: str, ts: float, *, answered: bool, reason: str) -> Observation:
    """The one ``REACHABLE`` observation of every poll (``reason`` ``ok`` or an error)."""
    return Observation(
        device, SOURCE, REACHABLE, "", 1 if answered else 0, ts, {"reason": reason}
    )


def counters(state: DeviceState) -> InterfaceCounters:
    """The table as columns. Lists the state keeps are copied: callers may mutate theirs."""
    status, names = state.status, state.names
    return InterfaceCounters(
        if_index=list(status.layout.if_index),
        name=list(names.name),
        oper_status=list(status.oper),
        in_octets=status.in_octets,
        out_octets=status.out_octets,
        in_errors=status.in_errors,
        out_errors=status.out_errors,
        speed_mbps=list(names.speed_mbps),
    )
