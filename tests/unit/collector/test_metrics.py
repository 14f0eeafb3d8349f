"""Counter families read at scrape time: what they expose, and that promtool accepts it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from collector.metrics import Metrics


def exposition(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def test_guardrail_trips_and_detections_follow_their_sources() -> None:
    trips: dict[tuple[str, str], int] = {}
    detections = {("congestion", "raised"): 3}
    m = Metrics()
    m.register_guardrail_trips(lambda: trips)
    m.register_detections(lambda: detections)
    text = exposition(m)
    assert "# TYPE netreflex_guardrail_trips_total counter" in text
    assert "netreflex_guardrail_trips_total{" not in text  # nothing tripped yet
    assert 'netreflex_detections_total{kind="congestion",state="raised"} 3.0' in text
    trips[("approval", "waiting")] = 2
    trips[("blast_radius", "blocked")] = 1
    text = exposition(m)
    assert 'netreflex_guardrail_trips_total{guardrail="approval",outcome="waiting"} 2.0' in text
    assert ('netreflex_guardrail_trips_total{guardrail="blast_radius",outcome="blocked"} 1.0'
            in text)


def test_the_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool comes with the Debian package prometheus (scripts/test installs it)")
    m = Metrics()
    m.register_guardrail_trips(lambda: {("quiet_hours", "deferred"): 4})
    m.register_detections(lambda: {("latency", "cleared"): 1})
    lint = subprocess.run([promtool, "check", "metrics"], input=generate_latest(m.registry),
                          capture_output=True, timeout=30)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
