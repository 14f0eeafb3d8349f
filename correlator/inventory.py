"""The inventory: devices, how they hang together, and the subscribers behind each port.

Read from YAML (devices, topology, subscribers) and CSV (subscriber bindings at scale).
Every problem is reported with its file and line; nothing is half-loaded.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError

from probes.source import Located, Problem, SourceError, Strict, load_yaml, short

ROLES = ("core", "aggregation", "access", "cpe", "other")


def _parent(value: Any) -> Any:
    return {"device": value} if isinstance(value, str) else value


class ParentLink(Strict):
    """An upstream link: the parent device and, optionally, the ports at either end."""

    device: str
    port: str | None = Field(default=None, description="the parent's port facing this device")
    local_port: str | None = Field(default=None, description="this device's uplink port")


class DeviceModel(Strict):
    role: str = Field(default="access", pattern="^(" + "|".join(ROLES) + ")$")
    site: str | None = None
    description: str | None = None
    parents: list[Annotated[ParentLink, BeforeValidator(_parent)]] = Field(default_factory=list)
    ports: list[str] | None = Field(
        default=None, description="when given, subscriber bindings must name one of these"
    )


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
    monthly_revenue: float = Field(ge=0)
    sla_tier: str = "residential"
    contract_end: dt.date | None = None
    churn_risk: float = Field(default=0.0, ge=0, le=1)
    contact: Contact = Field(default_factory=Contact)
    consent: Consent = Field(default_factory=Consent)


class InventoryFile(Strict):
    devices: dict[str, DeviceModel] = Field(default_factory=dict)
    subscribers: list[SubscriberModel] = Field(default_factory=list)
    subscriber_files: list[str] = Field(
        default_factory=list, description="CSV files, relative to this file"
    )


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    role: str
    site: str | None
    parents: tuple[ParentLink, ...]
    ports: frozenset[str] | None


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


class Inventory:
    """Devices, their upstream links and subscribers, indexed for impact queries."""

    def __init__(self, devices: Mapping[str, Device], subscribers: Sequence[Subscriber]) -> None:
        self.devices = dict(devices)
        self.subscribers = {s.id: s for s in subscribers}
        self.children: dict[str, list[tuple[str, ParentLink]]] = defaultdict(list)
        for dev in self.devices.values():
            for link in dev.parents:
                self.children[link.device].append((dev.id, link))
        by_port: dict[tuple[str, str], list[str]] = defaultdict(list)
        by_device: dict[str, list[str]] = defaultdict(list)
        for sub in subscribers:
            by_port[(sub.device, sub.port)].append(sub.id)
            by_device[sub.device].append(sub.id)
        self.by_port = dict(by_port)
        self.by_device = dict(by_device)
        # (device, port) -> the devices at the far end of the link on that port, to tell
        # an uplink or downlink port from a customer port
        self.edge_ports: dict[tuple[str, str], list[str]] = defaultdict(list)
        for dev in self.devices.values():
            for link in dev.parents:
                if link.port:
                    self.edge_ports[(link.device, link.port)].append(dev.id)
                if link.local_port:
                    self.edge_ports[(dev.id, link.local_port)].append(link.device)

    def subscribers_on(self, device: str, port: str | None = None) -> list[str]:
        if port is None:
            return self.by_device.get(device, [])
        return self.by_port.get((device, port), [])

    @property
    def roots(self) -> list[str]:
        return [d.id for d in self.devices.values() if not d.parents]


# --- loading ---------------------------------------------------------------------------

CSV_COLUMNS = (
    "id", "account", "name", "device", "port", "onu_id", "modem_mac", "cpe_mac",
    "monthly_revenue", "sla_tier", "contract_end", "churn_risk", "email", "phone",
    "consent_email", "consent_sms",
)
_CSV_REQUIRED = ("id", "device", "port", "monthly_revenue")


def load_inventory(paths: Iterable[str | os.PathLike[str]]) -> Inventory:
    """Load and check inventory files; any problem in any file → SourceError listing all."""
    from probes.source import validation_problems

    problems: list[Problem] = []
    devices: dict[str, tuple[Device, Located, tuple[str | int, ...]]] = {}
    subs: list[tuple[Subscriber, str, int | None]] = []
    for path in paths:
        try:
            src = load_yaml(path) if not str(path).endswith(".csv") else None
        except SourceError as exc:
            problems.extend(exc.problems)
            continue
        if src is None:
            problems.extend(_load_csv(Path(path), subs))
            continue
        try:
            model = InventoryFile.model_validate(src.data)
        except ValidationError as exc:
            problems.extend(validation_problems(src, exc))
            continue
        for dev_id, dm in model.devices.items():
            if dev_id in devices:
                other = devices[dev_id][1]
                problems.append(src.problem(("devices", dev_id),
                                            f"duplicate device id (also in {other.file})"))
                continue
            devices[dev_id] = (
                Device(dev_id, dm.role, dm.site, tuple(dm.parents),
                       frozenset(dm.ports) if dm.ports is not None else None),
                src, ("devices", dev_id),
            )
        for i, sm in enumerate(model.subscribers):
            subs.append((_subscriber(sm), src.file, src.line_of(("subscribers", i))))
        for rel in model.subscriber_files:
            csv_path = Path(src.file).parent / rel
            problems.extend(_load_csv(csv_path, subs))

    # references and cycles
    for dev, src, loc in devices.values():
        for i, link in enumerate(dev.parents):
            if link.device not in devices:
                problems.append(src.problem((*loc, "parents", i),
                                            "unknown parent device (not in the inventory)",
                                            link.device))
            elif link.device == dev.id:
                problems.append(src.problem((*loc, "parents", i),
                                            "a device cannot be its own parent"))
    problems.extend(_cycles(devices))
    seen: dict[str, tuple[str, int | None]] = {}
    for sub, file, line in subs:
        if sub.id in seen:
            f0, l0 = seen[sub.id]
            problems.append(Problem(file, line, f"subscriber {sub.id}",
                                    f"duplicate subscriber id (first at {f0}:{l0})"))
            continue
        seen[sub.id] = (file, line)
        dev_entry = devices.get(sub.device)
        if dev_entry is None:
            problems.append(Problem(file, line, f"subscriber {sub.id}.device",
                                    "unknown device (not in the inventory)", short(sub.device)))
        elif dev_entry[0].ports is not None and sub.port not in dev_entry[0].ports:
            problems.append(Problem(file, line, f"subscriber {sub.id}.port",
                                    f"device {sub.device} has no such port (listed ports: "
                                    f"{', '.join(sorted(dev_entry[0].ports)[:5])}...)",
                                    short(sub.port)))
    if problems:
        raise SourceError(problems)
    return Inventory({k: v[0] for k, v in devices.items()}, [s for s, _, _ in subs])


def _subscriber(m: SubscriberModel) -> Subscriber:
    return Subscriber(
        id=m.id, account=m.account, name=m.name, device=m.device, port=m.port,
        onu_id=m.onu_id, modem_mac=m.modem_mac, cpe_mac=m.cpe_mac,
        monthly_revenue=m.monthly_revenue, sla_tier=m.sla_tier, contract_end=m.contract_end,
        churn_risk=m.churn_risk, email=m.contact.email, phone=m.contact.phone,
        consent_email=m.consent.email, consent_sms=m.consent.sms,
    )


def _load_csv(path: Path, out: list[tuple[Subscriber, str, int | None]]) -> list[Problem]:
    file = str(path)
    problems: list[Problem] = []
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        return [Problem(file, None, "", f"cannot read: {exc.strerror}")]
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        missing = [c for c in _CSV_REQUIRED if c not in header]
        if unknown or missing:
            what = []
            if unknown:
                what.append(f"unknown column(s) {', '.join(unknown)}")
            if missing:
                what.append(f"missing column(s) {', '.join(missing)}")
            return [Problem(file, 1, "header", "; ".join(what) +
                            f" (columns are: {', '.join(CSV_COLUMNS)})")]
        for row in reader:
            line = reader.line_num
            data: dict[str, Any] = {
                k: v for k, v in row.items() if k in CSV_COLUMNS and v not in ("", None)
            }
            if None in row:
                problems.append(Problem(file, line, "", "more fields than header columns"))
                continue
            contact = {k: data.pop(k) for k in ("email", "phone") if k in data}
            consent = {k[len("consent_"):]: data.pop(k) for k in ("consent_email", "consent_sms")
                       if k in data}
            data["contact"] = contact
            data["consent"] = consent
            try:
                sm = SubscriberModel.model_validate(data)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    loc = ".".join(str(p) for p in err["loc"])
                    col = loc.replace("contact.", "").replace("consent.", "consent_")
                    msg = "required column is empty" if err["type"] == "missing" else err["msg"]
                    got = None if err["type"] == "missing" else short(err.get("input"))
                    problems.append(Problem(file, line, col, msg, got))
                continue
            out.append((_subscriber(sm), file, line))
    return problems


def _cycles(devices: Mapping[str, tuple[Device, Located, tuple[str | int, ...]]]) -> list[Problem]:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(devices, WHITE)
    problems: list[Problem] = []
    for start in devices:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        colour[start] = GREY
        path.append(start)
        while stack:
            node, i = stack.pop()
            parents = [p.device for p in devices[node][0].parents if p.device in devices]
            if i < len(parents):
                stack.append((node, i + 1))
                nxt = parents[i]
                if colour[nxt] == GREY:
                    cycle = [*path[path.index(nxt):], nxt]
                    _, src, loc = devices[node]
                    problems.append(src.problem((*loc, "parents"),
                                                "parent links form a cycle: " + " -> ".join(cycle)))
                elif colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    path.append(nxt)
                    stack.append((nxt, 0))
            else:
                colour[node] = BLACK
                path.pop()
    return problems
