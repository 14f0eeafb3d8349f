"""HTTP webhook: a JSON body describing the incident and its impact.

Every request carries ``Idempotency-Key``: a retry after a crash or a timeout reuses the
key, so a receiver that honours it sees each action once. 4xx answers are not retried
(the request is wrong and will stay wrong); 5xx, 429, timeouts and connection errors are.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from actions.targets import WebhookTarget
from actions.types import ActionPlan, ActionResult

USER_AGENT = "netreflex-webhook/0.1"


class WebhookExecutor:
    kind = "webhook"

    def __init__(self, name: str, target: WebhookTarget) -> None:
        self.name = name
        self.target = target
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.target.timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        if dry_run:
            return ActionResult(plan.key, self.name, self.kind, "dry_run",
                                f"would POST to {self.target.url}")
        headers = {"Content-Type": "application/json", "Idempotency-Key": plan.key,
                   **self.target.headers}
        if self.target.token is not None:
            headers["Authorization"] = "Bearer " + self.target.token.get_secret_value()
        body = json.dumps(plan.payload, sort_keys=True).encode()
        try:
            async with asyncio.timeout(self.target.timeout):
                async with self._client().post(str(self.target.url), data=body,
                                               headers=headers) as resp:
                    status = resp.status
                    text = (await resp.text(errors="replace"))[:200]
        except TimeoutError:
            return ActionResult(plan.key, self.name, self.kind, "retry",
                                f"timed out after {self.target.timeout}s")
        except aiohttp.ClientError as exc:
            return ActionResult(plan.key, self.name, self.kind, "retry",
                                f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return ActionResult(plan.key, self.name, self.kind, "succeeded", f"HTTP {status}",
                                status)
        if status == 429 or status >= 500:
            return ActionResult(plan.key, self.name, self.kind, "retry",
                                f"HTTP {status}: {text}", status)
        return ActionResult(plan.key, self.name, self.kind, "failed",
                            f"HTTP {status} (not retried): {text}", status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
