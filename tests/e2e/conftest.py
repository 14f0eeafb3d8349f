"""Helpers for end-to-end tests: the real CLI as a subprocess, against real servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def netreflex_cmd() -> list[str]:
    """The installed console script when there is one (as users run it), else the module."""
    script = Path(sys.executable).with_name("netreflex")
    return [str(script)] if script.exists() else [sys.executable, "-m", "collector.cli"]


class DaemonProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> DaemonProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [*netreflex_cmd(), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.wait_log(r"started: ", timeout=30)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def since_start(self) -> str:
        return self.log.read_bytes()[self._offset:].decode(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.since_start())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"daemon log never matched {pattern!r}:\n{self.since_start()}")

    @property
    def metrics_url(self) -> str:
        m = self.wait_log(r"metrics on (http://\S+/metrics)")
        return m.group(1)

    @property
    def api_url(self) -> str:
        """The supervisor API's base URL, as the daemon logged it (``.../api/v1``)."""
        return self.wait_log(r"api on (http://\S+/api/v1)").group(1)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return resp.read().decode()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons() -> object:
    started: list[DaemonProcess] = []

    def make(config: Path, log: Path) -> DaemonProcess:
        d = DaemonProcess(config, log)
        started.append(d)
        return d

    yield make
    for d in started:
        d.ensure_stopped()
