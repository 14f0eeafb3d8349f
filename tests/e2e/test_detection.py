"""`netreflex run` polling a real net-snmp agent whose port carries traffic near its
speed: a `congestion` incident with its numbers reaches a real webhook receiver, clears
when the traffic drops, and the detections show in /metrics (which passes promtool)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess
from tests.support.receiver import Delivery, WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent
from tests.support.traffic import Traffic  # ge-0/0/1's ifHCInOctets at .mbps

pytestmark = pytest.mark.e2e

SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier
S-1,acc1,ge-0/0/1,250,business
S-2,acc1,ge-0/0/2,30,residential
"""
SPEED_MBPS = 1000
ROOT = "cond:congestion:acc1:ge-0/0/1"


def write_config(tmp: Path, agent: SnmpdAgent, hook_url: str, *,
                 subscribers: str = SUBSCRIBERS, policy: dict[str, Any] | None = None,
                 detection: dict[str, Any] | None = None) -> Path:
    """acc1 (behind core) polled over SNMP every second; by default congestion raised and
    cleared at once, to the webhook. Other tests pass their own subscribers CSV, policy
    and ``correlation.detection``."""
    (tmp / "subscribers.csv").write_text(subscribers)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"}, "acc1": {"parents": ["core"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy or {
        "targets": {"noc": {"kind": "webhook", "url": hook_url, "backoff_max": 1}},
        "rules": [{"name": "congestion", "when": {"kind": ["congestion"]},
                   "do": [{"target": "noc"}]}],
    }))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": "127.0.0.1:0"},
        "polling": {"interval": 1.0, "timeout": 0.8, "retries": 0},
        "credentials": {"v2c": {"version": "2c", "community": agent.community}},
        "devices": {"acc1": {"address": "127.0.0.1",
                             "probes": [{"kind": "snmp", "credentials": "v2c",
                                         "port": agent.port}]}},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
        "correlation": {"detection": detection or {
            "congestion": {"raise_after_s": 0, "clear_after_s": 0}}},
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def events(rx: WebhookReceiver, event: str) -> list[Delivery]:
    return [d for d in rx.snapshot() if isinstance(d.body, dict)
            and d.body.get("event") == event and d.body["incident"]["root"] == ROOT]


def test_congestion_reaches_the_webhook_with_its_numbers_and_clears(
    tmp_path: Path, daemons: Any,
) -> None:
    ifaces = [Interface(1, "ge-0/0/1", speed_mbps=SPEED_MBPS),
              Interface(2, "ge-0/0/2", speed_mbps=SPEED_MBPS)]
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        traffic = Traffic(agent)
        traffic.start()
        try:
            d: DaemonProcess = daemons(write_config(tmp_path, agent, rx.url),
                                       tmp_path / "daemon.log").start()
            time.sleep(3.0)  # a few polls at 1 %: nothing to say
            assert events(rx, "opened") == []

            traffic.mbps = 0.98 * SPEED_MBPS
            rx.wait_for(lambda ds: any(
                isinstance(x.body, dict) and x.body.get("event") == "opened"
                and x.body["incident"]["root"] == ROOT for x in ds), timeout=30)
            [opened] = events(rx, "opened")
            inc = opened.body["incident"]
            assert inc["kind"] == "congestion" and inc["port"] == "ge-0/0/1"
            ev = inc["evidence"]
            assert ev["direction"] == "in" and ev["speed_bps"] == SPEED_MBPS * 1_000_000
            assert 90 <= ev["utilization_pct"] <= 110 and ev["threshold_pct"] == 90
            assert inc["summary"] and inc["title"] == "congestion on acc1 ge-0/0/1"
            assert inc["impact"]["subscribers"] == ["S-1"]
            assert inc["impact"]["service"] == "degraded"

            traffic.mbps = 0.05 * SPEED_MBPS
            rx.wait_for(lambda ds: any(
                isinstance(x.body, dict) and x.body.get("event") == "resolved"
                and x.body["incident"]["root"] == ROOT for x in ds), timeout=30)
            time.sleep(2.0)
            [resolved] = events(rx, "resolved")
            assert resolved.body["incident"]["id"] == inc["id"]
            assert "cleared" in resolved.body["incident"]["timeline"][-1]["text"]
            assert len(events(rx, "opened")) == 1

            exposition = d.metrics()
            assert 'netreflex_detections_total{kind="congestion",state="raised"} 1.0' \
                in exposition
            assert 'netreflex_detections_total{kind="congestion",state="cleared"} 1.0' \
                in exposition
            promtool = shutil.which("promtool")
            assert promtool, "promtool is installed by scripts/test (Debian package prometheus)"
            lint = subprocess.run([promtool, "check", "metrics"], input=exposition.encode(),
                                  capture_output=True, timeout=30)
            assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
        finally:
            traffic.stop.set()
            traffic.join(5)
