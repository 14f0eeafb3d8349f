"""Reload without restart: `netreflex inventory import-netbox` rewrites the inventory a
running daemon uses, and SIGHUP swaps it in. NetBox is the stand-in of
tests/support/netbox_server.py (NetBox's REST shapes, not NetBox)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess, netreflex_cmd
from tests.support.netbox_server import FIXTURES, NetboxServer

pytestmark = pytest.mark.e2e

TOKEN = "nb0123456789abcdef0123456789abcdef0123"


def test_import_then_sighup_loads_the_new_inventory(tmp_path: Path, daemons: Any) -> None:
    token = tmp_path / "netbox.token"
    token.write_text(TOKEN + "\n")
    (tmp_path / "policy.yaml").write_text("rules: []\n")
    cfg = tmp_path / "netreflex.yaml"
    cfg.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(tmp_path / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": None},
        "inventory": ["netbox/inventory.yaml"], "policy": "policy.yaml"}))

    with NetboxServer(token=TOKEN) as netbox:
        def import_netbox() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*netreflex_cmd(), "inventory", "import-netbox", "--url", netbox.url,
                 "--token-file", str(token), "--out-dir", str(tmp_path / "netbox"),
                 "--mapping", str(FIXTURES / "mapping.yaml")],
                capture_output=True, text=True, timeout=60, check=False)

        first = import_netbox()
        assert first.returncode == 0, first.stderr
        d: DaemonProcess = daemons(cfg, tmp_path / "daemon.log").start()
        assert d.proc is not None
        assert "3 subscriber(s)" in d.wait_log(r"started: .*").group(0)

        # ont-1003 is installed: M. Chen becomes a subscriber behind olt1 pon0/2
        netbox.data["devices"][10]["status"] = {"value": "active", "label": "Active"}
        second = import_netbox()
        assert second.returncode == 0, second.stderr
        assert "4 subscriber(s)" in second.stdout
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload done: 0 device\(s\) \(0 added or changed\), 4 subscriber\(s\)")
        assert d.proc.poll() is None  # the same process: no restart
        assert d.terminate() == 0
