"""The daemon's correlation tick survives a bug in one tick: counted and logged, and
the next tick runs (a real Daemon from a real configuration, no network)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from collector.config import load_config
from collector.daemon import Daemon
from correlator.incidents import IncidentEvent
from tests.integration.test_api import write_config


async def test_a_bug_in_a_tick_is_counted_and_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    d = Daemon(load_config(write_config(tmp_path)))
    real = d.correlator.tick
    calls: list[str] = []

    def tick() -> list[IncidentEvent]:
        if not calls:
            calls.append("bug")
            raise KeyError("core1")  # the shape of the bug a reload once caused
        calls.append("ok")
        return real()

    d.correlator.tick = tick  # type: ignore[method-assign]
    task = asyncio.create_task(d._tick())
    try:
        for _ in range(50):
            if "ok" in calls:
                break
            await asyncio.sleep(0.1)
        assert calls[:2] == ["bug", "ok"] and not task.done()
        value = d.metrics.registry.get_sample_value("netreflex_internal_errors_total",
                                                    {"component": "correlator"})
        assert value == 1.0
        [rec] = [r for r in caplog.records if "correlator tick failed" in r.getMessage()]
        assert rec.levelno == logging.ERROR and rec.exc_info is not None
    finally:
        d.stopping.set()
        await asyncio.wait_for(task, 5)
        d._close_stores()
