"""Subscribers as columns, and reading them from CSV fast without loosening the checks.

``SubscriberTable`` keeps one list or array per attribute (devices and tiers numbered,
ports interned, empty text as ``""``) instead of one object per subscriber: a million of them
fit in a few hundred MB. ``load_csv`` reads a file in blocks; a block of plain lines (no
quotes, as many commas on every line) is split in one go and converted column by column
by compiled converters that accept only values that are obviously valid. A block or a row
they do not take is read line by line (``csv`` rules) and, down to the single rows, the
pydantic model decides and explains: problems read ``file:line: column: message (got …)``
exactly as they always have.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice, repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import Field

from probes.source import Strict

if TYPE_CHECKING:
    from correlator.subscriber_index import PartIndex

CSV_COLUMNS = (
    "id", "account", "name", "device", "port", "onu_id", "modem_mac", "cpe_mac",
    "monthly_revenue", "sla_tier", "contract_end", "churn_risk", "email", "phone",
    "consent_email", "consent_sms", "plan_mbps",
)
CSV_REQUIRED = ("id", "device", "port", "monthly_revenue")
UNITS = 1_000_000  # revenue is also kept in integer millionths: sums are exact, any order


class Contact(Strict):
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")


class Consent(Strict):
    email: bool = False
    sms: bool = False


class SubscriberModel(Strict):
    id: str = Field(min_length=1)
    account: str | None = None
    name: str | None = None
    device: str
    port: str
    onu_id: str | None = None
    modem_mac: str | None = None
    cpe_mac: str | None = None
    # at most 10^12: kept exactly in millionths (int64); a larger figure is a typo
    monthly_revenue: float = Field(ge=0, le=1e12, allow_inf_nan=False)
    sla_tier: str = "residential"
    contract_end: dt.date | None = None
    churn_risk: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    contact: Contact = Field(default_factory=Contact)
    consent: Consent = Field(default_factory=Consent)
    # the subscriber's plan speed (plan saturation is judged against it); 10^7 Mb/s = 10 Pb/s
    plan_mbps: float | None = Field(default=None, gt=0, le=1e7, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    account: str | None
    name: str | None
    device: str
    port: str
    onu_id: str | None
    modem_mac: str | None
    cpe_mac: str | None
    monthly_revenue: float
    sla_tier: str
    contract_end: dt.date | None
    churn_risk: float
    email: str | None
    phone: str | None
    consent_email: bool
    consent_sms: bool
    plan_mbps: float | None = None


def subscriber(m: SubscriberModel) -> Subscriber:
    return Subscriber(
        id=m.id, account=m.account, name=m.name, device=m.device, port=m.port,
        onu_id=m.onu_id, modem_mac=m.modem_mac, cpe_mac=m.cpe_mac,
        monthly_revenue=m.monthly_revenue, sla_tier=m.sla_tier, contract_end=m.contract_end,
        churn_risk=m.churn_risk, email=m.contact.email, phone=m.contact.phone,
        consent_email=m.consent.email, consent_sms=m.consent.sms, plan_mbps=m.plan_mbps,
    )


class _Chunk(NamedTuple):
    """Converted columns of a run of rows (the attribute names of ``SubscriberTable``)."""

    ids: Sequence[str]
    account: Sequence[str]
    name: Sequence[str]
    device: array[int]  # numbers into SubscriberTable.devices
    port: array[int]  # numbers into SubscriberTable.ports
    onu_id: Sequence[str]
    modem_mac: Sequence[str]
    cpe_mac: Sequence[str]
    revenue: array[float]
    units: array[int]
    tier: array[int]  # numbers into SubscriberTable.tiers
    contract_end: array[int]
    churn: array[float]
    email: Sequence[str]
    phone: Sequence[str]
    consent: bytes
    plan: array[float]  # Mb/s; 0.0: none


class _Packed(NamedTuple):
    """Texts packed into one string: text i is ``text[ends[i - 1]:ends[i]]``."""

    text: str
    ends: array[int]


PACK_FROM = 256  # rows: TextColumn.extend packs runs at least this long


class TextColumn:
    """A column of text that is only read one row at a time: runs packed into one string
    (``_Packed``: as the CSV reader and another process hand them over), and lists of
    strings for rows added a few at a time -- a string each costs some 50 bytes more than
    its text."""

    __slots__ = ("_len", "_parts", "_starts")

    def __init__(self) -> None:
        self._parts: list[Sequence[str] | _Packed] = [[]]
        self._starts = [0]
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def _tail(self) -> list[str]:
        last = self._parts[-1]
        if isinstance(last, list):
            return last
        tail: list[str] = []
        self._parts.append(tail)
        self._starts.append(self._len)
        return tail

    def append(self, text: str) -> None:
        self._tail().append(text)
        self._len += 1

    def extend(self, texts: Sequence[str]) -> None:
        """Rows; a large run of them is packed at once, while its strings are fresh in
        memory (they can go, and handing the column to another process costs nothing)."""
        if len(texts) >= PACK_FROM:
            self.extend_packed("".join(texts), array("q", accumulate(map(len, texts))))
            return
        self._tail().extend(texts)
        self._len += len(texts)

    def extend_packed(self, text: str, ends: array[int]) -> None:
        """Rows whose texts are ``text[ends[i - 1]:ends[i]]``."""
        if not ends:
            return
        if not self._parts[-1]:
            self._parts.pop()
            self._starts.pop()
        self._parts.append(_Packed(text, ends))
        self._starts.append(self._len)
        self._len += len(ends)

    def runs(self) -> list[tuple[str, array[int]]]:
        """All rows as packed runs (``extend_packed`` takes them), one per part: a part
        that came packed is handed out as it is."""
        out: list[tuple[str, array[int]]] = []
        for part in self._parts:
            if isinstance(part, _Packed):
                if part.ends:
                    out.append((part.text, part.ends))
            elif part:
                out.append(("".join(part), array("q", accumulate(map(len, part)))))
        return out

    def freeze(self) -> None:
        """No more rows: lists become tuples, which the garbage collector stops looking
        into once it has seen that they hold only strings."""
        self._parts = [p if isinstance(p, _Packed) else tuple(p) for p in self._parts]

    def __getitem__(self, row: int) -> str:
        i = bisect_right(self._starts, row) - 1
        part, k = self._parts[i], row - self._starts[i]
        if isinstance(part, _Packed):
            return part.text[part.ends[k - 1] if k else 0:part.ends[k]]
        return part[k]


class SubscriberTable:
    """Subscribers as parallel columns, in load order. Optional text is ``""`` when
    absent (``None`` on the ``Subscriber``). Device, port and tier are numbers
    (``device_of[row]`` into ``devices``, and so on). ``lines`` and ``files`` say where
    each row came from while loading."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.bindings: set[tuple[int, int]] = set()  # while loading: (device, port) numbers
        self.account = TextColumn()
        self.name = TextColumn()
        self.device_of: array[int] = array("i")
        self.devices: list[str] = []
        self._device_code: dict[str, int] = {}
        self.port_of: array[int] = array("i")
        self.ports: list[str] = []
        self._port_code: dict[str, int] = {}
        self.onu_id = TextColumn()
        self.modem_mac = TextColumn()
        self.cpe_mac = TextColumn()
        self.revenue: array[float] = array("d")
        self.units: array[int] = array("q")  # revenue in millionths (exact sums)
        self.tier: array[int] = array("i")
        self.tiers: list[str] = []
        self._tier_code: dict[str, int] = {}
        self.contract_end: array[int] = array("i")  # date ordinal; 0: none
        self.churn: array[float] = array("d")
        self.email = TextColumn()
        self.phone = TextColumn()
        self.consent = bytearray()  # bit 0: e-mail, bit 1: SMS
        self.plan: array[float] = array("d")  # plan speed, Mb/s; 0.0: none
        self.lines: array[int] = array("l")
        self.files: list[tuple[int, str]] = []  # (first row, file), in row order
        self.parts: list[PartIndex] = []  # parts already indexed (by another process)

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, s: Subscriber, file: str, line: int | None) -> None:
        self._file(file)
        self.ids.append(s.id)
        self.account.append(s.account or "")
        self.name.append(s.name or "")
        self.device_of.append(self.device_number(s.device))
        self.port_of.append(self.port_number(s.port))
        self.onu_id.append(s.onu_id or "")
        self.modem_mac.append(s.modem_mac or "")
        self.cpe_mac.append(s.cpe_mac or "")
        self.revenue.append(s.monthly_revenue)
        self.units.append(round(s.monthly_revenue * UNITS))
        self.tier.append(self.tier_number(s.sla_tier))
        self.bindings.add((self.device_of[-1], self.port_of[-1]))
        self.contract_end.append(s.contract_end.toordinal() if s.contract_end else 0)
        self.churn.append(s.churn_risk)
        self.email.append(s.email or "")
        self.phone.append(s.phone or "")
        self.consent.append(s.consent_email | s.consent_sms << 1)
        self.plan.append(s.plan_mbps or 0.0)
        self.lines.append(line or 0)

    def extend(self, chunk: _Chunk, file: str, lines: Sequence[int]) -> None:
        self._file(file)
        for name in _Chunk._fields:
            target = {"device": self.device_of, "port": self.port_of}.get(name)
            (target if target is not None else getattr(self, name)).extend(getattr(chunk, name))
        self.bindings.update(zip(chunk.device, chunk.port, strict=True))
        self.lines.extend(lines)

    def freeze(self) -> None:
        """No more rows (see TextColumn.freeze)."""
        for column in (self.account, self.name, self.onu_id, self.modem_mac, self.cpe_mac,
                       self.email, self.phone):
            column.freeze()

    def tier_number(self, name: str) -> int:
        """The number of an SLA tier in ``tiers`` (added if new); "" is residential."""
        name = name or "residential"
        code = self._tier_code.get(name)
        if code is None:
            code = self._tier_code[name] = len(self.tiers)
            self.tiers.append(sys.intern(name))
        return code

    def port_number(self, name: str) -> int:
        """The number of a port name in ``ports`` (added if new)."""
        if not name:
            raise ValueError("empty")
        code = self._port_code.get(name)
        if code is None:
            code = self._port_code[name] = len(self.ports)
            self.ports.append(sys.intern(name))
        return code

    def device_number(self, name: str) -> int:
        """The number of a device in ``devices`` (added if new)."""
        if not name:
            raise ValueError("empty")
        code = self._device_code.get(name)
        if code is None:
            code = self._device_code[name] = len(self.devices)
            self.devices.append(sys.intern(name))
        return code

    def binding(self, row: int) -> tuple[str, str]:
        """(device, port) of a row."""
        return self.devices[self.device_of[row]], self.ports[self.port_of[row]]

    def _file(self, file: str) -> None:
        if not self.files or self.files[-1][1] != file:
            self.files.append((len(self.ids), file))

    def where(self, row: int) -> tuple[str, int | None]:
        """The file and line a row was read from (while loading)."""
        file = next(f for start, f in reversed(self.files) if start <= row)
        return file, self.lines[row] or None

    def subscriber(self, row: int, sid: str) -> Subscriber:
        """The subscriber in ``row`` (whose id is ``sid``: ``ids`` may be dropped)."""
        end = self.contract_end[row]
        consent = self.consent[row]
        return Subscriber(
            sid, self.account[row] or None, self.name[row] or None,
            self.devices[self.device_of[row]], self.ports[self.port_of[row]],
            self.onu_id[row] or None,
            self.modem_mac[row] or None, self.cpe_mac[row] or None, self.revenue[row],
            self.tiers[self.tier[row]], dt.date.fromordinal(end) if end else None,
            self.churn[row],
            self.email[row] or None, self.phone[row] or None, bool(consent & 1),
            bool(consent & 2), self.plan[row] or None,
        )


class SubscriberRecord:
    """A subscriber in a table: the attributes of ``Subscriber``, each read from the
    columns when asked (cheap to hand out by the hundred thousand; ``subscriber()`` for
    the whole ``Subscriber``). Equal to the ``Subscriber`` with the same values."""

    __slots__ = ("_row", "_table", "id")

    def __init__(self, table: SubscriberTable, row: int, sid: str) -> None:
        self._table, self._row, self.id = table, row, sid

    @property
    def account(self) -> str | None:
        return self._table.account[self._row] or None

    @property
    def name(self) -> str | None:
        return self._table.name[self._row] or None

    @property
    def device(self) -> str:
        return self._table.devices[self._table.device_of[self._row]]

    @property
    def port(self) -> str:
        return self._table.ports[self._table.port_of[self._row]]

    @property
    def onu_id(self) -> str | None:
        return self._table.onu_id[self._row] or None

    @property
    def modem_mac(self) -> str | None:
        return self._table.modem_mac[self._row] or None

    @property
    def cpe_mac(self) -> str | None:
        return self._table.cpe_mac[self._row] or None

    @property
    def monthly_revenue(self) -> float:
        return self._table.revenue[self._row]

    @property
    def sla_tier(self) -> str:
        return self._table.tiers[self._table.tier[self._row]]

    @property
    def contract_end(self) -> dt.date | None:
        end = self._table.contract_end[self._row]
        return dt.date.fromordinal(end) if end else None

    @property
    def churn_risk(self) -> float:
        return self._table.churn[self._row]

    @property
    def email(self) -> str | None:
        return self._table.email[self._row] or None

    @property
    def phone(self) -> str | None:
        return self._table.phone[self._row] or None

    @property
    def consent_email(self) -> bool:
        return bool(self._table.consent[self._row] & 1)

    @property
    def consent_sms(self) -> bool:
        return bool(self._table.consent[self._row] & 2)

    @property
    def plan_mbps(self) -> float | None:
        return self._table.plan[self._row] or None

    def subscriber(self) -> Subscriber:
        return self._table.subscriber(self._row, self.id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SubscriberRecord):
            other = other.subscriber()
        return isinstance(other, Subscriber) and self.subscriber() == other

    def __hash__(self) -> int:
        return hash(self.subscriber())

    def __repr__(self) -> str:
        return repr(self.subscriber())


# --- fast conversion -------------------------------------------------------------------

# What the fast path accepts: a subset of what the pydantic model accepts, converting to
# the same values. Anything else goes to the model (which may still accept it).
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,15})?")  # < 10^12
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Contact's patterns; Python's \s covers all of Rust's (pydantic's regex engine) and more
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ()-]{5,20}")
_BOOLS = {"": 0, "true": 1, "false": 0, "1": 1, "0": 0}  # consent_email: bit 0
_BOOLS_SMS = {k: v << 1 for k, v in _BOOLS.items()}  # consent_sms: bit 1


def _decimal(v: str) -> float:
    if _DECIMAL.fullmatch(v) is None:
        raise ValueError(v)
    return float(v)


def _churn(v: str) -> float:
    x = _decimal(v) if v else 0.0
    if x > 1.0:
        raise ValueError(v)
    return x


def _plan(v: str) -> float:
    if not v:
        return 0.0
    x = _decimal(v)
    if not 0.0 < x <= 1e7:
        raise ValueError(v)
    return x


def _date(v: str) -> int:
    if not v:
        return 0
    if _DATE.fullmatch(v) is None:
        raise ValueError(v)
    return dt.date.fromisoformat(v).toordinal()


def _required(v: str) -> str:
    if not v:
        raise ValueError("empty")
    return sys.intern(v)


class _Converted:
    """A column's values converted, each distinct text once (up to ``limit`` of them
    remembered); None from ``column`` when one of them is not obviously valid."""

    def __init__(self, convert: Callable[[str], Any], limit: int = 1 << 17) -> None:
        self.convert = convert
        self.values: dict[str, Any] = {}
        self.limit = limit

    def column(self, col: Sequence[str]) -> list[Any] | None:
        values = self.values
        try:
            return list(map(values.__getitem__, col))
        except KeyError:  # texts not seen before: convert each new one once
            pass
        new = [text for text in dict.fromkeys(col) if text not in values]  # in order met
        if len(values) + len(new) <= self.limit:
            try:
                values.update(zip(new, map(self.convert, new), strict=True))
            except ValueError:
                return None
            return list(map(values.__getitem__, col))
        # more distinct texts than remembered: the new ones converted here, for this column
        try:
            here = dict(zip(new, map(self.convert, new), strict=True))
        except ValueError:
            return None
        for text in islice(here, max(0, self.limit - len(values))):
            values[text] = here[text]
        return list(map(here.get, col, map(values.get, col)))


class _Columns:
    """Converters for the columns of one file, with what they have seen."""

    def __init__(self, pos: Mapping[str, int], table: SubscriberTable) -> None:
        self.pos = pos
        self.device = _Converted(table.device_number, limit=1 << 30)
        self.port = _Converted(table.port_number, limit=1 << 30)
        self.tier = _Converted(table.tier_number, limit=1 << 30)
        self.revenue = _Converted(_decimal)
        self.churn = _Converted(_churn)
        self.end = _Converted(_date)
        self.plan = _Converted(_plan)

    def convert(self, cols: Sequence[Sequence[str]], n: int) -> _Chunk | None:
        """Columns of ``n`` rows converted, or None when a value is not obviously valid."""
        pos = self.pos
        empty = [""] * n

        def col(name: str) -> Sequence[str]:
            i = pos.get(name)
            return empty if i is None else cols[i]

        ids = cols[pos["id"]]
        if "" in ids:
            return None
        device = self.device.column(cols[pos["device"]])
        port = self.port.column(cols[pos["port"]])
        revenue = self.revenue.column(cols[pos["monthly_revenue"]])
        churn = self.churn.column(col("churn_risk"))
        ends = self.end.column(col("contract_end"))
        tier = self.tier.column(col("sla_tier"))
        plan: array[float] | None = array("d", [0.0]) * n  # most files have no plans
        if "plan_mbps" in pos:
            got = self.plan.column(cols[pos["plan_mbps"]])
            plan = None if got is None else array("d", got)
        if device is None or port is None or revenue is None or churn is None or \
                ends is None or tier is None or plan is None:
            return None
        email, phone = col("email"), col("phone")
        if not all(map(_EMAIL.fullmatch, filter(None, email))) or \
                not all(map(_PHONE.fullmatch, filter(None, phone))):
            return None
        try:
            consent = bytes(map(operator.or_, map(_BOOLS.__getitem__, col("consent_email")),
                                map(_BOOLS_SMS.__getitem__, col("consent_sms"))))
        except KeyError:
            return None
        return _Chunk(
            ids=ids, account=col("account"), name=col("name"), device=array("i", device),
            port=array("i", port), onu_id=col("onu_id"), modem_mac=col("modem_mac"),
            cpe_mac=col("cpe_mac"), revenue=array("d", revenue),
            units=array("q", map(round, map(operator.mul, revenue, repeat(float(UNITS))))),
            tier=array("i", tier),
            contract_end=array("i", ends), churn=array("d", churn), email=email,
            phone=phone, consent=consent, plan=plan,
        )
