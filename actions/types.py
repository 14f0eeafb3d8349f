"""What policy decided (ActionPlan) and what happened (ActionResult)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from actions.executors.credit import PlannedTime
    from actions.executors.remediate import DeviceAccess
    from actions.journal import Journal
    from correlator.incidents import Incident
    from correlator.inventory import Inventory

Outcome = Literal["succeeded", "failed", "retry", "dry_run", "blocked", "wait"]
"""``retry``: it failed and may work later (``retry_after``: when the receiver asked to be
tried again, honoured up to ``RETRY_AFTER_CAP``); ``wait``: not yet -- nothing was done,
try again in ``retry_after`` seconds, without counting an attempt (say, a customer message
waiting out its hold-down); ``blocked``: the executor's own guard refused."""

RETRY_AFTER_CAP = 3600.0


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
    ``approved_by``: who approved it, once someone has; ``not_before``: an executor's
    ``expand`` may hold the first attempt back (a customer message waits out a hold-down
    so that flaps send nothing)."""

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
    not_before: float | None = None  # first attempt no earlier than this (a hold-down)


@dataclass(frozen=True, slots=True)
class ActionResult:
    key: str
    target: str
    executor: str
    outcome: Outcome
    detail: str = ""
    status_code: int | None = None
    retry_after: float | None = None


@dataclass(slots=True)
class ExecutorContext:
    """What the daemon lends executors beyond their target. Each is optional (tests build
    executors with only what they need) and a callable where it can change at run time,
    so that an executor sees the inventory of the last reload, not the first.

    ``state_dir``: where to keep what must survive a restart; ``inventory()``: the current
    inventory (subscriber contacts, consent, contracts); ``incident(id)``: an incident as
    the correlator has it now, or None; ``journal``: the action journal, read-only use
    (what was already done for an incident); ``clock``: wall time.

    For one executor kind each: ``maintenance`` (SLA credits leave out the time it
    covered: ``Maintenance.planned_seconds``); ``devices(name)`` (remediation: how to
    reach a device, a ``DeviceAccess``, or None); ``on_mitigated`` /
    ``on_remediation_failed`` (remediation's verdict: ``(incident_id, *, by, detail,
    ts)``; the daemon turns them into incident events for policy)."""

    state_dir: Path | None = None
    inventory: Callable[[], Inventory] | None = None
    incident: Callable[[str], Incident | None] | None = None
    journal: Journal | None = None
    clock: Callable[[], float] = time.time
    maintenance: PlannedTime | None = None
    devices: Callable[[str], DeviceAccess | None] | None = None
    on_mitigated: RemediationHook | None = None
    on_remediation_failed: RemediationHook | None = None


class RemediationHook(Protocol):
    def __call__(self, incident_id: str, *, by: str, detail: str, ts: float) -> None: ...


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
