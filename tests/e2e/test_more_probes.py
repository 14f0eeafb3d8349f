"""`netreflex run` with the SSH/CLI (fakenos), gNMI (a grpc target) and ping probes
configured: each reaches the correlator through the real daemon, and a fault seen by
gNMI or by the CLI opens an incident naming the right subscribers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.demo.gnmi import GnmiTarget
from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_daemon import _is, for_root, wait_until
from tests.integration.test_cli_probe import IOS_BGP, IOS_INTERFACES
from tests.support.fakenos_host import FakeCliDevice
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

ETH = "/interfaces/interface[name=Ethernet{n}]/state"


class ThreadedTarget:
    """The async gNMI target on its own loop in a thread, for a synchronous test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.target = GnmiTarget(username="nrx", password="gnmi-Pa55-word")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedTarget:
        self.thread.start()
        self.call(lambda: None)
        for n in (1, 2):
            self.set(f"{ETH.format(n=n)}/admin-status", "UP")
            self.set(f"{ETH.format(n=n)}/oper-status", "UP")
        self.port = asyncio.run_coroutine_threadsafe(self.target.start(), self.loop).result(10)
        return self

    def call(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def set(self, path: str, value: Any) -> None:
        self.call(lambda: self.target.set(path, value))

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.target.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def gnmi() -> Iterator[ThreadedTarget]:
    with ThreadedTarget() as t:
        yield t


def test_cli_gnmi_and_ping_through_the_daemon(tmp_path: Path, daemons: Any,
                                             gnmi: ThreadedTarget) -> None:
    with FakeCliDevice("cisco_ios", {"show interfaces": IOS_INTERFACES,
                                     "show ip bgp summary": IOS_BGP}) as ios, \
            WebhookReceiver() as rx:
        (tmp_path / "pw").write_text(ios.password + "\n")
        (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
            "devices": {"core": {"role": "core"},
                        "edge1": {"parents": ["core"]}, "leaf1": {"parents": ["core"]}},
            "subscribers": [
                {"id": "S-A", "device": "edge1", "port": "Po1.13", "monthly_revenue": 900,
                 "sla_tier": "business"},
                {"id": "S-B", "device": "leaf1", "port": "Ethernet2", "monthly_revenue": 40},
            ],
        }))
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "targets": {"noc": {"kind": "webhook", "url": rx.url}},
            "rules": [{"name": "outages", "when": {"min_subscribers": 1},
                       "do": [{"target": "noc"}]}],
        }))
        cfg = tmp_path / "netreflex.yaml"
        cfg.write_text(yaml.safe_dump({
            "daemon": {"state_dir": str(tmp_path / "state"), "metrics_listen": "127.0.0.1:0",
                       "api_listen": None},
            "polling": {"interval": 1.0},
            "devices": {
                "edge1": {"address": "127.0.0.1", "probes": [
                    {"kind": "cli", "platform": "cisco_ios", "port": ios.port,
                     "username": ios.username, "password": {"file": "pw"}, "timeout": 10,
                     "commands": ["interfaces"]},
                    {"kind": "icmp", "count": 2, "interval": 0.05, "timeout": 1}]},
                "leaf1": {"address": "127.0.0.1", "probes": [
                    {"kind": "gnmi", "port": gnmi.port, "insecure": True, "username": "nrx",
                     "password": "gnmi-Pa55-word", "sample_interval": 0.2,
                     "heartbeat_interval": 0.5, "silence_deadline": 2}]},
            },
            "inventory": ["inventory.yaml"], "policy": "policy.yaml",
        }))
        d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log").start()
        wait_until(lambda: all(f'netreflex_observations_total{{source="{s}"}}' in d.metrics()
                               for s in ("cli", "icmp", "gnmi")), timeout=30,
                   what="observations from the cli, icmp and gnmi probes")

        gnmi.set(f"{ETH.format(n=2)}/oper-status", "DOWN")
        got = rx.wait_for(for_root("link:leaf1:Ethernet2", "opened"), timeout=15)
        inc = next(x for x in got if _is(x, "link:leaf1:Ethernet2", "opened")).body["incident"]
        assert inc["impact"]["subscribers"] == ["S-B"]

        ios.set_output("show interfaces", IOS_INTERFACES.replace(
            "Port-channel1.13 is up, line protocol is up",
            "Port-channel1.13 is up, line protocol is down"))
        got = rx.wait_for(for_root("link:edge1:Po1.13", "opened"), timeout=20)
        inc = next(x for x in got if _is(x, "link:edge1:Po1.13", "opened")).body["incident"]
        assert inc["impact"]["subscribers"] == ["S-A"]
        assert d.terminate() == 0
        log = d.text()
        assert ios.password not in log and "gnmi-Pa55-word" not in log
