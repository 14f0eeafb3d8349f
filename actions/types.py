"""What policy decided (ActionPlan) and what happened (ActionResult)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Outcome = Literal["succeeded", "failed", "retry", "dry_run"]


def idempotency_key(incident_id: str, event: str, rule: str, target: str) -> str:
    """Stable across restarts: the same decision always gets the same key."""
    raw = f"{incident_id}\x1f{event}\x1f{rule}\x1f{target}".encode()
    return "nrx-" + hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ActionPlan:
    key: str
    incident_id: str
    event: str
    rule: str
    target: str
    executor: str
    payload: Mapping[str, Any]
    dry_run: bool = False
    attempts: int = 0


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
    """Performs one kind of external effect. Guardrails and the journal wrap every call."""

    kind: str

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class DispatchStats:
    planned: int = 0
    results: dict[tuple[str, str], int] = field(default_factory=dict)
