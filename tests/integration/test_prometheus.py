"""A real Prometheus scrapes a real daemon; our alerting rules pass promtool and behave."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "etc" / "prometheus" / "netreflex-rules.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is installed by scripts/test (Debian package prometheus)"
    return path


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_rules_pass_promtool_check() -> None:
    res = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout


def test_rules_fire_when_they_should(tmp_path: Path) -> None:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="netreflex",instance="noc1:9731"}', "values": "1 0 0 0 0"},
                    {"series": 'netreflex_devices{instance="noc1:9731"}', "values": "10x10"},
                    {"series": 'netreflex_polls_total{instance="noc1:9731",outcome="ok",probe="snmp"}',
                     "values": "0+10x4 40x10"},
                    {"series": 'netreflex_actions_total{instance="noc1:9731",executor="webhook",outcome="failed"}',
                     "values": "0 0 1 1 1"},
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "NetreflexDown", "exp_alerts": [{
                        "exp_labels": {"severity": "critical", "job": "netreflex",
                                       "instance": "noc1:9731"},
                        "exp_annotations": {
                            "summary": "netreflex on noc1:9731 is down",
                            "description": "Prometheus cannot scrape netreflex: nothing is "
                            "watching the network or acting on faults. Check `systemctl status "
                            "netreflex` and `journalctl -u netreflex`."}}]},
                    {"eval_time": "1m", "alertname": "NetreflexDown", "exp_alerts": []},
                    {"eval_time": "4m", "alertname": "NetreflexPollingStalled", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "NetreflexPollingStalled",
                     "exp_alerts": [{"exp_labels": {"severity": "critical",
                                                    "instance": "noc1:9731"},
                                     "exp_annotations": {
                                         "summary": "netreflex on noc1:9731 has stopped polling",
                                         "description": "0 polls/s over 5 minutes although "
                                         "devices are configured. The scheduler is stuck or every "
                                         "poll hangs; the systemd watchdog should restart it."}}]},
                    {"eval_time": "3m", "alertname": "NetreflexActionsFailing",
                     "exp_alerts": [{"exp_labels": {"severity": "warning", "executor": "webhook",
                                                    "instance": "noc1:9731", "outcome": "failed"},
                                     "exp_annotations": {
                                         "summary": "netreflex gave up on 1 action(s) via webhook",
                                         "description": "An action failed for good (a 4xx answer "
                                         "or retries exhausted). `netreflex actions --state failed` "
                                         "shows the error of each."}}]},
                ],
            }
        ],
    }
    f = tmp_path / "tests.yml"
    f.write_text(yaml.safe_dump(tests, sort_keys=False))
    res = subprocess.run([tool("promtool"), "test", "rules", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_real_prometheus_scrapes_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({"devices": {"core1": {}}}))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"targets": {}, "rules": []}))
    mport = free_tcp_port()
    cfg = tmp_path / "netreflex.yaml"
    cfg.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(tmp_path / "state"), "metrics_listen": f"127.0.0.1:{mport}"},
        "inventory": ["inventory.yaml"], "policy": "policy.yaml",
    }))
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    pport = free_tcp_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "netreflex",
                            "static_configs": [{"targets": [f"127.0.0.1:{mport}"]}]}],
    }))
    prom_log = (tmp_path / "prometheus.log").open("wb")
    prom = None
    try:
        daemon.start()
        prom = subprocess.Popen(
            [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=prom_log, stderr=prom_log, stdin=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{pport}/api/v1"
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                targets = get_json(f"{base}/targets")["data"]["activeTargets"]
                health = targets[0]["health"] if targets else None
                if health == "up":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert health == "up", (tmp_path / "prometheus.log").read_text()[-3000:]
        while time.monotonic() < deadline + 10:
            result = get_json(f"{base}/query?query=netreflex_build_info")["data"]["result"]
            if result:
                break
            time.sleep(0.5)
        assert result and result[0]["metric"]["version"]
        rules = get_json(f"{base}/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"NetreflexDown"}
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        prom_log.close()
        daemon.ensure_stopped()
