"""kill -9 at every step of an action never loses it and never performs it twice.

`netreflex run` is started with the test-only ``NETREFLEX_FAULT=POINT`` (actions/faults.py),
which makes it die like ``kill -9`` (``os._exit(137)``: no cleanup, nothing flushed) the
moment its action reaches POINT; then it is started again, normally. A real HTTP receiver
counts every delivery. Each run has exactly one action, so the counts are exact:

- killed after ``planned`` / after ``running`` was journaled (before the send) / after
  ``succeeded`` was journaled: the receiver sees the action exactly once;
- killed after the send, before the outcome was journaled: the action is sent again with
  the *same* Idempotency-Key -- the raw count is 2, and a receiver that deduplicates by
  the key sees it once. That window cannot be closed from the sender's side; the key is
  what makes it safe.

A second test does the same for an action waiting for approval, approved with the CLI.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess, netreflex_cmd
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

TOKEN = "e2e-exactly-once-token-0123456789abcdef"
SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier,email,consent_email
S-1,acc1,p1,30,residential,a@x.example,true
S-2,acc1,p2,250,business,b@x.example,true
"""


def silent_port() -> int:
    """A loopback UDP port where nothing answers: the polled device is unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, hook_url: str, *, approval: bool = False) -> Path:
    (tmp / "secrets").mkdir(exist_ok=True)
    (tmp / "secrets" / "api.token").write_text(TOKEN + "\n")
    (tmp / "subscribers.csv").write_text(SUBSCRIBERS)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"}, "acc1": {"role": "access", "parents": ["core"],
                                                      "ports": ["p1", "p2"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    rule: dict[str, Any] = {"name": "outages", "when": {"min_subscribers": 1},
                            "do": [{"target": "noc"}]}
    if approval:
        rule["approval"] = {"required": True, "expires_after": "1h"}
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook_url, "timeout": 2,
                            "backoff_max": 0.5}},
        "rules": [rule],
    }))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": None,
                   "api_listen": "127.0.0.1:0", "api_token": {"file": "secrets/api.token"}},
        "polling": {"interval": 0.5, "timeout": 0.2, "retries": 0},
        "correlation": {"unreachable_hold_down": 0},
        "credentials": {"v2c": {"version": "2c", "community": "public"}},
        "devices": {"acc1": {"address": "127.0.0.1",
                             "probes": [{"kind": "snmp", "credentials": "v2c",
                                         "port": silent_port()}]}},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_until_fault(config: Path, log: Path, fault: str) -> str:
    """Run the daemon with the fault armed; it must die with 137 at that point."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [*netreflex_cmd(), "run", "--config", str(config)], stdin=subprocess.DEVNULL,
            stdout=fh, stderr=fh,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NETREFLEX_FAULT": fault})
        try:
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text(errors="replace")
    assert rc == 137, f"exit {rc}, expected the injected death:\n{text}"
    subject = "incident INC-" if fault == "before_submit" else "action nrx-"
    assert f"NETREFLEX_FAULT={fault} reached by {subject}" in text
    assert "Traceback" not in text
    return text


def journal(state: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(state / "journal.db") as con:
        return con.execute("SELECT key, state, attempts FROM actions").fetchall()


def wait_until(fn: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# state journaled when the process died, and deliveries the receiver had seen by then
DIED_AT = {
    "after_plan": ("planned", 0),
    "after_start": ("running", 0),
    "after_send": ("running", 1),
    "after_finish": ("succeeded", 1),
}


@pytest.mark.parametrize("fault", list(DIED_AT))
def test_kill_9_at_each_step_neither_loses_nor_repeats(tmp_path: Path, daemons: Any,
                                                       fault: str) -> None:
    with WebhookReceiver() as rx:
        config = write_config(tmp_path, rx.url)
        log = tmp_path / "daemon.log"
        run_until_fault(config, log, fault)

        ((key, state, _),) = journal(tmp_path / "state")
        assert (state, len(rx.snapshot())) == DIED_AT[fault]

        d: DaemonProcess = daemons(config, log).start()
        wait_until(lambda: journal(tmp_path / "state")[0][1] == "succeeded",
                   what="the action to be recorded as delivered after the restart")
        time.sleep(1.5)  # several dispatcher turns and polls: nothing more may arrive
        raw = rx.count_by_key()
        # every action delivered; a receiver that deduplicates by the key sees it once
        assert set(raw) == {key}
        # the raw count is 2 only when the process died between sending and recording
        assert raw[key] == (2 if fault == "after_send" else 1), raw
        assert [d.body["event"] for d in rx.snapshot()] == ["opened"] * raw[key]
        assert len(journal(tmp_path / "state")) == 1  # never planned twice
        assert d.terminate() == 0
        assert "Traceback" not in d.text()


def test_kill_9_between_saving_an_incident_and_journaling_its_event(
        tmp_path: Path, daemons: Any) -> None:
    """The incident is saved, its event never reached the journal: the restarted daemon
    (which sees the device still down, so no new event comes) decides it from the saved
    incident, and the action is delivered once."""
    state = tmp_path / "state"
    with WebhookReceiver() as rx:
        config = write_config(tmp_path, rx.url)
        log = tmp_path / "daemon.log"
        run_until_fault(config, log, "before_submit")
        assert journal(state) == [] and rx.snapshot() == []
        with sqlite3.connect(state / "incidents.db") as con:
            assert con.execute("SELECT id, state FROM incidents").fetchall() == [
                ("INC-000001", "open")]

        d: DaemonProcess = daemons(config, log).start()
        wait_until(lambda: [r for r in journal(state) if r[1] == "succeeded"],
                   what="the lost action to be decided and delivered after the restart")
        time.sleep(1.5)
        assert list(rx.count_by_key().values()) == [1]
        assert [x.body["event"] for x in rx.snapshot()] == ["opened"]
        assert "saved but not journaled before the last stop" in d.text()
        d.kill()  # and once more: nothing is decided twice
        d.start()
        time.sleep(1.5)
        assert list(rx.count_by_key().values()) == [1] and len(journal(state)) == 1
        assert d.terminate() == 0
        assert "Traceback" not in d.text()


def cli(api: str, token_file: Path, *args: str, user: str = "noc-alice"
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_USER", "NETREFLEX_FAULT")}
    return subprocess.run([*netreflex_cmd(), *args, "--api", api, "--token-file",
                           str(token_file)], capture_output=True, text=True, timeout=60,
                          env={**env, "USER": user})


def test_an_action_waiting_for_approval_survives_kill_9_and_runs_once_approved(
        tmp_path: Path, daemons: Any) -> None:
    with WebhookReceiver() as rx:
        config = write_config(tmp_path, rx.url, approval=True)
        log = tmp_path / "daemon.log"
        run_until_fault(config, log, "after_hold")
        ((key, state, attempts),) = journal(tmp_path / "state")
        assert (state, attempts, rx.snapshot()) == ("waiting_approval", 0, [])

        d: DaemonProcess = daemons(config, log).start()
        token = tmp_path / "secrets" / "api.token"
        waiting = cli(d.api_url, token, "actions", "--state", "waiting_approval", "--json")
        assert waiting.returncode == 0, waiting.stderr
        (row,) = json.loads(waiting.stdout)["actions"]
        assert row["key"] == key and row["expires_at"] > time.time()
        assert [v["outcome"] for v in row["verdicts"] if v["guardrail"] == "approval"] == [
            "waiting"]
        time.sleep(1.0)
        assert rx.snapshot() == []  # still nothing sent without a person

        ok = cli(d.api_url, token, "approve", key, "--reason", "checked with the field team")
        assert ok.returncode == 0, ok.stderr
        assert f"approved {key}" in ok.stdout and "as noc-alice" in ok.stdout
        rx.wait_for(lambda ds: len(ds) >= 1, timeout=20)
        wait_until(lambda: journal(tmp_path / "state")[0][1] == "succeeded",
                   what="the approved action to be delivered")

        again = cli(d.api_url, token, "deny", key, "--reason", "too late")
        assert again.returncode == 1
        assert "is succeeded, not waiting_approval" in again.stderr

        why = cli(d.api_url, token, "explain", key)
        assert why.returncode == 0, why.stderr
        assert "approval" in why.stdout and "approved by noc-alice" in why.stdout
        assert "guardrails (latest check):" in why.stdout

        d.kill()
        d.start()
        time.sleep(1.5)
        assert rx.count_by_key() == {key: 1}
        assert d.terminate() == 0


def test_deny_from_the_cli_blocks_it_for_good(tmp_path: Path, daemons: Any) -> None:
    with WebhookReceiver() as rx:
        config = write_config(tmp_path, rx.url, approval=True)
        d: DaemonProcess = daemons(config, tmp_path / "daemon.log").start()
        token = tmp_path / "secrets" / "api.token"
        (key, _, _) = wait_until(
            lambda: [r for r in journal(tmp_path / "state") if r[1] == "waiting_approval"],
            what="an action waiting for approval")[0]
        missing = cli(d.api_url, token, "deny", key)
        assert missing.returncode == 2 and "--reason" in missing.stderr  # argparse: required
        no = cli(d.api_url, token, "deny", key, "--reason", "planned work, not an outage",
                 user="noc-bob")
        assert no.returncode == 0, no.stderr
        assert journal(tmp_path / "state")[0][1] == "blocked"
        d.kill()
        d.start()
        time.sleep(1.5)
        assert rx.snapshot() == [] and journal(tmp_path / "state")[0][1] == "blocked"
        assert d.terminate() == 0
