"""`netreflex run`: a BGP session goes down (syslog, from util-linux logger) and, while it
waits out its hold-down, a SIGHUP reload (say after a NetBox import) drops its router from
the inventory. The daemon keeps running: the router's state is dropped, nothing opens for
it, and it still correlates and stops cleanly."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_event_sources import free_port, run
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e

HOLD_DOWN = 8


def write(tmp: Path, agent: SnmpdAgent, hook: str, syslog_port: int, *, edge: bool) -> Path:
    """``edge`` (the BGP router) in the inventory and polled, or gone from both."""
    devices: dict[str, Any] = {"core": {"role": "core"}, "acc2": {"parents": ["core"]}}
    polled: dict[str, Any] = {}
    if edge:
        devices["edge"] = {"role": "aggregation", "parents": ["core"]}
        polled["edge"] = {"address": "127.0.0.1",
                          "probes": [{"kind": "snmp", "credentials": "v2c", "port": agent.port}]}
    else:  # syslog from 127.0.0.1 is acc2's now
        polled["acc2"] = {"address": "127.0.0.1",
                          "probes": [{"kind": "snmp", "credentials": "v2c", "port": agent.port}]}
    (tmp / "subscribers.csv").write_text("id,device,port,monthly_revenue,sla_tier\n"
                                         "S-1,acc2,p1,30,residential\n")
    (tmp / "inventory.yaml").write_text(yaml.safe_dump(
        {"devices": devices, "subscriber_files": ["subscribers.csv"]}))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook}},
        "rules": [{"name": "all", "do": [{"target": "noc"}]}],
    }))
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": None},
        "polling": {"interval": 600, "timeout": 1, "retries": 0},
        "credentials": {"v2c": {"version": "2c", "community": agent.community}},
        "devices": polled,
        "syslog": {"udp": f"127.0.0.1:{syslog_port}", "tcp": None},
        "correlation": {"state_hold_down": HOLD_DOWN},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }))
    return path


def test_a_reload_dropping_a_router_with_a_pending_bgp_session_is_survived(
    tmp_path: Path, daemons: Any,
) -> None:
    assert shutil.which("logger"), "logger is installed by scripts/test"
    syslog_port = free_port(socket.SOCK_DGRAM)
    with SnmpdAgent([Interface(1, "ge-0/0/1")]) as agent, WebhookReceiver() as rx:
        cfg = write(tmp_path, agent, rx.url, syslog_port, edge=True)
        d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log").start()
        assert d.proc is not None
        d.wait_log(r"syslog.*listening|listening.*syslog")
        run("logger", "--server", "127.0.0.1", "--port", str(syslog_port), "--udp",
            "--rfc3164", "-t", "bgp", "-p", "daemon.notice",
            "%BGP-5-ADJCHANGE: neighbor 10.0.0.2 Down BGP Notification sent")
        deadline = time.monotonic() + 10
        while 'outcome="matched",source="syslog"} 1' not in d.metrics():
            assert time.monotonic() < deadline, "the BGP message was not matched"
            time.sleep(0.05)
        sent = time.monotonic()

        write(tmp_path, agent, rx.url, syslog_port, edge=False)  # the import dropped edge
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"devices removed from the inventory: edge")
        d.wait_log(r"reload done")
        assert time.monotonic() - sent < HOLD_DOWN, "the reload came after the hold-down"

        time.sleep(HOLD_DOWN + 2 - (time.monotonic() - sent))  # past the hold-down
        assert d.proc.poll() is None, d.text()  # still running
        metrics = d.metrics()
        assert 'netreflex_internal_errors_total{component="correlator"}' not in metrics, \
            d.text()
        assert "Traceback" not in d.text()
        assert not any(x.body["incident"]["kind"] == "bgp_session_down"
                       for x in rx.snapshot() if isinstance(x.body, dict))
        assert d.terminate() == 0
