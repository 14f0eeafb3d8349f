"""The dispatcher's slots for remediation: a target's own ``concurrency`` bounds its
actions, the shared slots stay free for everything else, and ``idle`` waits for the
actions that run on one executor (what a reload waits for before closing it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actions.dispatcher import Dispatcher
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionPlan, ActionResult
from correlator.incidents import Incident, IncidentEvent


class Slow:
    """Holds each action until released; counts how many run at once."""

    def __init__(self, kind: str, concurrency: int | None = None) -> None:
        self.kind = kind
        if concurrency is not None:
            self.concurrency = concurrency
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return ActionResult(plan.key, plan.target, self.kind, "succeeded", "done")

    async def aclose(self) -> None:
        return None


def incidents(n: int) -> list[Incident]:
    return [Incident(id=f"INC-{i:06d}", root=f"link:sw1:p{i}", kind="link_down",
                     device="sw1", port=f"p{i}", role="access", site=None, severity="minor",
                     state="open", opened_at=0, updated_at=0) for i in range(1, n + 1)]


async def test_a_targets_own_slots_bound_it_and_leave_the_shared_ones_free(
        tmp_path: Path) -> None:
    fix, page = Slow("remediation", concurrency=2), Slow("log")
    pol = Policy.model_validate({
        "targets": {"fix": {"kind": "remediation", "template": "snmp_admin_bounce"},
                    "page": {"kind": "log"}},
        "rules": [{"name": "r", "do": [{"target": "fix"}, {"target": "page"}]}],
    })
    journal = Journal(tmp_path / "j.db")
    d = Dispatcher(pol, journal, {"fix": fix, "page": page}, concurrency=1,
                   faults=FaultInjector())
    for inc in incidents(3):
        d.submit(IncidentEvent("opened", inc, 0))
    run = asyncio.create_task(d.run_once())
    for _ in range(50):
        await asyncio.sleep(0.01)
    # two fixes (their own limit) and one page (the one shared slot) at the same time
    assert (fix.running, page.running) == (2, 1)
    assert not await d.idle(fix, 0.05)
    page.release.set()
    fix.release.set()
    assert await d.idle(fix, 5)
    assert await run == 6
    assert (fix.most, page.most) == (2, 1)
    assert d.in_flight == 0
    journal.close()
