"""Upsell offers end to end: `netreflex run` polls a real net-snmp agent whose access port
carries ~95 Mb/s downstream to a subscriber on a 100 Mb/s plan. The `plan_saturation`
incident reaches a real CRM receiver as exactly one recommendation, for that subscriber,
with the detection's numbers; a restart does not send it again, and neither does the
incident resolving when the traffic drops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_detection import write_config as detection_config
from tests.support.crm_server import CrmServer
from tests.support.fake_http import Request
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent
from tests.support.traffic import Traffic

pytestmark = pytest.mark.e2e

# S-1 alone on ge-0/0/1 with a 100 Mb/s plan; S-2 and S-3 share ge-0/0/2 (no plan saturation
# there: a port must be bound to exactly one subscriber)
SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier,plan_mbps
S-1,acc1,ge-0/0/1,40,residential,100
S-2,acc1,ge-0/0/2,30,residential,50
S-3,acc1,ge-0/0/2,30,residential,50
"""
PLAN_MBPS = 100
ROOT = "cond:plan_saturation:S-1"


def write_config(tmp: Path, agent: SnmpdAgent, crm_url: str, hook_url: str) -> Path:
    """test_detection's acc1 polled every second, with this file's subscribers, the offer
    rule, and plan saturation raised after 2 s (not 30 min) and cleared after 1 s."""
    return detection_config(tmp, agent, hook_url, subscribers=SUBSCRIBERS, policy={
        "targets": {
            "upsell": {"kind": "crm_offer", "url": crm_url, "token": "crm-s3cret",
                       "offer_code": "PLAN-UPGRADE", "backoff_max": 1,
                       "reason": "{incident.subscriber} uses most of their plan: "
                                 "{incident.summary}"},
            "watch": {"kind": "webhook", "url": hook_url, "backoff_max": 1},
        },
        "rules": [
            {"name": "upsell-on-saturation",
             "when": {"events": ["opened"], "kind": ["plan_saturation"]},
             "do": [{"target": "upsell"}]},
            {"name": "watch", "when": {"events": ["opened", "resolved"],
                                       "kind": ["plan_saturation"]},
             "do": [{"target": "watch"}]},
        ],
        "guardrails": {"customer_facing": ["crm_offer"],
                       "message_caps": {"max": 3, "window": "1d"}},
    }, detection={"plan_saturation": {"raise_after_s": 2, "clear_after_s": 1}})


def events(rx: WebhookReceiver, event: str) -> list[Request]:
    return [d for d in rx.snapshot() if isinstance(d.body, dict)
            and d.body.get("event") == event and d.body["incident"]["root"] == ROOT]


def test_saturated_plan_gets_one_offer_that_restarts_and_recovery_do_not_resend(
    tmp_path: Path, daemons: Any,
) -> None:
    ifaces = [Interface(1, "ge-0/0/1", speed_mbps=1000),
              Interface(2, "ge-0/0/2", speed_mbps=1000)]
    with (SnmpdAgent(ifaces) as agent, CrmServer() as crm, WebhookReceiver() as rx):
        traffic = Traffic(agent, counter="out_octets", mbps=10.0)
        traffic.start()
        try:
            cfg = write_config(tmp_path, agent, crm.url, rx.url)
            d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log").start()
            time.sleep(3.0)  # a few polls at 10 % of the plan: nothing to say
            assert crm.snapshot() == [] and events(rx, "opened") == []

            traffic.mbps = 0.95 * PLAN_MBPS
            [post] = crm.wait_for(lambda rs: len(rs) >= 1, timeout=30)
            rx.wait_for(lambda ds: bool(events(rx, "opened")), timeout=30)
            [opened] = events(rx, "opened")
            inc = opened.body["incident"]
            assert inc["kind"] == "plan_saturation" and inc["subscriber"] == "S-1"

            assert post.status == 201 and post.headers["Authorization"] == "Bearer crm-s3cret"
            rec = post.body
            assert rec["subscriber"] == "S-1" and rec["offer_code"] == "PLAN-UPGRADE"
            assert rec["reason"].startswith("S-1 uses most of their plan: S-1 uses ")
            ev = rec["evidence"]
            assert ev["incident_id"] == inc["id"] and ev["kind"] == "plan_saturation"
            assert ev["plan_mbps"] == PLAN_MBPS and ev["subscriber_count"] == 1
            det = ev["detection"]
            assert det["plan_bps"] == PLAN_MBPS * 1_000_000 and det["direction"] == "out"
            assert 85 <= det["utilization_pct"] <= 105 and det["threshold_pct"] == 85
            assert 85e6 <= det["rate_bps"] <= 105e6
            assert det["window_s"] >= 2 and det["samples"] >= 2
            assert ev["summary"] == inc["summary"] and "S-1 uses" in ev["summary"]

            # a restart while the port is still saturated: same incident, nothing re-sent
            assert d.terminate() == 0
            d.start()
            time.sleep(6.0)  # polls, and the detector raising the condition again
            assert len(crm.snapshot()) == 1 and len(events(rx, "opened")) == 1

            traffic.mbps = 0.2 * PLAN_MBPS
            rx.wait_for(lambda ds: bool(events(rx, "resolved")), timeout=30)
            [resolved] = events(rx, "resolved")
            assert resolved.body["incident"]["id"] == inc["id"]
            assert "back below 70% of the plan" in resolved.body["incident"]["timeline"][-1][
                "text"]
            time.sleep(2.0)
            assert len(crm.snapshot()) == 1 and len(crm.accepted) == 1
            assert len(events(rx, "opened")) == 1
        finally:
            traffic.stop.set()
            traffic.join(5)
