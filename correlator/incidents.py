"""Incidents: one per root cause, with impact and a lifecycle (open → resolved)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from correlator.inventory import Inventory
from correlator.priority import PriorityComponent

IncidentState = Literal["open", "resolved", "merged"]
EventType = Literal["opened", "updated", "resolved", "merged", "mitigated",
                    "remediation_failed"]
IncidentKind = Literal[
    # outages, from up/down state and the topology
    "device_unreachable", "link_down", "flapping",
    # conditions raised by correlator.detection (the element works, but badly)
    "congestion", "errors", "optical_power", "latency", "packet_loss", "usage_change",
    "plan_saturation",
    # from state the correlator watches itself (correlator.conditions)
    "bgp_session_down", "ont_down", "repeated_failures",
]
# Whether the subscribers of an incident lost service or only get a worse one.
Service = Literal["down", "degraded"]
# Every kind of incident, in one place: policy matches, the API's filter and the CLI's
# --kind choices all come from here.
INCIDENT_KINDS: tuple[str, ...] = get_args(IncidentKind)


@dataclass(frozen=True, slots=True)
class Impact:
    """Who a fault hurts and what that costs per month."""

    subscribers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    revenue_by_tier: Mapping[str, float] = field(default_factory=dict)
    subscribers_by_tier: Mapping[str, int] = field(default_factory=dict)
    # affected subscribers whose contract ends within priority.renewal_window_days
    contracts_near_renewal: tuple[str, ...] = ()
    # affected subscribers hit by churn.repeat_threshold incidents or more (this one included)
    # within churn.window_days
    repeat_subscribers: tuple[str, ...] = ()
    # "down": the subscribers lost service (an outage); "degraded": it still works, badly
    # (congestion, errors, low light, latency...), so messages and priority can tell
    service: Service = "down"

    @property
    def subscriber_count(self) -> int:
        return len(self.subscribers)

    def same_scope(self, other: Impact) -> bool:
        """Same subscribers, devices and money: the judgement fields are left out, since
        they follow from the scope (and the clock)."""
        return (self.subscribers == other.subscribers and self.devices == other.devices
                and self.revenue_by_tier == other.revenue_by_tier
                and self.subscribers_by_tier == other.subscribers_by_tier)

    @property
    def revenue_at_risk(self) -> float:
        return round(sum(self.revenue_by_tier.values()), 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subscriber_count": self.subscriber_count,
            "revenue_at_risk": self.revenue_at_risk,
            "revenue_by_tier": dict(self.revenue_by_tier),
            "subscribers_by_tier": dict(self.subscribers_by_tier),
            "devices": list(self.devices),
            "subscribers": list(self.subscribers),
            "contracts_near_renewal": list(self.contracts_near_renewal),
            "repeat_subscribers": list(self.repeat_subscribers),
            "service": self.service,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Impact:
        return cls(
            subscribers=tuple(d.get("subscribers", ())),
            devices=tuple(d.get("devices", ())),
            revenue_by_tier=dict(d.get("revenue_by_tier", {})),
            subscribers_by_tier=dict(d.get("subscribers_by_tier", {})),
            contracts_near_renewal=tuple(d.get("contracts_near_renewal", ())),
            repeat_subscribers=tuple(d.get("repeat_subscribers", ())),
            service=d.get("service", "down"),
        )


def compute_impact(inv: Inventory, subscriber_ids: Iterable[str], devices: Iterable[str]) -> Impact:
    """Who and what losing ``subscriber_ids`` and ``devices`` hurts. The judgement fields
    (contracts near renewal, repeat subscribers) are filled in by ``correlator.judgement``."""
    # Inventory.totals: sorted ids and exact sums by tier from the inventory's columns
    # (revenue added in integer millionths, so the result does not depend on the order)
    totals = inv.totals(subscriber_ids)
    return Impact(
        subscribers=totals.subscribers,
        devices=tuple(sorted(devices)),
        revenue_by_tier=totals.revenue_by_tier,
        subscribers_by_tier=totals.subscribers_by_tier,
    )


def evidence_text(evidence: Mapping[str, object]) -> str:
    """A condition's numbers as ``name=value, ...`` (floats to 4 significant digits)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in evidence.items())


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ts: float
    text: str


@dataclass(frozen=True, slots=True)
class FlapInfo:
    """What a ``flapping`` incident has seen: ``transitions`` state changes between
    ``since`` and ``last_change``; ``state`` is the element's state after the last one."""

    transitions: int
    since: float
    last_change: float
    state: Literal["up", "down"]

    @property
    def window(self) -> float:
        return self.last_change - self.since


_TITLES: Mapping[str, str] = {
    "congestion": "congestion", "errors": "interface errors",
    "optical_power": "optical power out of range", "latency": "latency above baseline",
    "packet_loss": "packet loss", "usage_change": "usage change",
}


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    root: str
    kind: str  # one of INCIDENT_KINDS
    device: str
    port: str | None
    role: str
    site: str | None
    severity: str  # critical | major | minor
    state: IncidentState
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    merged_into: str | None = None
    revision: int = 1  # +1 on every change of scope; makes each update its own decision
    symptoms: tuple[str, ...] = ()
    impact: Impact = field(default_factory=Impact)
    timeline: tuple[TimelineEntry, ...] = ()
    # judgement: recomputed on every change and persisted with the incident
    priority: float = 0.0
    priority_breakdown: tuple[PriorityComponent, ...] = ()
    planned: bool = False  # inside a maintenance window or silence: no customer messages
    planned_by: tuple[str, ...] = ()  # the windows / silences that cover it
    planned_until: float | None = None  # when the last of them ends
    flap: FlapInfo | None = None  # kind == "flapping" only
    # conditions (every kind but the outages): the numbers that raised it, and one line
    # for humans from the detector ("ge-0/0/1 in 96% of 10 Gb/s for 5 min")
    evidence: Mapping[str, float | int | str] = field(default_factory=dict)
    summary: str = ""
    subscriber: str | None = None  # plan_saturation, repeated_failures: the one concerned
    mitigated_at: float | None = None  # a remediation fixed it (verified by re-polling)
    mitigated_by: str | None = None  # the remediation target that did
    # why a resolved incident was closed when nobody saw it recover: "inventory" = its
    # device left the inventory (no all-clear goes to customers for it)
    closed_by: str | None = None

    @property
    def title(self) -> str:
        kind = self.kind
        if kind == "device_unreachable":
            return f"{self.role} device {self.device} unreachable"
        if kind == "flapping":
            what = (f"{self.role} device {self.device}" if self.port is None
                    else f"link on {self.device} {self.port}")
            n = self.flap.transitions if self.flap else 0
            return f"{what} flapping ({n} state changes)"
        if kind == "link_down":
            return f"link down on {self.device} {self.port}"
        where = self.device if not self.port else f"{self.device} {self.port}"
        if kind == "plan_saturation":
            return f"subscriber {self.subscriber} using their whole plan ({where})"
        if kind == "repeated_failures":
            count = self.evidence.get("incidents", "")
            return f"subscriber {self.subscriber} hit by {count} incidents (repeated failures)"
        if kind == "bgp_session_down":
            return f"BGP session {self.port} on {self.device} down"
        if kind == "ont_down":
            cause = self.evidence.get("cause")
            return f"ONT {self.port} on {self.device} offline" + (f" ({cause})" if cause else "")
        return f"{_TITLES.get(kind, kind)} on {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "root": self.root, "kind": self.kind, "device": self.device,
            "port": self.port, "role": self.role, "site": self.site,
            "severity": self.severity, "state": self.state, "opened_at": self.opened_at,
            "updated_at": self.updated_at, "resolved_at": self.resolved_at,
            "merged_into": self.merged_into, "revision": self.revision,
            "symptoms": list(self.symptoms),
            "impact": self.impact.to_dict(),
            "timeline": [{"ts": t.ts, "text": t.text} for t in self.timeline],
            "priority": self.priority,
            "priority_breakdown": [c.to_dict() for c in self.priority_breakdown],
            "planned": self.planned,
            "planned_by": list(self.planned_by),
            "planned_until": self.planned_until,
            "flap": None if self.flap is None else {
                "transitions": self.flap.transitions, "since": self.flap.since,
                "last_change": self.flap.last_change, "state": self.flap.state,
                "window": self.flap.window,
            },
            "title": self.title,
            "evidence": dict(self.evidence),
            "summary": self.summary,
            "subscriber": self.subscriber,
            "mitigated_at": self.mitigated_at,
            "mitigated_by": self.mitigated_by,
            "closed_by": self.closed_by,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        return cls(
            id=d["id"], root=d["root"], kind=d["kind"], device=d["device"], port=d.get("port"),
            role=d.get("role", "other"), site=d.get("site"), severity=d["severity"],
            state=d["state"], opened_at=d["opened_at"], updated_at=d["updated_at"],
            resolved_at=d.get("resolved_at"), merged_into=d.get("merged_into"),
            revision=d.get("revision", 1), symptoms=tuple(d.get("symptoms", ())),
            impact=Impact.from_dict(d.get("impact", {})),
            timeline=tuple(TimelineEntry(t["ts"], t["text"]) for t in d.get("timeline", ())),
            priority=d.get("priority", 0.0),
            priority_breakdown=tuple(
                PriorityComponent.from_dict(c) for c in d.get("priority_breakdown", ())
            ),
            planned=d.get("planned", False),
            planned_by=tuple(d.get("planned_by", ())),
            planned_until=d.get("planned_until"),
            flap=None if not d.get("flap") else FlapInfo(
                d["flap"]["transitions"], d["flap"]["since"], d["flap"]["last_change"],
                d["flap"]["state"],
            ),
            evidence=dict(d.get("evidence", {})),
            summary=d.get("summary", ""),
            subscriber=d.get("subscriber"),
            mitigated_at=d.get("mitigated_at"),
            mitigated_by=d.get("mitigated_by"),
            closed_by=d.get("closed_by"),
        )


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """What changed about an incident; the actions package decides what to do about it."""

    type: EventType
    incident: Incident
    ts: float
