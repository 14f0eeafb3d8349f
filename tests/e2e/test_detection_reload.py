"""SIGHUP with a new subscriber: an incident on their port names them, and the judgement
(contracts near renewal, churn) knows them too -- every part of the correlator got the
new inventory, not only the topology."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest

from probes.types import STATUS_DOWN
from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_daemon import for_root, wait_until, write_config
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e


def test_a_subscriber_added_by_a_reload_is_named_and_judged(
    tmp_path: Path, daemons: Any,
) -> None:
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2"), Interface(3, "ge-0/0/3")]
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        cfg_path = write_config(tmp_path, agent, rx.url)
        d: DaemonProcess = daemons(cfg_path, tmp_path / "daemon.log").start()
        assert d.proc is not None
        wait_until(lambda: 'netreflex_interface_oper_status{device="acc1",interface="ge-0/0/3"}'
                   in d.metrics(), what="baseline")

        soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
        (tmp_path / "subscribers.csv").write_text(
            "id,device,port,monthly_revenue,sla_tier,contract_end\n"
            "S-1,acc1,ge-0/0/1,30,residential,\n"
            "S-4,acc1,ge-0/0/3,3000,enterprise,\n"
            f"S-9,acc1,ge-0/0/3,250,business,{soon}\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload done: .* 3 subscriber\(s\)")

        agent.set_oper(3, STATUS_DOWN)
        got = rx.wait_for(for_root("link:acc1:ge-0/0/3", "opened"))
        [opened] = [x for x in got if x.body["incident"]["root"] == "link:acc1:ge-0/0/3"
                    and x.body["event"] == "opened"]
        impact = opened.body["incident"]["impact"]
        assert impact["subscribers"] == ["S-4", "S-9"]
        assert impact["revenue_by_tier"] == {"business": 250.0, "enterprise": 3000.0}
        assert impact["contracts_near_renewal"] == ["S-9"]  # the Judge's inventory is new too
        assert d.terminate() == 0
