"""gNMI notifications -> Observations, with no I/O.

Input is either the protobuf messages (``SubscribeResponse``, ``GetResponse``,
``Notification`` from ``pygnmi.spec.v080.gnmi_pb2``; only their fields are used, never
the module) or pygnmi's dict form (``gNMIclient.get()`` and ``telemetryParser()``).

Paths are OpenConfig; module prefixes on element names (``openconfig-interfaces:interfaces``,
``oc-if:state``) are ignored, and a value may be a leaf or a JSON_IETF / JSON subtree, which
is walked down to its leaves. What becomes an Observation:

===========================================================================  =================
path (under ``prefix + path``)                                               name, instance
===========================================================================  =================
/interfaces/interface[name]/state/oper-status (+ admin-status)               if_oper_status, name
/interfaces/interface[name]/state/admin-status                               if_admin_status, name
/interfaces/interface[name]/state/counters/{in,out}-octets, -errors ...      if_in_octets ..., name
/interfaces/interface[name]/ethernet/state/counters/in-crc-errors            if_in_fcs_errors, name
/network-instances/.../bgp/neighbors/neighbor[neighbor-address]/state/
session-state                                                                bgp_peer_state, address
/components/component[name]/transceiver/physical-channels/channel[index]/
state/input-power/instant (and optical-channel/state/input-power/instant)   optical_rx_dbm, name
/system/cpus/cpu[index]/state/total/instant, and
/components/component[name]/cpu/utilization/state/instant                    cpu_utilization
/system/alarms/alarm[id]/state/{severity,text,resource,type-id}             alarm, id
===========================================================================  =================

State-like values (oper/admin status, BGP state, alarms) are published when they change
(per :class:`ParseState`, reset at each new stream so a redial restates everything);
counters, power and CPU samples are published as they come. ``stats`` count per gNMI
Update: ``malformed`` (a known path with a missing key or a value we cannot read, an
update with no path or value) and ``unmatched`` (no known path in it). Nothing here raises
for bad input.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from probes.gnmi.paths import Keys, split_path, strip_module
from probes.types import (
    ALARM,
    BGP_PEER_STATE,
    CPU_UTILIZATION,
    IF_ADMIN_STATUS,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_IN_OCTETS,
    IF_OPER_STATUS,
    IF_OUT_ERRORS,
    IF_OUT_OCTETS,
    OPTICAL_RX_DBM,
    Observation,
)

log = logging.getLogger(__name__)

SOURCE: Final = "gnmi"

# New observation names (candidates for probes/types.py).

# OpenConfig enumerations -> the MIB codes the rest of netreflex speaks.
OPER_STATUS: Final[Mapping[str, int]] = MappingProxyType({
    "UP": 1, "DOWN": 2, "TESTING": 3, "UNKNOWN": 4, "DORMANT": 5, "NOT_PRESENT": 6,
    "LOWER_LAYER_DOWN": 7,
})
ADMIN_STATUS: Final[Mapping[str, int]] = MappingProxyType({"UP": 1, "DOWN": 2, "TESTING": 3})
BGP_STATE: Final[Mapping[str, int]] = MappingProxyType({
    "IDLE": 1, "CONNECT": 2, "ACTIVE": 3, "OPENSENT": 4, "OPENCONFIRM": 5, "ESTABLISHED": 6,
})
ALARM_CLEARED: Final = "CLEARED"

STAT_KEYS: Final = (
    "notifications",  # Notifications read (stream and Get)
    "updates",  # Updates in them
    "deletes",  # delete paths in them
    "observations",  # Observations produced
    "malformed",  # Updates with a known path we could not read, or no path / value
    "unmatched",  # Updates with no path we know
)

_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})
_ADMIN_LABELS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    "up": MappingProxyType({"admin": "up"}),
    "down": MappingProxyType({"admin": "down"}),
    "testing": MappingProxyType({"admin": "testing"}),
})
_MAX_TEXT: Final = 200  # alarm text kept in labels
_MAX_DEPTH: Final = 32  # JSON subtrees deeper than this are malformed
_MAX_PREFIXES: Final = 8192  # prefixes remembered per device


class ParseState:
    """What one device's parser remembers between notifications (and across redials)."""

    __slots__ = ("_prefixes", "admin", "alarms", "alarms_seen", "oper", "sent", "stats")

    def __init__(self, stats: dict[str, int] | None = None) -> None:
        self.stats: dict[str, int] = stats if stats is not None else {}
        for key in STAT_KEYS:
            self.stats.setdefault(key, 0)
        self.admin: dict[str, str] = {}  # interface -> "up" / "down" / "testing"
        self.oper: dict[str, int] = {}  # interface -> last IF-MIB oper status seen
        self.alarms: dict[str, dict[str, str]] = {}  # alarm id -> severity, text, ...
        self.alarms_seen: set[str] | None = None  # restated on this stream, until its sync
        self.sent: dict[tuple[str, str], object] = {}  # (name, instance) -> last published
        self._prefixes: dict[bytes, tuple[tuple[str, ...], Keys]] = {}

    def new_stream(self) -> None:
        """Forget what was published, so the next stream restates every state; alarms it
        does not restate before its first sync were cleared meanwhile."""
        self.sent.clear()
        self.alarms_seen = set()

    def prefix(self, path: Any) -> tuple[tuple[str, ...], Keys]:
        """A notification prefix as names and keys; the same few recur at every sample."""
        raw = path.SerializeToString()
        known = self._prefixes.get(raw)
        if known is None:
            if len(self._prefixes) >= _MAX_PREFIXES:
                self._prefixes.clear()
            known = self._prefixes[raw] = _proto_path(path)
        return known


class _Malformed(ValueError):
    """A known path whose value or keys we cannot read."""


# --- reading values ------------------------------------------------------------------------


_decode_json: Final = json.JSONDecoder().decode


def _json(raw: bytes) -> Any:
    """JSON bytes as Python. The common scalars -- a plain string (an enumeration, a
    64-bit counter in JSON_IETF) or digits -- skip the JSON decoder (a third of the time
    of ``json.loads``)."""
    if raw[:1] == b'"' and raw[-1:] == b'"' and b"\\" not in raw and raw.count(b'"') == 2:
        return raw[1:-1].decode()
    if raw.isdigit():
        return int(raw)
    return _decode_json(raw.decode())


def typed_value(val: Any) -> Any:
    """A gNMI TypedValue as Python: JSON decoded, Decimal64 as float, leaf-lists as lists."""
    kind = val.WhichOneof("value")
    if kind == "json_ietf_val" or kind == "json_val":
        return _json(getattr(val, kind))
    if kind in ("string_val", "ascii_val", "int_val", "uint_val", "bool_val", "double_val",
                "float_val"):
        return getattr(val, kind)
    if kind == "decimal_val":
        digits, precision = val.decimal_val.digits, val.decimal_val.precision
        if precision > 18:  # decimal64 has at most 18 fraction digits (and 10**2**32 hangs)
            raise _Malformed(f"decimal64 precision {precision} is out of range")
        return digits / 10**precision
    if kind == "leaflist_val":
        return [typed_value(e) for e in val.leaflist_val.element]
    raise _Malformed(f"value of type {kind or 'none'} is not supported")


def _update_value(upd: Any) -> Any:
    val = upd.val
    kind = val.WhichOneof("value")
    if kind == "json_ietf_val" or kind == "json_val":  # the usual: skip typed_value
        return _json(getattr(val, kind))
    if kind is not None:
        return typed_value(val)
    if upd.HasField("value") and upd.value.type in (0, 4):  # deprecated Value, JSON(_IETF)
        return _json(upd.value.value)
    raise _Malformed("update without a value")


def _enum(value: Any, table: Mapping[str, int]) -> int:
    if not isinstance(value, str):
        raise _Malformed(f"expected an enumeration, got {type(value).__name__}")
    code = table.get(strip_module(value).upper().replace("-", "_"))
    if code is None:
        raise _Malformed(f"unknown value {value!r}")
    return code


def _counter(value: Any) -> int:
    if isinstance(value, bool):
        raise _Malformed("expected a counter, got a boolean")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise _Malformed(f"expected a counter, got {value!r}")


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise _Malformed("expected a number, got a boolean")
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Malformed(f"expected a number, got {value!r}") from None
    if isinstance(number, float) and not math.isnan(number):
        return number
    raise _Malformed(f"expected a number, got {value!r}")


def _key(keys: Keys, pos: int, *names: str) -> str:
    have = keys[pos]
    if have is not None:
        for name in names:
            value = have.get(name)
            if value is not None:
                return value
    raise _Malformed(f"path has no [{names[0]}=...] key")


def _seconds(timestamp: int | float | None) -> float | None:
    """A gNMI timestamp (ns since the epoch; some targets send us, ms or s) in seconds."""
    if timestamp is None or not 0 < timestamp < math.inf:
        return None
    if timestamp > 1e17:
        return timestamp / 1e9
    if timestamp > 1e14:
        return timestamp / 1e6
    if timestamp > 1e11:
        return timestamp / 1e3
    return float(timestamp)


# --- one notification ------------------------------------------------------------------------


class _Run:
    """Parsing one notification: where observations go and what is pending until its end."""

    __slots__ = ("bad", "device", "interfaces", "matched", "out", "pending_alarms", "state",
                 "ts")

    def __init__(self, device: str, state: ParseState, out: list[Observation], ts: float):
        self.device = device
        self.state = state
        self.out = out
        self.ts = ts
        self.interfaces: dict[str, None] = {}  # oper or admin seen: publish oper at the end
        self.pending_alarms: dict[str, dict[str, str]] = {}
        self.matched = False
        self.bad = False

    def emit(self, name: str, instance: str, value: float | int | str,
             labels: Mapping[str, str] = _NO_LABELS) -> None:
        self.out.append(Observation(self.device, SOURCE, name, instance, value, self.ts, labels))

    def changed(self, name: str, instance: str, value: object) -> bool:
        sent = self.state.sent
        key = (name, instance)
        if sent.get(key, _NOTHING) == value:
            return False
        sent[key] = value
        return True

    def finish(self) -> None:
        state = self.state
        for name in self.interfaces:
            oper = state.oper.get(name)
            if oper is None:
                continue
            admin = state.admin.get(name)
            if self.changed(IF_OPER_STATUS, name, (oper, admin)):
                labels = _NO_LABELS if admin is None else _ADMIN_LABELS[admin]
                self.emit(IF_OPER_STATUS, name, oper, labels)
        for alarm_id, fields in self.pending_alarms.items():
            if state.alarms_seen is not None:
                state.alarms_seen.add(alarm_id)
            known = state.alarms.setdefault(alarm_id, {})
            known.update(fields)
            severity = known.get("severity")
            if severity is None:
                continue  # not raised yet as far as we know: wait for its severity
            labels = {k: v for k, v in known.items() if k != "severity"}
            if self.changed(ALARM, alarm_id, (severity, tuple(sorted(labels.items())))):
                self.emit(ALARM, alarm_id, severity, MappingProxyType(labels))


_NOTHING: Final = object()


def _oper(run: _Run, keys: Keys, value: Any) -> None:
    name = _key(keys, 1, "name")
    run.state.oper[name] = _enum(value, OPER_STATUS)
    run.interfaces[name] = None


def _admin(run: _Run, keys: Keys, value: Any) -> None:
    name = _key(keys, 1, "name")
    code = _enum(value, ADMIN_STATUS)
    run.state.admin[name] = ("up", "down", "testing")[code - 1]
    run.interfaces[name] = None
    if run.changed(IF_ADMIN_STATUS, name, code):
        run.emit(IF_ADMIN_STATUS, name, code)


def _counter_of(obs_name: str) -> Callable[[_Run, Keys, Any], None]:
    def handle(run: _Run, keys: Keys, value: Any) -> None:  # the hot path: kept flat
        interface = keys[1]
        name = None if interface is None else interface.get("name")
        if name is None:
            raise _Malformed("path has no [name=...] key")
        count = value if type(value) is int and value >= 0 else _counter(value)
        run.out.append(Observation(run.device, SOURCE, obs_name, name, count, run.ts,
                                   _NO_LABELS))

    return handle


def _bgp(run: _Run, keys: Keys, value: Any) -> None:
    instance = _key(keys, 1, "name")
    peer = _key(keys, 6, "neighbor-address", "neighbor_address")
    code = _enum(value, BGP_STATE)
    if run.changed(BGP_PEER_STATE, f"{instance}\0{peer}", code):
        run.emit(BGP_PEER_STATE, peer, code, MappingProxyType({"network_instance": instance}))


def _rx_power_channel(run: _Run, keys: Keys, value: Any) -> None:
    component = _key(keys, 1, "name")
    channel = _key(keys, 4, "index")
    run.emit(OPTICAL_RX_DBM, component, _number(value),
             MappingProxyType({"channel": str(channel)}))


def _rx_power_och(run: _Run, keys: Keys, value: Any) -> None:
    run.emit(OPTICAL_RX_DBM, _key(keys, 1, "name"), _number(value))


def _cpu_system(run: _Run, keys: Keys, value: Any) -> None:
    run.emit(CPU_UTILIZATION, str(_key(keys, 2, "index")), _number(value))


def _cpu_component(run: _Run, keys: Keys, value: Any) -> None:
    run.emit(CPU_UTILIZATION, _key(keys, 1, "name"), _number(value))


def _alarm_field(field: str) -> Callable[[_Run, Keys, Any], None]:
    def handle(run: _Run, keys: Keys, value: Any) -> None:
        alarm_id = _key(keys, 2, "id")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _Malformed(f"alarm {field} is not a scalar")
        text = str(value)
        if field in ("severity", "type"):
            text = strip_module(text)  # identityref: openconfig-alarm-types:MAJOR
        if field == "severity":
            text = text.upper()
        run.pending_alarms.setdefault(alarm_id, {})[field] = text[:_MAX_TEXT]

    return handle


def _ignore(run: _Run, keys: Keys, value: Any) -> None:
    pass


_IF = ("interfaces", "interface")
_IF_COUNTERS = (*_IF, "state", "counters")
_BGP = ("network-instances", "network-instance", "protocols", "protocol", "bgp", "neighbors",
        "neighbor", "state")
_ALARM = ("system", "alarms", "alarm", "state")

_LEAVES: Final[Mapping[tuple[str, ...], Callable[[_Run, Keys, Any], None]]] = MappingProxyType({
    (*_IF, "state", "oper-status"): _oper,
    (*_IF, "state", "admin-status"): _admin,
    (*_IF_COUNTERS, "in-octets"): _counter_of(IF_IN_OCTETS),
    (*_IF_COUNTERS, "out-octets"): _counter_of(IF_OUT_OCTETS),
    (*_IF_COUNTERS, "in-errors"): _counter_of(IF_IN_ERRORS),
    (*_IF_COUNTERS, "out-errors"): _counter_of(IF_OUT_ERRORS),
    (*_IF_COUNTERS, "in-fcs-errors"): _counter_of(IF_IN_FCS_ERRORS),
    (*_IF, "ethernet", "state", "counters", "in-crc-errors"): _counter_of(IF_IN_FCS_ERRORS),
    (*_BGP, "session-state"): _bgp,
    ("components", "component", "transceiver", "physical-channels", "channel", "state",
     "input-power", "instant"): _rx_power_channel,
    ("components", "component", "optical-channel", "state", "input-power", "instant"):
        _rx_power_och,
    ("system", "cpus", "cpu", "state", "total", "instant"): _cpu_system,
    ("components", "component", "cpu", "utilization", "state", "instant"): _cpu_component,
    (*_ALARM, "severity"): _alarm_field("severity"),
    (*_ALARM, "text"): _alarm_field("text"),
    (*_ALARM, "resource"): _alarm_field("resource"),
    (*_ALARM, "type-id"): _alarm_field("type"),
    (*_ALARM, "id"): _ignore,
    (*_ALARM, "time-created"): _ignore,
})

# The key leaves of the lists above, to find list entries inside JSON subtrees.
_LIST_KEYS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "interface": ("name",),
    "network-instance": ("name",),
    "protocol": ("identifier", "name"),
    "neighbor": ("neighbor-address",),
    "component": ("name",),
    "channel": ("index",),
    "cpu": ("index",),
    "alarm": ("id",),
})


def _leaf(run: _Run, names: tuple[str, ...], keys: Keys, value: Any, depth: int = 0) -> None:
    handler = _LEAVES.get(names)
    if handler is None:
        if isinstance(value, dict | list):
            _subtree(run, names, keys, value, depth)
        return
    if type(value) is dict and len(value) == 1:
        # {"openconfig-interfaces:oper-status": "UP"} at the leaf's own path (IOS XR)
        (member, inner), = value.items()
        if strip_module(member) == names[-1]:
            value = inner
    run.matched = True
    try:
        handler(run, keys, value)
    except _Malformed as exc:
        run.bad = True
        log.debug("%s: %s: %s", run.device, "/".join(names), exc)


def _subtree(run: _Run, names: tuple[str, ...], keys: Keys, value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        run.bad = True
        return
    if isinstance(value, list):
        list_keys = _LIST_KEYS.get(names[-1]) if names else None
        if list_keys is not None and keys[-1] is None:  # /interfaces/interface = [{...}]
            _entries(run, names[:-1], keys[:-1], names[-1], list_keys, value, depth)
        return  # a leaf-list: nothing we read
    for member, inner in value.items():
        name = strip_module(member)
        list_keys = _LIST_KEYS.get(name)
        if list_keys is not None and isinstance(inner, list):
            _entries(run, names, keys, name, list_keys, inner, depth)
        else:
            _leaf(run, (*names, name), (*keys, None), inner, depth + 1)


def _entries(run: _Run, names: tuple[str, ...], keys: Keys, name: str,
             list_keys: tuple[str, ...], entries: list[Any], depth: int) -> None:
    for entry in entries:
        if not isinstance(entry, dict):
            run.bad = True
            continue
        members = {strip_module(k): v for k, v in entry.items()}
        try:
            key = {k: str(members[k]) for k in list_keys}
        except KeyError:
            run.bad = True
            continue
        _subtree(run, (*names, name), (*keys, key), members, depth + 1)


def _delete(run: _Run, names: tuple[str, ...], keys: Keys) -> None:
    state = run.state
    try:
        if names == ("system", "alarms", "alarm"):
            _clear_alarm(run, _key(keys, 2, "id"))
        elif names == _IF:
            name = _key(keys, 1, "name")
            state.oper.pop(name, None)
            state.admin.pop(name, None)
            run.interfaces.pop(name, None)
            state.sent.pop((IF_OPER_STATUS, name), None)
            state.sent.pop((IF_ADMIN_STATUS, name), None)
    except _Malformed:
        pass  # a delete of a whole list (no key): nothing to say about one element


def _clear_alarm(run: _Run, alarm_id: str) -> None:
    known = run.state.alarms.pop(alarm_id, {})
    run.pending_alarms.pop(alarm_id, None)
    run.state.sent.pop((ALARM, alarm_id), None)
    if "severity" in known:  # it was raised: say it is no more
        labels = {k: v for k, v in known.items() if k != "severity"}
        run.emit(ALARM, alarm_id, ALARM_CLEARED, MappingProxyType(labels))


# --- protobuf --------------------------------------------------------------------------------


def _proto_path(path: Any) -> tuple[tuple[str, ...], Keys]:
    elems = path.elem
    if len(elems) == 1 and not elems[0].key:  # a leaf under a prefix: the usual update
        name = elems[0].name
        return (strip_module(name) if ":" in name else name,), (None,)
    names: list[str] = []
    keys: list[Mapping[str, str] | None] = []
    for elem in path.elem:
        name = elem.name
        names.append(strip_module(name) if ":" in name else name)
        keys.append(dict(elem.key) if elem.key else None)
    return tuple(names), tuple(keys)


def parse_notification(
    notification: Any, state: ParseState, *, device: str, now: float, out: list[Observation]
) -> None:
    """Append what one gNMI ``Notification`` says to ``out``. ``now`` is its arrival time,
    used when the notification carries no timestamp."""
    stats = state.stats
    stats["notifications"] += 1
    before = len(out)
    run = _Run(device, state, out, _seconds(notification.timestamp) or now)
    if notification.HasField("prefix"):
        prefix_names, prefix_keys = state.prefix(notification.prefix)
    else:
        prefix_names, prefix_keys = (), ()
    updates = notification.update
    stats["updates"] += len(updates)
    for upd in updates:
        run.matched = run.bad = False
        try:
            names, keys = _proto_path(upd.path)
            if prefix_names:
                names, keys = prefix_names + names, prefix_keys + keys
            value = _update_value(upd)
            if not names and type(value) is not dict:
                raise _Malformed("a value at the root that is not a JSON tree")
            _leaf(run, names, keys, value)
        except (ValueError, TypeError, RecursionError) as exc:
            log.debug("%s: malformed gNMI update: %s", device, exc)
            run.bad = True
        if run.bad:
            stats["malformed"] += 1
        elif not run.matched:
            stats["unmatched"] += 1
    for path in notification.delete:
        stats["deletes"] += 1
        names, keys = _proto_path(path)
        _delete(run, prefix_names + names, prefix_keys + keys)
    run.finish()
    stats["observations"] += len(out) - before


def parse_response(
    response: Any, state: ParseState, *, device: str, now: float, out: list[Observation]
) -> bool:
    """One ``SubscribeResponse``: observations go to ``out``; True for a sync_response."""
    kind = response.WhichOneof("response")
    if kind == "update":
        parse_notification(response.update, state, device=device, now=now, out=out)
        return False
    if kind == "sync_response":
        if state.alarms_seen is not None:
            _clear_unseen_alarms(state, device, now, out)
        return bool(response.sync_response)
    state.stats["malformed"] += 1  # the deprecated error, or nothing at all
    return False


def _clear_unseen_alarms(state: ParseState, device: str, now: float,
                         out: list[Observation]) -> None:
    """At a new stream's sync, every active alarm has been restated: the others cleared
    while we were not listening (their deletes are lost)."""
    seen, state.alarms_seen = state.alarms_seen or set(), None
    before = len(out)
    run = _Run(device, state, out, now)
    for alarm_id in [a for a in state.alarms if a not in seen]:
        _clear_alarm(run, alarm_id)
    state.stats["observations"] += len(out) - before


def parse_get_response(
    response: Any, state: ParseState, *, device: str, now: float, out: list[Observation]
) -> None:
    for notification in response.notification:
        parse_notification(notification, state, device=device, now=now, out=out)


def _count(stats: dict[str, int], run: _Run) -> None:
    if run.bad:
        stats["malformed"] += 1
    elif not run.matched:
        stats["unmatched"] += 1


# --- pygnmi's dict form ----------------------------------------------------------------------


def parse_pygnmi(
    data: Mapping[str, Any], state: ParseState, *, device: str, now: float,
    out: list[Observation],
) -> bool:
    """pygnmi's dicts: ``gNMIclient.get()`` (``{"notification": [...]}``) or
    ``telemetryParser()`` (``{"update": {...}}`` / ``{"sync_response": True}``).
    Returns True for a sync_response."""
    if not isinstance(data, Mapping):
        state.stats["malformed"] += 1
        return False
    if "notification" in data:
        notifications = data["notification"]
        if not isinstance(notifications, list):
            state.stats["malformed"] += 1
            return False
        for notification in notifications:
            _dict_notification(notification, state, device, now, out)
    elif "update" in data:
        _dict_notification(data["update"], state, device, now, out)
    if not data.get("sync_response"):
        return False
    if state.alarms_seen is not None:
        _clear_unseen_alarms(state, device, now, out)
    return True


def _dict_notification(n: Any, state: ParseState, device: str, now: float,
                       out: list[Observation]) -> None:
    stats = state.stats
    stats["notifications"] += 1
    if not isinstance(n, Mapping):
        stats["malformed"] += 1
        return
    before = len(out)
    stamp = n.get("timestamp")
    run = _Run(device, state, out,
               (_seconds(stamp) if isinstance(stamp, int | float) else None) or now)
    try:
        prefix_names, prefix_keys = split_path(n.get("prefix") or "")[1:]
    except ValueError:
        prefix_names, prefix_keys = (), ()
        run.bad = True
    for upd in n.get("update") or ():
        stats["updates"] += 1
        run.matched = run.bad = False
        try:
            if not isinstance(upd, Mapping) or "val" not in upd:
                raise _Malformed("update without a value")
            names, keys = split_path(upd.get("path") or "")[1:]
            names, keys = prefix_names + names, prefix_keys + keys
            value = upd["val"]
            if not names and type(value) is not dict:
                raise _Malformed("a value at the root that is not a JSON tree")
            _leaf(run, names, keys, value)
        except (ValueError, TypeError, RecursionError) as exc:
            log.debug("%s: malformed gNMI update: %s", device, exc)
            run.bad = True
        _count(stats, run)
    for gone in n.get("delete") or ():
        stats["deletes"] += 1
        path = gone.get("path") if isinstance(gone, Mapping) else gone
        try:
            names, keys = split_path(path or "")[1:]
        except (ValueError, TypeError):
            continue
        _delete(run, prefix_names + names, prefix_keys + keys)
    run.finish()
    stats["observations"] += len(out) - before
