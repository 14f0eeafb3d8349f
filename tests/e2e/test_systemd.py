"""The unit file, checked offline, and sd_notify spoken to a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import netreflex_cmd

pytestmark = pytest.mark.e2e

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "netreflex.service"
MAX_EXPOSURE = 2.5  # systemd-analyze security's scale: 0 (locked down) .. 10 (exposed)


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's netreflex (it must exist)."""
    exe = Path(sys.executable).with_name("netreflex")
    assert exe.exists(), "netreflex must be installed in the test environment"
    unit = tmp_path / "netreflex.service"
    unit.write_text(UNIT.read_text().replace("/opt/netreflex/bin/netreflex", str(exe)))
    return unit


@pytest.fixture
def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is installed by scripts/test (Debian package systemd)"
    return tool


def test_unit_verifies_without_a_single_warning(tmp_path: Path, systemd_analyze: str) -> None:
    res = subprocess.run([systemd_analyze, "verify", str(local_unit(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys; they only show up as output
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr


def test_unit_hardening_exposure_is_low(tmp_path: Path, systemd_analyze: str) -> None:
    res = subprocess.run([systemd_analyze, "security", "--offline=true",
                          str(local_unit(tmp_path))], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for netreflex\.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, res.stdout


def test_unit_keeps_the_operational_contract() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "RestartPreventExitStatus=78", "Restart=on-failure",
                 "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=netreflex",
                 "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert line in text.splitlines(), line


def test_ready_watchdog_status_and_stopping_over_sd_notify(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"devices": {"core1": {"role": "core"}}}))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"targets": {"log": {"kind": "log"}},
                                                         "rules": []}))
    cfg = tmp_path / "netreflex.yaml"
    cfg.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(tmp_path / "state"), "metrics_listen": "127.0.0.1:0"},
        "inventory": ["inventory.yaml"], "policy": "policy.yaml",
    }))
    sock_path = f"/tmp/nrx-notify-{os.getpid()}-{time.monotonic_ns()}"  # < 108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen([*netreflex_cmd(), "run", "--config", str(cfg)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    got: list[str] = []

    def read_until(pred: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(got):  # type: ignore[operator]
                return
            try:
                got.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
        raise AssertionError(f"sd_notify messages so far: {got}")

    try:
        read_until(lambda g: "READY=1" in g, 30)
        read_until(lambda g: g.count("WATCHDOG=1") >= 2, 10)
        assert any(m.startswith("STATUS=polling 0 device(s)") for m in got)
        proc.send_signal(signal.SIGTERM)
        read_until(lambda g: "STOPPING=1" in g, 20)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        os.unlink(sock_path)
    assert got.index("READY=1") < got.index("STOPPING=1")
