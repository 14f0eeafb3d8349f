"""Two pollers and one core, three real `netreflex run` processes over a real mosquitto:
each poller polls its share, the core correlates and acts, and a broker restart in the
middle of a fault leaves exactly the right incident and actions. And one poller, one
core: SNMP interface counters cross the broker, so a congested port opens its incident
on the core."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.cluster import owner
from probes.types import STATUS_DOWN, STATUS_UP
from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_daemon import _is, wait_until
from tests.e2e.test_detection import SPEED_MBPS, events, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent
from tests.support.traffic import Traffic

pytestmark = pytest.mark.e2e

MEMBERS = ["p1", "p2"]
DEVICES = [f"acc{i}" for i in range(1, 7)]


def write(tmp: Path, name: str, agent: SnmpdAgent, broker_port: int, hook: str,
          cluster: dict[str, Any]) -> Path:
    d = tmp / name
    d.mkdir()
    # every device sits behind its own port on one access node, so ge-0/0/2 on each is
    # a customer port with one subscriber
    lines = ["id,device,port,monthly_revenue,sla_tier"]
    lines += [f"S-{dev},{dev},ge-0/0/2,50,residential" for dev in DEVICES]
    (d / "subscribers.csv").write_text("\n".join(lines) + "\n")
    (d / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"},
                    **{dev: {"parents": ["core"]} for dev in DEVICES}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (d / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook}},
        "rules": [{"name": "outages", "when": {"min_subscribers": 1},
                   "do": [{"target": "noc"}]}],
    }))
    cfg = {
        "daemon": {"state_dir": str(d / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": None},
        "polling": {"interval": 0.5, "timeout": 0.5, "retries": 0},
        "credentials": {"v2c": {"version": "2c", "community": agent.community}},
        "devices": {dev: {"address": "127.0.0.1",
                          "probes": [{"kind": "snmp", "credentials": "v2c",
                                      "port": agent.port}]} for dev in DEVICES},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
        "cluster": {"broker": {"host": "127.0.0.1", "port": broker_port,
                               "reconnect_min": 0.1, "reconnect_max": 0.5},
                    "members": MEMBERS, **cluster},
    }
    path = d / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def all_up(process: DaemonProcess, devices: list[str]) -> bool:
    exposition = process.metrics()
    return all(f'netreflex_device_up{{device="{d}"}} 1.0' in exposition for d in devices)


def test_two_pollers_one_core_and_a_broker_restart(tmp_path: Path, daemons: Any) -> None:
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2")]
    with Mosquitto() as mq, SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        core = daemons(write(tmp_path, "core", agent, mq.port, rx.url, {"role": "core"}),
                       tmp_path / "core.log").start()
        pollers: list[DaemonProcess] = []
        for pid in MEMBERS:
            cfg = write(tmp_path, pid, agent, mq.port, rx.url,
                        {"role": "poller", "poller_id": pid})
            pollers.append(daemons(cfg, tmp_path / f"{pid}.log").start())

        # each poller polls exactly its rendezvous share
        for pid, p in zip(MEMBERS, pollers, strict=True):
            share = sorted(d for d in DEVICES if owner(d, MEMBERS) == pid)
            wait_until(functools.partial(all_up, p, share), what=f"{pid} polling its share")
            others = set(DEVICES) - set(share)
            assert not any(f'device="{d}"' in p.metrics() for d in others)
        time.sleep(1.5)  # the core has the baseline of every device

        agent.set_oper(2, STATUS_DOWN)  # every device sees its customer port go down
        got = rx.wait_for(lambda ds: all(any(_is(x, f"link:{d}:ge-0/0/2", "opened")
                                             for x in ds) for d in DEVICES), timeout=20)
        assert sum(_is(x, "link:acc1:ge-0/0/2", "opened") for x in got) == 1

        # the broker goes away in the middle of the fault; the port comes back meanwhile
        mq.stop()
        agent.set_oper(2, STATUS_UP)
        time.sleep(2.0)  # several polls buffered on the pollers
        assert not any(_is(x, "link:acc1:ge-0/0/2", "resolved") for x in rx.snapshot())
        mq.start()
        got = rx.wait_for(lambda ds: all(any(_is(x, f"link:{d}:ge-0/0/2", "resolved")
                                             for x in ds) for d in DEVICES), timeout=30)
        time.sleep(1.0)
        final = rx.snapshot()
        for d in DEVICES:
            assert sum(_is(x, f"link:{d}:ge-0/0/2", "opened") for x in final) == 1
            assert sum(_is(x, f"link:{d}:ge-0/0/2", "resolved") for x in final) == 1
        for p in pollers:
            assert p.terminate() == 0
        assert core.terminate() == 0


def clustered(tmp: Path, name: str, agent: SnmpdAgent, hook: str, broker_port: int,
              cluster: dict[str, Any]) -> Path:
    """test_detection's one-device congestion setup, as one member of a cluster."""
    d = tmp / name
    d.mkdir()
    path = write_config(d, agent, hook)
    cfg = yaml.safe_load(path.read_text())
    cfg["daemon"]["api_listen"] = None
    cfg["cluster"] = {"broker": {"host": "127.0.0.1", "port": broker_port,
                                 "reconnect_min": 0.1, "reconnect_max": 0.5},
                      "members": ["p1"], **cluster}
    path.write_text(yaml.safe_dump(cfg))
    return path


def counter(exposition: str, name: str, outcome: str) -> float:
    prefix = f'{name}_total{{outcome="{outcome}"}} '
    lines = [line for line in exposition.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_counters_cross_the_broker_and_congestion_opens_on_the_core(
    tmp_path: Path, daemons: Any,
) -> None:
    ifaces = [Interface(1, "ge-0/0/1", speed_mbps=SPEED_MBPS),
              Interface(2, "ge-0/0/2", speed_mbps=SPEED_MBPS)]
    with Mosquitto() as mq, SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        traffic = Traffic(agent)
        traffic.start()
        try:
            core = daemons(clustered(tmp_path, "core", agent, rx.url, mq.port,
                                     {"role": "core"}), tmp_path / "core.log").start()
            poller = daemons(clustered(tmp_path, "p1", agent, rx.url, mq.port,
                                       {"role": "poller", "poller_id": "p1"}),
                             tmp_path / "p1.log").start()
            wait_until(lambda: counter(core.metrics(), "netreflex_bus_interface_tables",
                                       "handled") >= 3, what="tables at the core")
            assert events(rx, "opened") == []  # 1 % of the port: nothing to say

            traffic.mbps = 0.98 * SPEED_MBPS
            rx.wait_for(lambda _: bool(events(rx, "opened")), timeout=30)
            [opened] = events(rx, "opened")
            inc = opened.body["incident"]
            assert (inc["kind"], inc["port"], inc["impact"]["subscribers"]) == (
                "congestion", "ge-0/0/1", ["S-1"])
            assert inc["evidence"]["speed_bps"] == SPEED_MBPS * 1_000_000  # from the table
            assert 90 <= inc["evidence"]["utilization_pct"] <= 110

            # the core detected it (the poller has no correlator) from tables it was sent
            core_metrics, poller_metrics = core.metrics(), poller.metrics()
            assert 'netreflex_detections_total{kind="congestion",state="raised"} 1.0' \
                in core_metrics
            assert "netreflex_detections_total{" not in poller_metrics
            handled = counter(core_metrics, "netreflex_bus_interface_tables", "handled")
            assert handled >= 3
            assert counter(poller_metrics, "netreflex_bus_interface_tables",
                           "delivered") >= handled
            for outcome in ("malformed", "ignored", "handler_errors"):
                assert counter(core_metrics, "netreflex_bus_interface_tables", outcome) == 0
            assert counter(poller_metrics, "netreflex_bus_interface_tables", "dropped") == 0
            promtool = shutil.which("promtool")
            assert promtool, "promtool is installed by scripts/test (Debian package prometheus)"
            for exposition in (core_metrics, poller_metrics):
                lint = subprocess.run([promtool, "check", "metrics"], capture_output=True,
                                      input=exposition.encode(), timeout=30)
                assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

            traffic.mbps = 0.05 * SPEED_MBPS
            rx.wait_for(lambda _: bool(events(rx, "resolved")), timeout=30)
            assert len(events(rx, "opened")) == 1
            assert poller.terminate() == 0
            assert core.terminate() == 0
        finally:
            traffic.stop.set()
            traffic.join(5)
