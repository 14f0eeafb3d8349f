"""The daemon publishes every action's result (TMF688-style ``ActionStateChangeEvent``)
through each mqtt target with a ``result_topic``, against a real mosquitto."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_exactly_once import write_config
from tests.support import mosquitto as mq
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e


def test_action_results_are_published_to_the_result_topic(tmp_path: Path,
                                                          daemons: Any) -> None:
    with mq.Mosquitto() as broker, WebhookReceiver() as rx:
        config = write_config(tmp_path, rx.url)
        pol = yaml.safe_load((tmp_path / "policy.yaml").read_text())
        pol["targets"]["bus"] = {"kind": "mqtt", "host": "127.0.0.1", "port": broker.port,
                                 "timeout": 2}
        pol["targets"]["quiet-bus"] = {"kind": "mqtt", "host": "127.0.0.1",
                                       "port": broker.port, "result_topic": None}
        pol["rules"][0]["do"] += [{"target": "bus"}, {"target": "quiet-bus"}]
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(pol))
        # mosquitto_sub, a client that is not ours, listens for 15 seconds: one result
        # per action, each published once (through "bus"; "quiet-bus" publishes none)
        sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
             "-t", "netreflex/actions/#", "-v", "-W", "15"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            d: DaemonProcess = daemons(config, tmp_path / "daemon.log").start()
            out, err = sub.communicate(timeout=90)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait(10)
        got = {}
        lines = out.splitlines()
        assert len(lines) == 3, (out, err)
        for line in lines:
            topic, _, payload = line.partition(" ")
            event = json.loads(payload)
            got[event["event"]["action"]["target"]] = (topic, event)
        assert sorted(got) == ["bus", "noc", "quiet-bus"]
        for target, (topic, event) in got.items():
            assert topic == f"netreflex/actions/INC-000001/{target}"
            assert event["eventType"] == "ActionStateChangeEvent"
            assert event["correlationId"] == "INC-000001"
            action = event["event"]["action"]
            assert (action["outcome"], action["incidentId"]) == ("succeeded", "INC-000001")
            assert action["key"].startswith("nrx-")
        assert got["noc"][1]["event"]["action"]["executor"] == "webhook"
        assert d.terminate() == 0
        assert "Traceback" not in d.text() and "not published" not in d.text()
