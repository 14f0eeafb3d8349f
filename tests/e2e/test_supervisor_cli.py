"""The supervisor CLI against `netreflex run` polling a real snmpd: a port goes down, and
`status`, `incidents`, `incident`, `explain` and `actions` say what happened and why; a
wrong token exits 77, a daemon that is down exits 69. `silence` and `maintenance`: a
silenced port's outage opens planned, and once the silence is ended the next one does not."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.types import STATUS_DOWN
from tests.e2e.conftest import DaemonProcess, netreflex_cmd
from tests.support.receiver import WebhookReceiver
from tests.support.snmpd import Interface, SnmpdAgent

pytestmark = pytest.mark.e2e

TOKEN = "e2e-supervisor-token-0123456789abcdef"

SUBSCRIBERS = """id,device,port,monthly_revenue,sla_tier,email,consent_email
S-1,acc1,ge-0/0/1,30,residential,a@x.example,true
S-2,acc1,ge-0/0/2,45,residential,b@x.example,true
S-3,acc1,ge-0/0/2,250,business,c@x.example,false
"""


def write_config(tmp: Path, agent: SnmpdAgent, hook_url: str) -> Path:
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "api.token").write_text(TOKEN + "\n")
    (tmp / "subscribers.csv").write_text(SUBSCRIBERS)
    (tmp / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {"core": {"role": "core"},
                    "acc1": {"parents": ["core"], "role": "access",
                             "ports": ["ge-0/0/1", "ge-0/0/2", "ge-0/0/3"]}},
        "subscriber_files": ["subscribers.csv"],
    }))
    now = time.time()
    (tmp / "maintenance.yaml").write_text(yaml.safe_dump({"windows": [
        {"id": "core-upgrade", "reason": "JunOS upgrade (CHG-1)", "timezone": "UTC",
         "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 600)),
         "duration": "2h", "match": {"devices": ["core"]}},
        {"id": "core-weekly", "reason": "weekly checks", "timezone": "Europe/Lisbon",
         "every": {"days": ["sun"], "start": "02:00", "duration": "1h30m"},
         "match": {"devices": ["core"]}},
    ]}))
    (tmp / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook_url, "backoff_max": 1}},
        "rules": [{"name": "outages", "when": {"min_subscribers": 1}, "do": [{"target": "noc"}]},
                  {"name": "core-only", "when": {"role": ["core"]}, "do": [{"target": "noc"}]}],
    }, sort_keys=False))
    cfg = {
        "daemon": {"state_dir": str(tmp / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": "127.0.0.1:0", "api_token": {"file": "secrets/api.token"}},
        "polling": {"interval": 0.5, "timeout": 0.5, "retries": 0},
        "credentials": {"v2c": {"version": "2c", "community": agent.community}},
        "devices": {"acc1": {"address": "127.0.0.1",
                             "probes": [{"kind": "snmp", "credentials": "v2c",
                                         "port": agent.port}]}},
        "correlation": {"maintenance_file": "maintenance.yaml"},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    path = tmp / "netreflex.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Cli:
    def __init__(self, api: str, token_file: Path) -> None:
        self.api = api
        self.token_file = token_file

    def __call__(self, *args: str, api: str | None = None, token_file: Path | None = None,
                 env: dict[str, str] | None = None, user: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        opts = [] if env else ["--api", api or self.api,
                               "--token-file", str(token_file or self.token_file)]
        return subprocess.run(
            [*netreflex_cmd(), *args, *opts], capture_output=True, text=True, timeout=60,
            env={**os.environ, **(env or {}), **(user or {})},
        )

    def json(self, *args: str) -> Any:
        res = self(*args, "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


def wait_until(fn: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running(tmp_path: Path, daemons: Any
            ) -> Iterator[tuple[SnmpdAgent, WebhookReceiver, DaemonProcess, Cli]]:
    """snmpd with three ports on acc1, a webhook receiver, and `netreflex run` polling."""
    ifaces = [Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2"), Interface(3, "ge-0/0/3")]
    with SnmpdAgent(ifaces) as agent, WebhookReceiver() as rx:
        d: DaemonProcess = daemons(write_config(tmp_path, agent, rx.url),
                                   tmp_path / "daemon.log").start()
        yield agent, rx, d, Cli(d.api_url, tmp_path / "secrets" / "api.token")


def test_supervisor_commands_against_a_running_daemon(tmp_path: Path, daemons: Any) -> None:
    with running(tmp_path, daemons) as (agent, rx, d, cli):

        status = cli("status")
        assert status.returncode == 0, status.stderr
        assert re.search(r"^netreflex \S+ at http://127\.0\.0\.1:\d+/api/v1: ok, up ",
                         status.stdout)
        assert re.search(r"^devices polled\s+1\s*$", status.stdout, re.M)
        assert re.search(r"^open incidents\s+0\s", status.stdout, re.M)

        wait_until(lambda: 'outcome="ok",probe="snmp"} ' in d.metrics(), what="first polls")
        agent.set_oper(2, STATUS_DOWN)
        incidents = wait_until(lambda: cli.json("incidents")["incidents"], what="an incident")
        (inc,) = incidents
        assert inc["root"] == "link:acc1:ge-0/0/2" and inc["state"] == "open"
        assert inc["impact"]["subscriber_count"] == 2
        assert inc["impact"]["revenue_at_risk"] == 295.0

        table = cli("incidents")
        assert table.returncode == 0
        assert re.search(rf"^{inc['id']}\s+open\s+\S+\s+.*\s2\s+295\.00\s+link down on acc1 "
                         r"ge-0/0/2$", table.stdout, re.M), table.stdout

        one = cli("incident", inc["id"])
        assert one.returncode == 0
        assert "link down on acc1 ge-0/0/2" in one.stdout
        assert "subscribers: S-2, S-3" in one.stdout
        assert "acc1 ge-0/0/2 went down (snmp)" in one.stdout  # timeline

        # the webhook is delivered; then nothing is pending
        rx.wait_for(lambda ds: len(ds) >= 1)
        wait_until(lambda: cli.json("actions", "--pending")["count"] == 0,
                   what="the action to be delivered")
        actions = cli.json("actions", "--incident", inc["id"])["actions"]
        assert [(a["rule"], a["target"], a["state"]) for a in actions] == [
            ("outages", "noc", "succeeded")]
        listing = cli("actions")
        assert re.search(rf"^{actions[0]['key']}\s+{inc['id']}\s+opened\s+outages\s+noc\s+"
                         r"succeeded\s+1\s+-$", listing.stdout, re.M), listing.stdout

        why = cli("explain", inc["id"])
        assert why.returncode == 0, why.stderr
        assert "FIRED    outages -> noc" in why.stdout
        assert "no       core-only: role access is not in role [core]" in why.stdout
        assert actions[0]["key"] in why.stdout
        x = cli.json("explain", inc["id"])
        assert x["decisions"][0]["basis"] == "journal"

        act = cli("explain", actions[0]["key"])
        assert act.returncode == 0, act.stderr
        assert re.search(r"^rule\s+outages$", act.stdout, re.M)
        assert re.search(r"^target\s+noc \(webhook\)$", act.stdout, re.M)
        assert re.search(r"^state\s+succeeded$", act.stdout, re.M)
        assert re.search(r"^attempts\s+1$", act.stdout, re.M)

        # settings from the environment work the same as the options
        env = cli("status", env={"NETREFLEX_API": d.api_url,
                                 "NETREFLEX_TOKEN_FILE": str(cli.token_file)})
        assert env.returncode == 0, env.stderr

        missing = cli("incident", "INC-999999")
        assert missing.returncode == 1
        assert "no incident INC-999999" in missing.stderr

        wrong = tmp_path / "wrong.token"
        wrong.write_text("not-the-token-0123456789\n")
        denied = cli("incidents", token_file=wrong)
        assert denied.returncode == 77
        assert str(wrong) in denied.stderr and "rejected the token" in denied.stderr
        assert TOKEN not in denied.stderr + denied.stdout
        unreadable = cli("status", token_file=tmp_path / "nope.token")
        assert unreadable.returncode == 77
        assert f"cannot read the API token from {tmp_path / 'nope.token'}" in unreadable.stderr

        assert d.terminate() == 0
        down = cli("status")
        assert down.returncode == 69
        assert down.stderr.count("\n") == 1  # one clear line
        assert "connection refused" in down.stderr and d.api_url in down.stderr
        assert "Traceback" not in down.stderr
        assert TOKEN not in d.text()


def test_silence_and_maintenance_commands(tmp_path: Path, daemons: Any) -> None:
    with running(tmp_path, daemons) as (agent, _, d, cli):
        me = {"USER": "carol", "SUDO_USER": ""}
        host = socket.gethostname()

        empty = cli("silence", "list")
        assert empty.returncode == 0 and empty.stdout == "no silences\n"

        added = cli("silence", "add", "--device", "acc1", "--for", "2h",
                    "--reason", "optics swap (CHG-9)", user=me)
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("silenced SIL-000001 (devices acc1) until ")
        assert f"as carol@{host}: optics swap (CHG-9)" in added.stdout
        listing = cli("silence", "list")
        assert re.search(rf"^SIL-000001\s+active\s+[-\d]+ [:\d]+\s+[-\d]+ [:\d]+\s+"
                         rf"carol@{re.escape(host)}\s+devices acc1\s+optics swap \(CHG-9\)$",
                         listing.stdout, re.M), listing.stdout
        (sil,) = cli.json("silence", "list")["silences"]
        assert 7000 < sil["expires_at"] - time.time() <= 7200

        wait_until(lambda: 'outcome="ok",probe="snmp"} ' in d.metrics(), what="first polls")
        agent.set_oper(2, STATUS_DOWN)
        (inc,) = wait_until(lambda: cli.json("incidents")["incidents"], what="an incident")
        full = cli.json("incident", inc["id"])
        assert full["planned"] is True and full["planned_by"] == ["SIL-000001"]
        shown = cli("incident", inc["id"])
        assert re.search(r"^planned\s+yes, by SIL-000001 until ", shown.stdout, re.M)
        assert re.search(rf"^{inc['id']}\s+open \(planned\)\s", cli("incidents").stdout, re.M)

        ended = cli("silence", "expire", "SIL-000001", "--by", "dave")
        assert ended.returncode == 0, ended.stderr
        assert ended.stdout == ("ended SIL-000001 (devices acc1) as dave; created by "
                                f"carol@{host}: optics swap (CHG-9)\n")
        again = cli("silence", "expire", "SIL-000001", "--by", "dave")
        assert again.returncode == 1
        assert again.stderr.startswith("netreflex: silence SIL-000001 has already expired "
                                       "(ended by dave at ")
        assert cli("silence", "list").stdout == "no silences\n"
        assert re.search(r"^SIL-000001\s+ended by dave\s", cli("silence", "list", "--all")
                         .stdout, re.M)

        agent.set_oper(3, STATUS_DOWN)
        later = wait_until(lambda: [i for i in cli.json("incidents")["incidents"]
                                    if i["port"] == "ge-0/0/3"], what="a second incident")
        assert later[0]["planned"] is False

        events = cli.json("maintenance", "events")["events"]
        assert [(e["type"], e["silence"]["id"]) for e in events] == [
            ("silence_expired", "SIL-000001"), ("silence_created", "SIL-000001")]
        table = cli("maintenance", "events").stdout
        assert re.search(r"\sended\s+SIL-000001\s+dave\s+devices acc1\s", table), table
        assert re.search(rf"\screated\s+SIL-000001\s+carol@{re.escape(host)}\s", table)

        windows = cli("maintenance", "list")
        assert windows.returncode == 0, windows.stderr
        now, upcoming = windows.stdout.split("upcoming within 7d:\n")
        assert re.search(r"^core-upgrade\s+[-\d]+ [:\d]+\s+[-\d]+ [:\d]+\s+UTC\s+one-off\s+"
                         r"devices core\s+JunOS upgrade \(CHG-1\)$", now, re.M), now
        assert re.search(r"^core-weekly\s+\S+ 02:00\s+\S+ 03:30\s+Europe/Lisbon\s+"
                         r"every sun 02:00 for 1h30m\s+devices core\s+weekly checks$",
                         upcoming, re.M), upcoming
        m = cli.json("maintenance", "list", "--within", "1d")
        assert [w["id"] for w in m["active"]] == ["core-upgrade"] and m["within"] == 86400

        bad = cli("silence", "add", "--device", "nope", "--site", "mars", "--for", "9d",
                  "--reason", "x")
        assert bad.returncode == 64
        lines = bad.stderr.splitlines()
        assert [ln.split(": ")[2] for ln in lines] == [
            "match.devices[0]", "match.sites[0]", "duration"], bad.stderr
        assert lines[2].endswith("a silence lasts at most 168 h (correlation.max_silence); "
                                 "use a maintenance window")
        assert all(ln.startswith("netreflex: the API refused the request: ") for ln in lines)
        nothing = cli("silence", "add", "--for", "1h", "--reason", "x")
        assert nothing.returncode == 64 and "--device, --site" in nothing.stderr
        when = cli("silence", "add", "--device", "acc1", "--until", "tomorrow", "--reason", "x")
        assert when.returncode == 64 and "--until 'tomorrow'" in when.stderr
        within = cli("maintenance", "list", "--within", "soon")
        assert within.returncode == 64 and "within must be a duration" in within.stderr
        missing = cli("silence", "expire", "SIL-999999")
        assert missing.returncode == 1 and missing.stderr == "netreflex: no silence SIL-999999\n"
        assert cli.json("silence", "list", "--all")["count"] == 1
        assert "Traceback" not in d.text()
