"""NetBox objects (as its REST API returns them) → netreflex inventory data. No I/O.

``collector.netbox`` reads devices, cables and tenants from NetBox and hands their JSON
here; ``map_netbox`` returns the inventory devices (with parent links), the subscriber
rows, every object it skipped and why, and every problem (one per NetBox object, naming
it and what to fix). The conventions, which the README describes:

- **Roles.** A device's NetBox role slug maps to a netreflex role through ``roles``
  (defaults: the netreflex role names themselves, ``splitter`` and ``patch-panel`` →
  passive); a slug in ``skip_roles`` is left out; any other slug is a problem.
- **Links.** A cable between data ports (interfaces, front and rear ports) of two
  imported devices is a parent link, pointing toward the core by rank: core, then
  aggregation, access, other, cpe. A passive element ranks just below the closest-to-core
  active device it is cabled to, directly or through other passive elements (a splitter
  under an OLT port, a cascade of splitters, a patch panel between core and
  aggregation); a CPE is always the child. Cables between two devices of the same rank
  (a core ring, a peer link) have no direction and are skipped.
- **Subscribers.** A tenant is a subscriber bound through its CPE device (a device of
  role cpe whose tenant it is): the binding is the port of the first active device
  above the CPE, through any passive elements (``olt1 pon0/1`` for an ONT behind
  splitters). Subscriber attributes are tenant custom fields (names in
  ``custom_fields``). A tenant with several CPEs is one subscriber per CPE
  (``<id>/<cpe name>``), its revenue split evenly. A tenant without a bound CPE is
  skipped.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from correlator.inventory import PASSIVE, ROLES
from correlator.subscribers import SubscriberModel
from probes.source import Strict, short

__all__ = ["CustomFields", "Mapped", "NetboxIssue", "NetboxMapping", "map_netbox"]

DEFAULT_ROLES = {**{r: r for r in ROLES}, "splitter": PASSIVE, "patch-panel": PASSIVE}
RANK = {"core": 0, "aggregation": 1, "access": 2, "other": 3, "cpe": 4}
UNSEEDED = 3.5  # a passive element cabled to no active device (but CPEs): above the CPEs
DATA_PORTS = ("dcim.interface", "dcim.frontport", "dcim.rearport")


def _role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"a netreflex role is one of {', '.join(ROLES)}")
    return value


class CustomFields(Strict):
    """The NetBox tenant custom field that holds each subscriber attribute."""

    id: str = Field(default="subscriber_id",
                    description="the subscriber id (empty: the tenant's slug)")
    account: str = "account"
    sla_tier: str = "sla_tier"
    monthly_revenue: str = "monthly_revenue"
    contract_end: str = "contract_end"
    churn_risk: str = "churn_risk"
    email: str = "email"
    phone: str = "phone"
    consent_email: str = "consent_email"
    consent_sms: str = "consent_sms"


class NetboxMapping(Strict):
    """How NetBox's objects become netreflex's (the ``--mapping`` file)."""

    roles: dict[str, Annotated[str, AfterValidator(_role)]] = Field(
        default_factory=dict, description="NetBox device role slug -> netreflex role, "
        "over the defaults (netreflex's role names; splitter, patch-panel -> passive)")
    skip_roles: list[str] = Field(default_factory=list,
                                  description="device role slugs not to import")
    device_statuses: list[str] = Field(
        default_factory=lambda: ["active", "offline", "failed", "staged"],
        description="device statuses to import; others (planned, inventory, "
                    "decommissioning) are skipped")
    custom_fields: CustomFields = Field(default_factory=CustomFields)

    def role_of(self, slug: str) -> str | None:
        role = self.roles.get(slug, DEFAULT_ROLES.get(slug))
        return role if role in ROLES else None



@dataclass(frozen=True, slots=True)
class NetboxIssue:
    """A NetBox object that is wrong (or skipped), and what to do about it."""

    kind: str  # NetBox's object type, e.g. dcim.device
    id: int | None
    name: str
    message: str

    def __str__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"{self.kind} #{self.id}{name}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "id": self.id, "name": self.name, "message": self.message}


@dataclass
class Mapped:
    """The inventory data, ready to write, and what did not make it."""

    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # inventory.yaml
    subscribers: list[dict[str, Any]] = field(default_factory=list)  # CSV rows
    links: int = 0
    problems: list[NetboxIssue] = field(default_factory=list)
    skipped: list[NetboxIssue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Dev:
    id: int
    name: str
    role: str
    tenant: int | None


def _id(obj: Mapping[str, Any]) -> int:
    value = obj.get("id")
    return value if isinstance(value, int) else 0


def _slug(obj: Any) -> str | None:
    return obj.get("slug") if isinstance(obj, dict) else None


def _value(obj: Any) -> Any:
    """A NetBox choice ({value, label}) or a plain value."""
    return obj.get("value") if isinstance(obj, dict) else obj


def map_netbox(devices: Iterable[Mapping[str, Any]], cables: Iterable[Mapping[str, Any]],
               tenants: Iterable[Mapping[str, Any]], mapping: NetboxMapping) -> Mapped:
    out = Mapped()
    found = _devices(devices, mapping, out)
    edges = _cables(cables, found, out)
    ranks = _ranks(found, edges)
    parents: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for (a, pa), (b, pb), cable in edges:
        if ranks[a] == ranks[b]:
            out.skipped.append(NetboxIssue(
                "dcim.cable", _id(cable), _label(cable),
                f"links two {found[a].role} devices ({found[a].name}, {found[b].name}): "
                "equal rank, no direction toward the core"))
            continue
        (up, up_port), (down, down_port) = sorted(((a, pa), (b, pb)), key=lambda e: ranks[e[0]])
        if (up, up_port, down_port) not in parents[down]:
            parents[down].append((up, up_port, down_port))
    for dev in found.values():
        entry = out.devices[dev.name]
        links = sorted(parents.get(dev.id, ()), key=lambda p: (found[p[0]].name, p[1], p[2]))
        if links:
            entry["parents"] = [{"device": found[up].name, "port": port, "local_port": local}
                                for up, port, local in links]
            out.links += len(links)
    _subscribers(tenants, found, parents, mapping, out)
    return out


def _devices(devices: Iterable[Mapping[str, Any]], mapping: NetboxMapping,
             out: Mapped) -> dict[int, _Dev]:
    found: dict[int, _Dev] = {}
    by_name: dict[str, int] = {}
    for d in devices:
        did, name = _id(d), d.get("name")
        label = name or str(d.get("display") or "")
        status = _value(d.get("status")) or "active"
        slug = _slug(d.get("role") or d.get("device_role"))  # NetBox 4.x | 3.x
        if not name:
            out.problems.append(NetboxIssue("dcim.device", did, label, "has no name; name it "
                                            "in NetBox (netreflex knows devices by name)"))
            continue
        if status not in mapping.device_statuses:
            out.skipped.append(NetboxIssue("dcim.device", did, name, f"status {status} (not "
                                           "in device_statuses)"))
            continue
        if slug is None:
            out.problems.append(NetboxIssue("dcim.device", did, name, "has no role; give it "
                                            "one in NetBox"))
            continue
        if slug in mapping.skip_roles:
            out.skipped.append(NetboxIssue("dcim.device", did, name, f"role {slug} is in "
                                           "skip_roles"))
            continue
        role = mapping.role_of(slug)
        if role is None:
            out.problems.append(NetboxIssue(
                "dcim.device", did, name, f"role {slug!r} has no netreflex role; map it in "
                f"the mapping file (roles: {{{slug}: core|aggregation|access|cpe|passive|"
                "other}) or add it to skip_roles"))
            continue
        if name in by_name:
            out.problems.append(NetboxIssue(
                "dcim.device", did, name, f"duplicate name (also device #{by_name[name]}); "
                "netreflex knows devices by name: rename one in NetBox"))
            continue
        by_name[name] = did
        tenant = d.get("tenant")
        found[did] = _Dev(did, name, role, _id(tenant) if isinstance(tenant, dict) else None)
        entry: dict[str, Any] = {"role": role}
        if site := _slug(d.get("site")):
            entry["site"] = site
        description = f"netbox device #{did}"
        ip = d.get("primary_ip")
        if isinstance(ip, dict) and ip.get("address"):
            description += f", primary IP {str(ip['address']).split('/')[0]}"
        entry["description"] = description
        out.devices[name] = entry
    out.devices = dict(sorted(out.devices.items()))
    return found


_End = tuple[int, str]  # device id, port name
_Edge = tuple[_End, _End, Mapping[str, Any]]


def _label(cable: Mapping[str, Any]) -> str:
    return str(cable.get("label") or "")


def _cables(cables: Iterable[Mapping[str, Any]], found: Mapping[int, _Dev],
            out: Mapped) -> list[_Edge]:
    skipped = {i.id for i in out.skipped if i.kind == "dcim.device"}
    edges: list[_Edge] = []
    for c in cables:
        cid, label = _id(c), _label(c)
        status = _value(c.get("status")) or "connected"
        if status != "connected":
            out.skipped.append(NetboxIssue("dcim.cable", cid, label, f"status {status}"))
            continue
        sides: list[list[_End]] = []
        why: str | None = None
        bad = False
        for side in ("a_terminations", "b_terminations"):
            ends: list[_End] = []
            for t in c.get(side) or ():
                kind, obj = t.get("object_type"), t.get("object") or {}
                dev = obj.get("device") if isinstance(obj, dict) else None
                if kind not in DATA_PORTS or not isinstance(dev, dict):
                    why = why or f"{kind} is not a data port between devices"
                    continue
                did = _id(dev)
                if did in skipped:
                    why = why or f"device {dev.get('name')} is skipped"
                elif did not in found:
                    out.problems.append(NetboxIssue(
                        "dcim.cable", cid, label, f"ends on device #{did} "
                        f"{dev.get('name')!r}, which is not imported (another site, or a "
                        "device with a problem above); include its site or fix the cable"))
                    bad = True
                else:
                    ends.append((did, str(obj.get("name"))))
            sides.append(ends)
        if bad:
            continue
        pairs = [(a, b) for a in sides[0] for b in sides[1] if a[0] != b[0]]
        if not pairs:
            out.skipped.append(NetboxIssue("dcim.cable", cid, label,
                                           why or "does not join two devices"))
        edges.extend((a, b, c) for a, b in pairs)
    return edges


_Rank = tuple[float, int]  # (rank of the closest-to-core active device, passive hops)


def _ranks(found: Mapping[int, _Dev], edges: list[_Edge]) -> dict[int, _Rank]:
    """Active devices rank by role; a passive one by the best active device it reaches
    through passive ones only (not a CPE), one hop further for each."""
    ranks: dict[int, _Rank] = {d.id: (RANK[d.role], 0) for d in found.values()
                               if d.role != PASSIVE}
    near: dict[int, set[int]] = defaultdict(set)
    for (a, _), (b, _), _ in edges:
        near[a].add(b)
        near[b].add(a)
    heap: list[tuple[_Rank, int]] = []
    for d in found.values():
        if d.role == PASSIVE:
            seeds = [ranks[n][0] for n in near[d.id]
                     if found[n].role not in (PASSIVE, "cpe")]
            heap.append(((min(seeds), 1) if seeds else (UNSEEDED, 0), d.id))
    heapq.heapify(heap)
    while heap:
        rank, did = heapq.heappop(heap)
        if did in ranks:
            continue
        ranks[did] = rank
        for n in near[did]:
            if n not in ranks and found[n].role == PASSIVE:
                heapq.heappush(heap, ((rank[0], rank[1] + 1), n))
    return ranks


def _subscribers(tenants: Iterable[Mapping[str, Any]], found: Mapping[int, _Dev],
                 parents: Mapping[int, list[tuple[int, str, str]]], mapping: NetboxMapping,
                 out: Mapped) -> None:
    cpes: dict[int, list[_Dev]] = defaultdict(list)
    for dev in sorted(found.values(), key=lambda d: d.name):
        if dev.role == "cpe" and dev.tenant is not None:
            cpes[dev.tenant].append(dev)
    fields = mapping.custom_fields
    ids: dict[str, int] = {}
    for t in tenants:
        tid, name = _id(t), str(t.get("name") or t.get("slug") or "")
        mine = cpes.get(tid, [])
        where = [(cpe, b) for cpe in mine if (b := _binding(cpe.id, found, parents))]
        if not where:
            why = "no imported CPE device (role cpe) has this tenant (tenants are bound " \
                "through their CPE)" if not mine else \
                f"its CPE {mine[0].name} is not cabled to the network"
            out.skipped.append(NetboxIssue("tenancy.tenant", tid, name, why))
            continue
        custom = t.get("custom_fields") or {}
        sid = custom.get(fields.id) or t.get("slug")
        row: dict[str, Any] = {"id": sid, "name": name}
        for attr in ("account", "sla_tier", "monthly_revenue", "contract_end", "churn_risk"):
            value = custom.get(getattr(fields, attr))
            if value is not None and value != "":
                row[attr] = value
        row.setdefault("account", t.get("slug"))
        row["contact"] = {k: custom[getattr(fields, k)] for k in ("email", "phone")
                          if custom.get(getattr(fields, k)) not in (None, "")}
        row["consent"] = {k: custom[getattr(fields, f"consent_{k}")] for k in ("email", "sms")
                          if custom.get(getattr(fields, f"consent_{k}")) is not None}
        device, port = where[0][1]
        try:
            model = SubscriberModel.model_validate({**row, "device": device, "port": port})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = [str(part) for part in err["loc"]]
                attr = f"consent_{loc[-1]}" if loc[0] == "consent" else loc[-1]
                cf = getattr(fields, attr, attr)
                what = ("empty; set it on the tenant (0 if it pays nothing)" if err["type"] ==
                        "missing" else f"{err['msg']} (got {short(err.get('input'))})")
                out.problems.append(NetboxIssue("tenancy.tenant", tid, name,
                                                f"custom field {cf}: {what}"))
            continue
        if model.id in ids:
            out.problems.append(NetboxIssue(
                "tenancy.tenant", tid, name, f"subscriber id {model.id!r} (custom field "
                f"{fields.id}, or the slug) is also tenant #{ids[model.id]}'s; make it unique"))
            continue
        ids[model.id] = tid
        out.skipped.extend(
            NetboxIssue("dcim.device", cpe.id, cpe.name, f"CPE of tenant {name} is not "
                        "cabled to the network (its other CPEs are bound)")
            for cpe in mine if cpe not in {c for c, _ in where})
        share = model.monthly_revenue / len(where)
        for cpe, (device, port) in where:
            out.subscribers.append({
                **model.model_dump(exclude={"contact", "consent"}),
                "id": model.id if len(where) == 1 else f"{model.id}/{cpe.name}",
                "device": device, "port": port, "monthly_revenue": round(share, 6),
                "email": model.contact.email, "phone": model.contact.phone,
                "consent_email": model.consent.email, "consent_sms": model.consent.sms,
            })


def _binding(cpe: int, found: Mapping[int, _Dev],
             parents: Mapping[int, list[tuple[int, str, str]]]) -> tuple[str, str] | None:
    """The (device, port) of the first active device above a CPE, through passive ones."""
    todo, seen = [cpe], {cpe}
    while todo:
        for up, port, _ in parents.get(todo.pop(0), ()):
            if found[up].role != PASSIVE:
                return found[up].name, port
            if up not in seen:
                seen.add(up)
                todo.append(up)
    return None
