"""`netreflex run` with the trap and syslog listeners: events from independent senders
(net-snmp's snmptrap, util-linux logger) open incidents without waiting for a poll."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_daemon import SUBSCRIBERS, _is, for_root, wait_until
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, agent: SnmpdAgent, hook: str, trap_port: int, syslog_port: int) -> Path:
    (tmp / "subscribers.csv").write_text(SUBSCRIBERS)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"},
                    "acc1": {"parents": ["core"], "ports": ["ge-0/0/1", "ge-0/0/2", "ge-0/0/3"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook}},
        "rules": [{"name": "outages", "do": [{"target": "noc"}]}],
    }))
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": None},
        # one poll for the baseline and the interface names; then only events
        "polling": {"interval": 600, "timeout": 1, "retries": 0},
        "credentials": {"v2c": {"version": "2c", "community": agent.community}},
        "devices": {"acc1": {"address": "127.0.0.1",
                             "probes": [{"kind": "snmp", "credentials": "v2c",
                                         "port": agent.port}]}},
        "traps": {"listen": f"127.0.0.1:{trap_port}", "communities": ["trapsecret"]},
        "syslog": {"udp": f"127.0.0.1:{syslog_port}", "tcp": None},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }))
    return path


def run(*argv: str) -> None:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_trap_and_syslog_open_incidents(tmp_path: Path, daemons: Any) -> None:
    for tool in ("snmptrap", "logger"):
        assert shutil.which(tool), f"{tool} is installed by scripts/test"
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2"), Interface(3, "ge-0/0/3")]
    trap_port = free_port(socket.SOCK_DGRAM)
    syslog_port = free_port(socket.SOCK_DGRAM)
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        cfg = config(tmp_path, agent, rx.url, trap_port, syslog_port)
        d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log").start()
        wait_until(lambda: 'netreflex_interface_oper_status{device="acc1",interface="ge-0/0/3"}'
                   in d.metrics(), what="the baseline poll")

        # linkDown for ifIndex 2: named ge-0/0/2 from what the poller learned
        run("snmptrap", "-v2c", "-c", "trapsecret", f"127.0.0.1:{trap_port}", "", LINK_DOWN,
            "1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.2.2.1.7.2", "i", "1",
            "1.3.6.1.2.1.2.2.1.8.2", "i", "2")
        got = rx.wait_for(for_root("link:acc1:ge-0/0/2", "opened"), timeout=10)
        inc = next(x for x in got if _is(x, "link:acc1:ge-0/0/2", "opened")).body["incident"]
        assert inc["impact"]["subscribers"] == ["S-2", "S-3"]
        assert any("(trap)" in t["text"] for t in inc["timeline"])

        # a Junos link-down over syslog for ge-0/0/3
        run("logger", "--server", "127.0.0.1", "--port", str(syslog_port), "--udp",
            "--rfc3164", "-t", "mib2d", "-p", "daemon.warning",
            "SNMP_TRAP_LINK_DOWN: ifIndex 3, ifAdminStatus up(1), ifOperStatus down(2), "
            "ifName ge-0/0/3")
        got = rx.wait_for(for_root("link:acc1:ge-0/0/3", "opened"), timeout=10)
        inc = next(x for x in got if _is(x, "link:acc1:ge-0/0/3", "opened")).body["incident"]
        assert inc["impact"]["subscribers"] == ["S-4"]
        assert inc["impact"]["revenue_by_tier"] == {"enterprise": 3000.0}

        # a wrong community is counted, not acted on
        run("snmptrap", "-v2c", "-c", "guess", f"127.0.0.1:{trap_port}", "", LINK_DOWN,
            "1.3.6.1.2.1.2.2.1.1.1", "i", "1")
        wait_until(lambda: re.search(
            r'netreflex_source_events_total\{outcome="bad_community",source="snmp_traps"\} 1',
            d.metrics()) is not None, what="the bad community to be counted")
        assert not any(_is(x, "link:acc1:ge-0/0/1", "opened") for x in rx.snapshot())
        assert re.search(r'netreflex_source_events_total\{outcome="matched",source="syslog"\} 1',
                         d.metrics())
        assert d.terminate() == 0
        assert "trapsecret" not in d.text()


def test_listener_port_taken_stops_the_daemon_with_a_message(tmp_path: Path,
                                                             daemons: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken, \
            SnmpdAgent([Interface(1, "ge-0/0/1")]) as agent, WebhookReceiver() as rx:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cfg = config(tmp_path, agent, rx.url, port, free_port(socket.SOCK_DGRAM))
        d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log")
        with pytest.raises(AssertionError, match="never matched"):
            d.start()  # never announces "started": a listener it needs is missing
        assert d.proc is not None and d.proc.wait(30) == 1
        assert re.search(r"cannot run snmp_traps: .*127\.0\.0\.1", d.text())
        assert "Traceback" not in d.text()
