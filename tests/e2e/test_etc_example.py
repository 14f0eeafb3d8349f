"""The example configuration in etc/ actually runs (with its listeners moved to free
loopback ports and its state in a temporary directory, as a test must)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess

pytestmark = pytest.mark.e2e

ETC = Path(__file__).resolve().parents[2] / "etc"


def free(kind: int) -> str:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_example_config_starts_and_stops_cleanly(tmp_path: Path, daemons: Any) -> None:
    etc = tmp_path / "etc"
    shutil.copytree(ETC, etc)
    cfg_path = etc / "netreflex.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["daemon"].update(state_dir=str(tmp_path / "state"), metrics_listen=free(socket.SOCK_STREAM),
                         api_listen=free(socket.SOCK_STREAM))
    cfg["traps"]["listen"] = free(socket.SOCK_DGRAM)
    cfg["syslog"].update(udp=free(socket.SOCK_DGRAM), tcp=free(socket.SOCK_STREAM))
    # the example's devices have documentation addresses (192.0.2.x): traffic from tests
    # goes to loopback only, so point them at a loopback port where nothing answers
    silent = free(socket.SOCK_DGRAM)
    for dev in cfg["devices"].values():
        dev["address"] = "127.0.0.1"
        for probe in dev["probes"]:
            if probe["kind"] != "icmp":  # ping has no port: it pings loopback itself
                probe["port"] = int(silent.rsplit(":", 1)[1])
    cfg["polling"]["timeout"] = 0.2
    cfg_path.write_text(yaml.safe_dump(cfg))
    policy = etc / "policy.yaml"
    p = yaml.safe_load(policy.read_text())
    p["targets"]["action-log"]["path"] = str(tmp_path / "actions.jsonl")
    policy.write_text(yaml.safe_dump(p))

    d: DaemonProcess = daemons(cfg_path, tmp_path / "daemon.log").start()
    started = d.wait_log(r"started: (\d+) device\(s\) \((\d+) polled probe\(s\)\), "
                         r"(\d+) subscriber\(s\).*?(\d+) listener")
    # 6 devices: 6 SNMP + 1 CLI + 1 ping polled; traps, syslog and one gNMI stream listen
    assert started.groups() == ("6", "8", "8", "3")
    d.wait_log(r"api on http://127\.0\.0\.1:\d+/api/v1")
    assert d.terminate() == 0
    assert "Traceback" not in d.text()
    for secret in ("change-me-core-auth", "change-me-trap-community", "change-me-webhook-token"):
        assert secret not in d.text()
