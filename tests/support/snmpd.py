"""A real net-snmp ``snmpd`` on a free loopback UDP port, with scripted IF-MIB rows.

The agent is the independent C implementation; only ifTable, ifXTable and
ifTableLastChange come from :mod:`tests.support.ifmib_pass` (``pass_persist``), which
reads a JSON file this class rewrites -- so a test can take a port down and see what the
poller makes of it::

    with SnmpdAgent([Interface(1, "ge-0/0/1"), Interface(2, "ge-0/0/2")]) as agent:
        poller = SnmpPoller(device="r1", address=agent.address, port=agent.port,
                            credentials=agent.v3_credentials(), timeout=1.0)
        ...
        agent.set_oper(2, STATUS_DOWN)

v2c community ``public``; v3 user ``netreflex`` with SHA auth and AES privacy (keys in
:attr:`SnmpdAgent.v3_auth_key` / :attr:`SnmpdAgent.v3_priv_key`). Every start uses a
fresh ``--persistentDir``. :meth:`SnmpdAgent.restart` keeps the port: the device
"reboots", sysUpTime starts again from 0 and the v3 engine ID changes, so a v3 poller's
first poll after it times out and the next one rediscovers the engine. :meth:`stop` is
final when the agent made its own work directory (it is deleted). Ready in ~0.5 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from probes.snmp.config import SnmpV2c, SnmpV3

PASS_SCRIPT = Path(__file__).with_name("ifmib_pass.py")
IF_TABLE = ".1.3.6.1.2.1.2.2"
IFX_TABLE = ".1.3.6.1.2.1.31.1.1"
IF_TABLE_LAST_CHANGE = ".1.3.6.1.2.1.31.1.5"


@dataclass
class Interface:
    """One scripted interface. ``descr`` defaults to ``name``; status codes are IF-MIB's."""

    if_index: int
    name: str
    alias: str = ""
    admin: int = 1
    oper: int = 1
    speed_mbps: int = 1000
    in_octets: int = 0
    out_octets: int = 0
    in_errors: int = 0
    out_errors: int = 0
    descr: str | None = None
    oper_after_up: int = 1  # oper status after a SET of ifAdminStatus up (2: stays down)


class SnmpdError(RuntimeError):
    """snmpd did not start or answer; the message carries its captured output."""


class SnmpdAgent:
    """net-snmp snmpd serving ``interfaces``; use as a context manager or start()/stop()."""

    address = "127.0.0.1"
    community = "public"
    v3_user = "netreflex"
    v3_auth_key = "authpass123"  # SHA
    v3_priv_key = "privpass123"  # AES (128)

    def __init__(
        self,
        interfaces: Iterable[Interface],
        *,
        sys_name: str = "lab-snmpd",
        workdir: Path | None = None,
        start_timeout: float = 10.0,
        writable: bool = False,
    ) -> None:
        self.interfaces: dict[int, Interface] = {i.if_index: i for i in interfaces}
        self.writable = writable  # rwcommunity / rwuser: ifAdminStatus takes SETs
        self.sets: list[dict[str, Any]] = []
        self.sys_name = sys_name
        self.if_table_last_change = 0
        self.overrides: dict[str, tuple[str, str] | None] = {}
        self.start_timeout = start_timeout
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="snmpd-")) if workdir is None else workdir
        self.data_file = self.workdir / "ifmib.json"
        self.log_file = self.workdir / "snmpd.log"
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stamp = 0

    # --- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise SnmpdError("snmpd is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> SnmpdAgent:
        """Start snmpd (on a free port unless restarting) and wait until it answers."""
        self._write()
        attempts = 1 if self._port is not None else 3
        for attempt in range(attempts):
            if self._port is None or attempt:
                self._port = free_udp_port()
            self._spawn()
            try:
                self._wait_ready()
                return self
            except SnmpdError as exc:
                self._terminate()
                # Another process took the port between our probe and snmpd's bind.
                lost_port = "Error opening specified endpoint" in str(exc)
                if attempt == attempts - 1 or not lost_port:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop snmpd (by its PID) and remove the work directory if we made it."""
        self._terminate()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port, with a fresh persistent directory."""
        self._terminate()
        self.start()

    def __enter__(self) -> SnmpdAgent:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def output(self) -> str:
        """What snmpd printed so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- scripting the agent -------------------------------------------------------

    def set_oper(self, if_index: int, status: int) -> None:
        self.update(if_index, oper=status)

    def set_admin(self, if_index: int, status: int) -> None:
        self.update(if_index, admin=status)

    def update(self, if_index: int, **fields: Any) -> None:
        """Change fields of one interface (e.g. ``in_octets=...``); visible at once."""
        self.interfaces[if_index] = dataclasses.replace(self.interfaces[if_index], **fields)
        self._write()

    def set_interfaces(self, interfaces: Iterable[Interface]) -> None:
        """Replace the whole table; ifTableLastChange moves like a real agent's."""
        self.interfaces = {i.if_index: i for i in interfaces}
        self.if_table_last_change += 100
        self._write()

    def override(self, oid: str, kind: str | None, value: str = "") -> None:
        """Serve ``oid`` as pass_persist type ``kind`` (``string``, ``integer``,
        ``counter64``, ...) with ``value``; ``kind=None`` removes the row."""
        self.overrides[oid] = None if kind is None else (kind, value)
        self._write()

    def read_back(self) -> list[dict[str, Any]]:
        """Take in what SETs changed in the agent's file; returns the SETs so far, in
        order (``{"oid": ".1.3.6.1.2.1.2.2.1.7.2", "value": 2}``)."""
        data = json.loads(self.data_file.read_text(encoding="utf-8"))
        self.sets = list(data.get("sets", []))
        fields = {f.name for f in dataclasses.fields(Interface)}
        self.interfaces = {
            int(d["if_index"]): Interface(**{k: v for k, v in d.items() if k in fields})
            for d in data.get("interfaces", [])
        }
        return self.sets

    def clear_overrides(self) -> None:
        """Serve the scripted interfaces only, as before any :meth:`override`."""
        self.overrides.clear()
        self._write()

    # --- credentials ---------------------------------------------------------------

    def v2c_credentials(self, community: str | None = None) -> SnmpV2c:
        return SnmpV2c(version="2c", community=SecretStr(community or self.community))

    def v3_credentials(
        self, *, auth_key: str | None = None, priv_key: str | None = None
    ) -> SnmpV3:
        return SnmpV3(
            version="3",
            user=self.v3_user,
            auth_protocol="SHA",
            auth_key=SecretStr(auth_key or self.v3_auth_key),
            priv_protocol="AES",
            priv_key=SecretStr(priv_key or self.v3_priv_key),
        )

    # --- internals -----------------------------------------------------------------

    def _write(self) -> None:
        data = {
            "interfaces": [
                dataclasses.asdict(i) | {"descr": i.descr or i.name}
                for i in sorted(self.interfaces.values(), key=lambda i: i.if_index)
            ],
            "if_table_last_change": self.if_table_last_change,
            "overrides": self.overrides,
            "sets": self.sets,
        }
        tmp = self.data_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        # The script re-reads when (inode, mtime) changes: make mtime strictly increase
        # even for writes within one clock tick.
        self._stamp = max(time.time_ns(), self._stamp + 1_000)
        os.utime(tmp, ns=(self._stamp, self._stamp))
        os.replace(tmp, self.data_file)

    def _config(self) -> str:
        run = f"{sys.executable} {PASS_SCRIPT}"
        data = self.data_file
        return "\n".join(
            [
                f"agentAddress udp:{self.address}:{self.port}",
                f"{'rw' if self.writable else 'ro'}community {self.community} {self.address}",
                f'createUser {self.v3_user} SHA "{self.v3_auth_key}" AES "{self.v3_priv_key}"',
                f"{'rw' if self.writable else 'ro'}user {self.v3_user} priv",
                f"sysName {self.sys_name}",
                "dontLogTCPWrappersConnects yes",
                f"pass_persist {IF_TABLE} {run} {IF_TABLE} {data}",
                f"pass_persist {IFX_TABLE} {run} {IFX_TABLE} {data}",
                f"pass_persist {IF_TABLE_LAST_CHANGE} {run} {IF_TABLE_LAST_CHANGE} {data}",
                "",
            ]
        )

    def _spawn(self) -> None:
        snmpd = shutil.which("snmpd") or "/usr/sbin/snmpd"
        if not os.path.exists(snmpd):
            raise SnmpdError("snmpd not found: apt-get install snmpd")
        conf = self.workdir / "snmpd.conf"
        conf.write_text(self._config(), encoding="utf-8")
        persist = Path(tempfile.mkdtemp(prefix="persist-", dir=self.workdir))
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [snmpd, "-f", "-Lo", "-C", "-c", str(conf), "-m", "",
                 "-I", "-smux,ifTable,ifXTable", f"--persistentDir={persist}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self) -> None:
        """Poll with snmpget until sysUpTime and both scripted tables answer."""
        first = min(self.interfaces, default=None)
        oids = [".1.3.6.1.2.1.1.3.0"]
        if first is not None:
            oids += [f"{IF_TABLE}.1.8.{first}", f"{IFX_TABLE}.1.1.{first}"]
        cmd = ["snmpget", "-v2c", "-c", self.community, "-r0", "-t0.3", "-On", "-m", "",
               f"{self.address}:{self.port}", *oids]
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SnmpdError(
                    f"snmpd exited with {self._proc.returncode}:\n{self.output()}"
                )
            probe = subprocess.run(cmd, capture_output=True, text=True, check=False)
            last = probe.stdout + probe.stderr
            if probe.returncode == 0 and "No Such" not in last:
                return
            time.sleep(0.05)
        raise SnmpdError(
            f"snmpd on port {self.port} not ready after {self.start_timeout} s "
            f"(last snmpget: {last.strip()!r}); its output:\n{self.output()}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
