"""`netreflex run` against a real net-snmp agent: a port goes down, the right subscribers
are named, a real HTTP receiver gets the webhook once -- also across a SIGKILL -- and
/metrics passes promtool."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.types import STATUS_DOWN, STATUS_UP
from tests.e2e.conftest import DaemonProcess, netreflex_cmd
from tests.support.receiver import Delivery, WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e

SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier,email,consent_email
S-1,acc1,ge-0/0/1,30,residential,a@x.example,true
S-2,acc1,ge-0/0/2,45,residential,b@x.example,true
S-3,acc1,ge-0/0/2,250,business,c@x.example,false
S-4,acc1,ge-0/0/3,3000,enterprise,d@x.example,true
"""


def write_config(tmp: Path, agent: SnmpdAgent, hook_url: str) -> Path:
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "auth").write_text(agent.v3_auth_key + "\n")
    (tmp / "secrets" / "priv").write_text(agent.v3_priv_key + "\n")
    (tmp / "subscribers.csv").write_text(SUBSCRIBERS)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"},
                    "acc1": {"parents": ["core"], "ports": ["ge-0/0/1", "ge-0/0/2", "ge-0/0/3"]},
                    "acc2": {"parents": ["core"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook_url, "backoff_max": 1}},
        "rules": [{"name": "outages", "when": {"min_subscribers": 1},
                   "do": [{"target": "noc"}]}],
    }))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": "127.0.0.1:0"},
        "polling": {"interval": 0.5, "timeout": 0.5, "retries": 0},
        "credentials": {
            "v3": {"version": "3", "user": agent.v3_user, "auth_protocol": "SHA",
                   "auth_key": {"file": "secrets/auth"}, "priv_protocol": "AES",
                   "priv_key": {"file": "secrets/priv"}},
            "v2c": {"version": "2c", "community": agent.community},
        },
        "devices": {
            "acc1": {"address": "127.0.0.1",
                     "probes": [{"kind": "snmp", "credentials": "v3", "port": agent.port}]},
            "acc2": {"address": "127.0.0.1",
                     "probes": [{"kind": "snmp", "credentials": "v2c", "port": agent.port}]},
        },
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def for_root(root: str, event: str) -> Callable[[list[Delivery]], bool]:
    def pred(ds: list[Delivery]) -> bool:
        return any(_is(d, root, event) for d in ds)
    return pred


def _is(d: Delivery, root: str, event: str) -> bool:
    b: Any = d.body
    return isinstance(b, dict) and b.get("event") == event and b["incident"]["root"] == root


def wait_until(fn: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def journal_states(state: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(state / "journal.db") as con:
        return con.execute("SELECT event, state FROM actions ORDER BY created_at").fetchall()


def test_port_down_webhook_once_across_sigkill_and_metrics(tmp_path: Path, daemons: Any) -> None:
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2"), Interface(3, "ge-0/0/3")]
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        config = write_config(tmp_path, agent, rx.url)
        d: DaemonProcess = daemons(config, tmp_path / "daemon.log").start()
        # baseline: both devices (v3 and v2c) polled successfully
        wait_until(lambda: 'outcome="ok",probe="snmp"} ' in d.metrics()
                   and 'netreflex_interface_oper_status{device="acc2",interface="ge-0/0/3"} 1.0'
                   in d.metrics(), what="first successful polls")

        agent.set_oper(2, STATUS_DOWN)
        got = rx.wait_for(for_root("link:acc1:ge-0/0/2", "opened"))
        opened = next(x for x in got if _is(x, "link:acc1:ge-0/0/2", "opened"))
        impact = opened.body["incident"]["impact"]
        assert impact["subscribers"] == ["S-2", "S-3"]
        assert impact["revenue_by_tier"] == {"business": 250.0, "residential": 45.0}
        assert opened.headers["Idempotency-Key"].startswith("nrx-")
        # acc2 saw the same port go down, but nobody is behind it: policy does not page
        assert not any(_is(x, "link:acc2:ge-0/0/2", "opened") for x in rx.snapshot())
        wait_until(lambda: ("opened", "succeeded") in journal_states(tmp_path / "state"),
                   what="the journal to record the delivery")

        d.kill()  # no chance to clean up
        d.start()
        assert int(d.wait_log(r"(\d+) open incident\(s\)").group(1)) >= 1
        time.sleep(2.0)  # several poll cycles after the restart
        assert rx.count_by_key()[opened.headers["Idempotency-Key"]] == 1
        assert sum(_is(x, "link:acc1:ge-0/0/2", "opened") for x in rx.snapshot()) == 1

        agent.set_oper(2, STATUS_UP)
        rx.wait_for(for_root("link:acc1:ge-0/0/2", "resolved"))
        time.sleep(1.0)
        assert sum(_is(x, "link:acc1:ge-0/0/2", "resolved") for x in rx.snapshot()) == 1

        exposition = d.metrics()
        promtool = shutil.which("promtool")
        assert promtool, "promtool is installed by scripts/test (Debian package prometheus)"
        lint = subprocess.run([promtool, "check", "metrics"], input=exposition.encode(),
                              capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
        assert 'netreflex_actions_total{executor="webhook",outcome="succeeded"}' in exposition
        assert "netreflex_poll_duration_seconds_bucket" in exposition
        assert 'netreflex_interface_in_octets_total{device="acc1",interface="ge-0/0/1"}' in exposition

        assert d.terminate() == 0
        log = d.text()
        assert "stopped (" in log
        for secret in (agent.v3_auth_key, agent.v3_priv_key):
            assert secret not in log


def test_agent_down_is_an_unreachable_incident(tmp_path: Path, daemons: Any) -> None:
    with SnmpdAgent([Interface(1, "ge-0/0/1"), Interface(3, "ge-0/0/3")]) as agent, \
            WebhookReceiver() as rx:
        config = write_config(tmp_path, agent, rx.url)
        d: DaemonProcess = daemons(config, tmp_path / "daemon.log").start()
        wait_until(lambda: 'outcome="ok",probe="snmp"} ' in d.metrics(), what="first polls")
        agent.stop()
        got = rx.wait_for(for_root("device:acc1", "opened"), timeout=30)
        inc = next(x for x in got if _is(x, "device:acc1", "opened")).body["incident"]
        assert inc["impact"]["subscribers"] == ["S-1", "S-2", "S-3", "S-4"]
        assert inc["severity"] == "major"
        assert 'netreflex_poll_errors_total{probe="snmp",reason="timeout"}' in d.metrics()
        assert d.terminate() == 0


def test_run_refuses_bad_config_with_exit_78(tmp_path: Path) -> None:
    bad = tmp_path / "netreflex.yaml"
    bad.write_text("daemon: {state_dir: /tmp}\ninventory: []\npolicy: p.yaml\nbogus: 1\n")
    res = subprocess.run([*netreflex_cmd(), "run", "--config", str(bad)], capture_output=True,
                         timeout=60)
    assert res.returncode == 78
    err = res.stderr.decode()
    assert f"{bad}:2: inventory: List should have at least 1 item" in err
    assert f"{bad}:4: bogus: unknown key" in err
    assert "Traceback" not in err
