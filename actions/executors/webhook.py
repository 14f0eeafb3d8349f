"""HTTP webhook: a JSON body describing the incident and its impact.

Every request carries ``Idempotency-Key``: a retry after a crash or a timeout reuses the
key, so a receiver that honours it sees each action once. 4xx answers are not retried
(the request is wrong and will stay wrong); 5xx, 429, timeouts and connection errors are.
"""

from __future__ import annotations

from pathlib import Path

from actions.executors.http import HttpClient, bearer
from actions.targets import WebhookTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext

USER_AGENT = "netreflex-webhook/0.1"


class WebhookExecutor:
    kind = "webhook"

    def __init__(self, name: str, target: WebhookTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self._http = HttpClient(timeout=target.timeout, user_agent=USER_AGENT)

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would POST to {self.target.url}")
        headers = {"Idempotency-Key": plan.key, **self.target.headers,
                   **bearer(self.target.token)}
        answer = await self._http.send("POST", str(self.target.url), dict(plan.payload),
                                       headers=headers)
        return answer.result(plan, self.name, self.kind)

    async def aclose(self) -> None:
        await self._http.aclose()
