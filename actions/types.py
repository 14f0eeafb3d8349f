"""What policy decided (ActionPlan) and what happened (ActionResult)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Outcome = Literal["succeeded", "failed", "retry", "dry_run", "blocked"]


def idempotency_key(incident_id: str, event: str, rule: str, target: str,
                    recipient: str | None = None) -> str:
    """Stable across restarts: the same decision always gets the same key. ``recipient``
    (one action per subscriber, from an executor's ``expand``) is part of the key when
    set; without it the key is what it has always been."""
    raw = f"{incident_id}\x1f{event}\x1f{rule}\x1f{target}"
    if recipient is not None:
        raw += f"\x1f{recipient}"
    return "nrx-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """One action policy asked for. ``recipient``: the one subscriber it is for (fan-out);
    ``amount``: the money it gives away (a credit, an offer), for approval gates;
    ``inputs``: what the guardrails judge it on (see ``actions.guardrails.inputs_of``);
    ``approved_by``: who approved it, once someone has."""

    key: str
    incident_id: str
    event: str
    rule: str
    target: str
    executor: str
    payload: Mapping[str, Any]
    dry_run: bool = False
    attempts: int = 0
    recipient: str | None = None
    amount: float | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    approved_by: str | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    key: str
    target: str
    executor: str
    outcome: Outcome
    detail: str = ""
    status_code: int | None = None
    retry_after: float | None = None


class Executor(Protocol):
    """Performs one kind of external effect. Guardrails and the journal wrap every call.

    An executor may also have ``expand(plan, incident) -> list[ActionPlan]`` (sync) to
    turn one decision into one action per recipient (``ActionPlan.recipient``); the
    dispatcher journals each of them and runs every one through the guardrails."""

    kind: str

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class DispatchStats:
    planned: int = 0
    results: dict[tuple[str, str], int] = field(default_factory=dict)
