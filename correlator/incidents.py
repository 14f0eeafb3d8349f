"""Incidents: one per root cause, with impact and a lifecycle (open → resolved)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from correlator.inventory import Inventory

IncidentState = Literal["open", "resolved", "merged"]
EventType = Literal["opened", "updated", "resolved", "merged"]


@dataclass(frozen=True, slots=True)
class Impact:
    """Who a fault hurts and what that costs per month."""

    subscribers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    revenue_by_tier: Mapping[str, float] = field(default_factory=dict)
    subscribers_by_tier: Mapping[str, int] = field(default_factory=dict)

    @property
    def subscriber_count(self) -> int:
        return len(self.subscribers)

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
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Impact:
        return cls(
            subscribers=tuple(d.get("subscribers", ())),
            devices=tuple(d.get("devices", ())),
            revenue_by_tier=dict(d.get("revenue_by_tier", {})),
            subscribers_by_tier=dict(d.get("subscribers_by_tier", {})),
        )


def compute_impact(inv: Inventory, subscriber_ids: Iterable[str], devices: Iterable[str]) -> Impact:
    revenue: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    ids = sorted(set(subscriber_ids))
    for sid in ids:
        sub = inv.subscribers[sid]
        revenue[sub.sla_tier] += sub.monthly_revenue
        count[sub.sla_tier] += 1
    return Impact(
        subscribers=tuple(ids),
        devices=tuple(sorted(devices)),
        revenue_by_tier={k: round(v, 2) for k, v in sorted(revenue.items())},
        subscribers_by_tier=dict(sorted(count.items())),
    )


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ts: float
    text: str


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    root: str
    kind: str  # device_unreachable | link_down
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

    @property
    def title(self) -> str:
        if self.kind == "device_unreachable":
            return f"{self.role} device {self.device} unreachable"
        return f"link down on {self.device} {self.port}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["impact"] = self.impact.to_dict()
        d["title"] = self.title
        d["symptoms"] = list(self.symptoms)
        d["timeline"] = [{"ts": t.ts, "text": t.text} for t in self.timeline]
        return d

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
        )


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """What changed about an incident; the actions package decides what to do about it."""

    type: EventType
    incident: Incident
    ts: float
