"""Local log: one line per action in the daemon's log, optionally a JSON-lines file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from actions.targets import LogTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext

log = logging.getLogger("netreflex.actions")


class LogExecutor:
    kind = "log"

    def __init__(self, name: str, target: LogTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        inc = plan.payload.get("incident", {})
        impact = inc.get("impact", {})
        log.warning(
            "%saction target=%s event=%s incident=%s title=%r subscribers=%s revenue_at_risk=%s",
            "(dry run) " if dry_run else "", self.name, plan.event, plan.incident_id,
            inc.get("title"), impact.get("subscriber_count"), impact.get("revenue_at_risk"),
        )
        if self.target.path and not dry_run:
            line = json.dumps({"key": plan.key, **plan.payload}, sort_keys=True) + "\n"
            try:
                fd = os.open(self.target.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                return ActionResult(plan.key, self.name, self.kind, "retry",
                                    f"cannot append to {self.target.path}: {exc.strerror}")
        return ActionResult(plan.key, self.name, self.kind, "dry_run" if dry_run else "succeeded")

    async def aclose(self) -> None:
        return None
