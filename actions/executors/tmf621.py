"""TM Forum TMF621 (Trouble Ticket, v4) request bodies: pure functions, no I/O.

Shapes follow the TMF621 v4 ``TroubleTicket_Create`` / ``TroubleTicket_Update`` models:
``description``, ``severity`` and ``ticketType`` are mandatory on create; ``relatedEntity``
items carry ``id``, ``role`` and ``@referredType``; ``note`` items ``text`` (and here
``id``, ``author`` and ``date``). Updates are JSON merge patches
(``application/merge-patch+json``), in which an array replaces the old one -- so a new
note is appended to the notes read back from the ticket, never sent alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from actions.targets import DispatchTarget, PartyRef, TicketTarget, Tmf621Base, priority_label
from actions.templates import incident_variables, iso, render

MERGE_PATCH = "application/merge-patch+json"
AUTHOR = "netreflex"
MAX_SERVICES = 100  # affected-service entries on a work order
TERMINAL = frozenset({"closed", "cancelled"})  # not updated any more
DONE = TERMINAL | {"resolved"}  # not resolved again


def _incident(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    inc: Mapping[str, Any] = payload.get("incident") or {}
    return inc


def entity(id_: str, role: str, referred_type: str, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": id_, "role": role, "@referredType": referred_type}
    if name:
        out["name"] = name
    return out


def party(p: PartyRef) -> dict[str, Any]:
    out: dict[str, Any] = {"id": p.id, "role": p.role, "@referredType": p.referred_type}
    if p.name:
        out["name"] = p.name
    return out


def related_entities(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The incident itself, its root-cause device and every affected device."""
    inc = _incident(payload)
    out = [entity(str(inc.get("id", "")), "incident", "Incident", inc.get("title"))]
    root = inc.get("device")
    devices = [root] if root else []
    devices += [d for d in (inc.get("impact") or {}).get("devices", []) if d != root]
    for i, dev in enumerate(devices):
        out.append(entity(str(dev), "rootCauseResource" if i == 0 and root else
                          "affectedResource", "Resource", str(dev)))
    return out


def note(text: str, key: str, ts: float) -> dict[str, Any]:
    """A note whose ``id`` is the action key, so a replayed update can see it is there."""
    return {"id": key, "author": AUTHOR, "date": iso(ts), "text": text}


def _common(target: Tmf621Base, payload: Mapping[str, Any],
            variables: Mapping[str, object]) -> dict[str, Any]:
    inc = _incident(payload)
    sev = str(inc.get("severity", "minor"))
    score = variables["incident.priority"]
    assert isinstance(score, float)
    return {
        "severity": next((s for k, s in target.severity.items() if k == sev), sev),
        "priority": priority_label(target.priority, score),
    }


def create_body(target: TicketTarget | DispatchTarget, payload: Mapping[str, Any], key: str,
                ts: float) -> dict[str, Any]:
    """POST /troubleTicket for a ticket or a work order."""
    v = incident_variables(payload)
    inc = _incident(payload)
    body: dict[str, Any] = {
        "@type": "TroubleTicket",
        "name": render(target.name, v),
        "description": render(target.description, v),
        "ticketType": target.ticket_type,
        "externalId": str(inc.get("id", "")),
        **_common(target, payload, v),
        "relatedEntity": related_entities(payload),
        "relatedParty": [party(p) for p in target.related_party],
        "note": [note(render(target.note, v), key, ts)],
    }
    if isinstance(target, DispatchTarget):
        body["relatedEntity"] += dispatch_entities(payload)
    return body


def dispatch_entities(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A work order's site and the services out of order (one per affected subscriber,
    at most ``MAX_SERVICES``)."""
    inc = _incident(payload)
    out: list[dict[str, Any]] = []
    if inc.get("site"):
        out.append(entity(str(inc["site"]), "site", "GeographicSite", str(inc["site"])))
    subs = (inc.get("impact") or {}).get("subscribers", [])
    out += [entity(str(s), "affectedService", "Service", f"access service of {s}")
            for s in subs[:MAX_SERVICES]]
    return out


def _with_note(existing: Sequence[Any], new: dict[str, Any]) -> list[Any]:
    notes = [n for n in existing if isinstance(n, dict)]
    if any(n.get("id") == new["id"] for n in notes):
        return notes  # this action's note is already there (a replay)
    return [*notes, new]


def update_patch(target: TicketTarget, payload: Mapping[str, Any], key: str, ts: float,
                 existing_notes: Sequence[Any]) -> dict[str, Any]:
    """PATCH /troubleTicket/{id} on a change of scope: new impact, priority, note."""
    v = incident_variables(payload)
    return {
        "description": render(target.description, v),
        **_common(target, payload, v),
        "relatedEntity": related_entities(payload),
        "note": _with_note(existing_notes, note(render(target.note, v), key, ts)),
    }


def resolve_patch(target: TicketTarget, payload: Mapping[str, Any], key: str, ts: float,
                  existing_notes: Sequence[Any]) -> dict[str, Any]:
    """PATCH /troubleTicket/{id} when the incident is resolved (or merged into another)."""
    v = incident_variables(payload)
    inc = _incident(payload)
    reason = (f"merged into {inc['merged_into']}" if inc.get("merged_into")
              else "incident resolved")
    when = inc.get("resolved_at") or payload.get("event_ts") or ts
    return {
        "status": "resolved",
        "statusChangeReason": reason,
        "resolutionDate": iso(when),
        "note": _with_note(existing_notes, note(render(target.resolution_note, v), key, ts)),
    }
