"""SIGHUP re-reads config, inventory and policy and swaps them in; a bad file keeps the
old configuration, says why, and sets a metric. Incidents survive the reload."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.types import STATUS_DOWN
from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_daemon import _is, for_root, wait_until, write_config
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e


def test_sighup_applies_good_config_and_rejects_bad(tmp_path: Path, daemons: Any) -> None:
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2"), Interface(3, "ge-0/0/3")]
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as first, WebhookReceiver() as second:
        cfg_path = write_config(tmp_path, agent, first.url)
        d: DaemonProcess = daemons(cfg_path, tmp_path / "daemon.log").start()
        assert d.proc is not None
        wait_until(lambda: 'netreflex_interface_oper_status{device="acc1",interface="ge-0/0/2"}'
                   in d.metrics(), what="baseline")

        # 1. a bad policy: rejected with file:line, old config kept, metric set
        policy = tmp_path / "policy.yaml"
        good_policy = policy.read_text()
        policy.write_text(good_policy.replace("kind: webhook", "kind: webhok"))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(rf"reload rejected: {policy}:\d+: targets\.noc")
        d.wait_log(r"still running the previous configuration")
        wait_until(lambda: "netreflex_config_last_reload_successful 0.0" in d.metrics(),
                   what="the reload metric")
        assert 'netreflex_config_reloads_total{result="error"} 1.0' in d.metrics()

        # 2. a good change: the webhook now goes to the second receiver, and acc2 is gone
        policy.write_text(good_policy.replace(first.url, second.url))
        cfg = yaml.safe_load(cfg_path.read_text())
        del cfg["devices"]["acc2"]
        cfg_path.write_text(yaml.safe_dump(cfg))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload done: 1 device\(s\)")
        wait_until(lambda: "netreflex_config_last_reload_successful 1.0" in d.metrics(),
                   what="the reload metric back to 1")
        wait_until(lambda: "netreflex_devices 1.0" in d.metrics(), what="acc2 dropped")

        agent.set_oper(2, STATUS_DOWN)
        second.wait_for(for_root("link:acc1:ge-0/0/2", "opened"))
        assert not any(_is(x, "link:acc1:ge-0/0/2", "opened") for x in first.snapshot())
        assert d.terminate() == 0
