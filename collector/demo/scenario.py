"""`netreflex demo`: a simulated ISP on loopback, the real daemon against it, faults, and
what the daemon saw and did -- shown as it happens.

The daemon hears about the network three ways: it polls every device over SNMP, the
devices send it linkDown/linkUp traps, and the core router streams its interface states
over gNMI. Each incident says which of them saw the fault first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from collector.demo.agents import SimulatedFleet
from collector.demo.gnmi import DemoGnmiTarget
from collector.demo.topology import (
    GNMI_DEVICE,
    GNMI_PASSWORD,
    GNMI_USERNAME,
    TRAP_COMMUNITY,
    fleet_specs,
    nodes,
    subscribers,
    write_files,
)

STEP_TIMEOUT = 30.0


class Output:
    def __init__(self, json_output: bool, stream: TextIO = sys.stdout) -> None:
        self.json = json_output
        self.stream = stream
        self.t0 = time.monotonic()

    def emit(self, kind: str, text: str, **data: Any) -> None:
        if self.json:
            print(
                json.dumps(
                    {"type": kind, "t": round(time.monotonic() - self.t0, 2), **data},
                    sort_keys=True,
                ),
                file=self.stream,
                flush=True,
            )
        else:
            print(text, file=self.stream, flush=True)


class Receiver:
    """The NOC's webhook endpoint, as the demo plays it: records every action delivered."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            body["_idempotency_key"] = request.headers.get("Idempotency-Key")
            self.deliveries.append(body)
            for fn in self.listeners:
                fn(body)
            self.changed.set()
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/noc", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/noc"

    async def wait(self, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_TIMEOUT
        seen = 0
        while True:
            for d in self.deliveries[seen:]:
                if pred(d):
                    return d
            seen = len(self.deliveries)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"the daemon did not report {what} within {STEP_TIMEOUT:.0f}s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.changed.wait()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class DemoError(Exception):
    pass


def _money(v: float) -> str:
    return f"${v:,.2f}"


def first_seen(inc: dict[str, Any]) -> str:
    """The incident's first timeline entry, e.g. "olt1 pon0/3 went DOWN (trap)": what the
    daemon heard first, and from where (trap, gnmi, snmp)."""
    timeline = inc.get("timeline") or [{}]
    return str(timeline[0].get("text", ""))


def describe(out: Output, d: dict[str, Any]) -> None:
    inc = d["incident"]
    imp = inc["impact"]
    event = d["event"]
    seen = first_seen(inc)
    if event == "opened":
        tiers = (
            ", ".join(
                f"{k} {imp['subscribers_by_tier'][k]} ({_money(v)})"
                for k, v in imp["revenue_by_tier"].items()
            )
            or "none"
        )
        lines = [
            f"  INCIDENT {inc['id']} opened [{inc['severity']}]: {inc['title']}",
            f"    root cause        : {inc['root']}",
            f"    first seen        : {seen}",
            f"    suppressed        : {', '.join(inc['symptoms']) or 'none'}",
            f"    devices cut off   : {', '.join(imp['devices']) or 'none'}",
            f"    subscribers hit   : {imp['subscriber_count']} -- by tier: {tiers}",
            f"    revenue at risk   : {_money(imp['revenue_at_risk'])}/month",
            f"    first few         : {', '.join(imp['subscribers'][:8])}"
            + (" ..." if imp["subscriber_count"] > 8 else ""),
        ]
        text = "\n".join(lines)
    elif event == "resolved":
        mins = inc["resolved_at"] - inc["opened_at"]
        text = (
            f"  ALL-CLEAR {inc['id']} resolved after {mins:.0f}s: {inc['title']} "
            f"({imp['subscriber_count']} subscribers back)"
        )
    else:
        text = (
            f"  INCIDENT {inc['id']} {event}: now {len(inc['symptoms'])} symptom(s), "
            f"{imp['subscriber_count']} subscribers, {_money(imp['revenue_at_risk'])}"
        )
    out.emit(
        "incident",
        text,
        event=event,
        incident=inc["id"],
        root=inc["root"],
        title=inc["title"],
        severity=inc["severity"],
        symptoms=inc["symptoms"],
        devices=imp["devices"],
        subscribers=imp["subscribers"],
        subscriber_count=imp["subscriber_count"],
        revenue_at_risk=imp["revenue_at_risk"],
        revenue_by_tier=imp["revenue_by_tier"],
        first_seen=seen,
        timeline=[t["text"] for t in inc.get("timeline", ())],
    )
    out.emit(
        "action",
        f"    action fired      : webhook noc-webhook (rule {d['rule']}, "
        f"idempotency key {d['_idempotency_key']})",
        target="noc-webhook",
        rule=d["rule"],
        event=event,
        incident=inc["id"],
        key=d["_idempotency_key"],
    )


async def _daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    fh = log.open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collector.cli",
            "run",
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
        )
    finally:
        fh.close()


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(15):
            return await proc.wait()
    except TimeoutError:
        proc.kill()
        return await proc.wait()


def _free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free right now, for the daemon's trap listener to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _scenario(out: Output, base: Path) -> int:
    specs = fleet_specs()
    subs = subscribers()
    trap_port = _free_udp_port()
    out.emit(
        "setup",
        f"netreflex demo: simulated ISP with {len(specs)} SNMP agents and "
        f"{len(subs)} subscribers on loopback (files in {base})\n"
        f"  the daemon polls every device over SNMP, receives their linkDown/linkUp traps "
        f"on 127.0.0.1:{trap_port}, and streams {GNMI_DEVICE}'s interfaces over gNMI",
        devices=[s.name for s in specs],
        subscribers=len(subs),
        dir=str(base),
        trap_port=trap_port,
        gnmi_device=GNMI_DEVICE,
    )
    rx = Receiver()
    await rx.start()
    rx.listeners.append(lambda d: describe(out, d))
    core = next(s for s in specs if s.name == GNMI_DEVICE)
    gnmi = DemoGnmiTarget(
        [i.name for i in core.interfaces],
        address=core.address,
        username=GNMI_USERNAME,
        password=GNMI_PASSWORD,
    )
    fleet = SimulatedFleet(
        specs, trap_destination=("127.0.0.1", trap_port), trap_community=TRAP_COMMUNITY
    )
    try:
        async with fleet, gnmi:
            ports = {n: fleet.port(n) for n in fleet.devices}
            config = write_files(
                base,
                ports=ports,
                webhook_url=rx.url,
                addresses={n: fleet.address_of(n) for n in fleet.devices},
                gnmi_ports={GNMI_DEVICE: gnmi.port},
                trap_port=trap_port,
            )
            proc = await _daemon(config, base / "daemon.log")
            out.emit(
                "daemon",
                f"started `netreflex run --config {config}` (pid {proc.pid}); polling every "
                f"second, gNMI to {GNMI_DEVICE} at {core.address}:{gnmi.port}",
                pid=proc.pid,
                config=str(config),
            )
            try:
                await _wait_for_polls(base, proc, gnmi)
                await _steps(out, fleet, gnmi, rx, proc)
            finally:
                rc = await _stop(proc)
            out.emit("daemon", f"daemon stopped with exit code {rc}", pid=proc.pid, exit_code=rc)
    finally:
        await rx.stop()
    _summary(out, base, rx, fleet)
    return 0 if rc == 0 else 1


async def _wait_for_polls(
    base: Path, proc: asyncio.subprocess.Process, gnmi: DemoGnmiTarget
) -> None:
    log = base / "daemon.log"
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise DemoError(f"the daemon exited with {proc.returncode}:\n{log.read_text()}")
        if "started:" in log.read_text(errors="replace") and gnmi.open_streams:
            await asyncio.sleep(2.5)  # a couple of poll cycles: the baseline
            return
        await asyncio.sleep(0.1)
    raise DemoError(
        f"the daemon did not start (or subscribe over gNMI) within {STEP_TIMEOUT:.0f}s:\n"
        f"{log.read_text()}"
    )


async def _steps(
    out: Output,
    fleet: SimulatedFleet,
    gnmi: DemoGnmiTarget,
    rx: Receiver,
    proc: asyncio.subprocess.Process,
) -> None:
    def port_index(device: str, port: str) -> int:
        node = next(n for n in nodes() if n.name == device)
        return node.ports.index(port) + 1

    # 1. one access port goes down, then comes back
    out.emit(
        "step",
        "\n[1] fault: olt1 port pon0/3 goes down (a fibre cut to one PON tree)",
        step=1,
        fault="olt1 pon0/3 down",
    )
    fleet.set_oper_status("olt1", port_index("olt1", "pon0/3"), up=False)
    await rx.wait(
        lambda d: d["event"] == "opened" and d["incident"]["root"] == "link:olt1:pon0/3",
        "the pon0/3 incident",
    )
    await asyncio.sleep(1.5)
    out.emit("step", "\n[1] repair: olt1 pon0/3 comes back", step=1, repair="olt1 pon0/3 up")
    fleet.set_oper_status("olt1", port_index("olt1", "pon0/3"), up=True)
    await rx.wait(
        lambda d: d["event"] == "resolved" and d["incident"]["root"] == "link:olt1:pon0/3",
        "the pon0/3 all-clear",
    )
    # let the network settle: the daemon files what it heard in the last couple of seconds
    # with the next incident, and step 1's all-clear is not part of step 2's story
    await asyncio.sleep(2.5)

    # 2. a whole aggregation switch dies
    out.emit(
        "step",
        "\n[2] fault: aggregation switch agg1 loses power. olt1 and olt2 hang "
        "only off agg1 and go dark with it; olt3 is dual-homed (agg1 + agg2)",
        step=2,
        fault="agg1 dead",
    )
    for dev in ("agg1", "olt1", "olt2"):
        fleet.set_silent(dev, True)
    # The links to agg1 drop as its ports go dark. They are flipped once the daemon's next
    # poll has hit the dead agg1, so that what the events say and what the poller finds
    # fall within the daemon's correlation window (the 2 s hold-down) however the poll
    # cycle happens to be phased.
    await _polled(fleet, "agg1")
    # the core's side of the link is streamed over gNMI (core1 sends no traps); its SNMP
    # agent agrees, so the next poll confirms the gNMI update rather than contradicting it
    gnmi.set_oper_status("xe-0/0/1", up=False)
    fleet.set_oper_status("core1", port_index("core1", "xe-0/0/1"), up=False)
    await asyncio.sleep(0.2)  # the core's gNMI update first, then olt3's trap
    fleet.set_oper_status("olt3", port_index("olt3", "uplink1"), up=False)
    await rx.wait(
        lambda d: d["event"] == "opened" and d["incident"]["root"] == "device:agg1",
        "the agg1 incident",
    )
    await asyncio.sleep(2.0)
    out.emit("step", "\n[2] repair: agg1 is powered back on", step=2, repair="agg1 back")
    for dev in ("agg1", "olt1", "olt2"):
        fleet.set_silent(dev, False)
    gnmi.set_oper_status("xe-0/0/1", up=True)
    fleet.set_oper_status("core1", port_index("core1", "xe-0/0/1"), up=True)
    fleet.set_oper_status("olt3", port_index("olt3", "uplink1"), up=True)
    await rx.wait(
        lambda d: d["event"] == "resolved" and d["incident"]["root"] == "device:agg1",
        "the agg1 all-clear",
    )
    await asyncio.sleep(2.5)  # let stragglers (if any) show up before the summary
    if proc.returncode is not None:
        raise DemoError(f"the daemon exited early with {proc.returncode}")


async def _polled(fleet: SimulatedFleet, device: str) -> None:
    """Wait until a silent device drops a request: the daemon has polled it."""
    before = fleet.stats(device).dropped
    deadline = time.monotonic() + STEP_TIMEOUT
    while fleet.stats(device).dropped == before:
        if time.monotonic() > deadline:
            raise DemoError(f"the daemon did not poll {device} within {STEP_TIMEOUT:.0f}s")
        await asyncio.sleep(0.02)


def _summary(out: Output, base: Path, rx: Receiver, fleet: SimulatedFleet) -> None:
    db = base / "state" / "journal.db"
    rows: list[tuple[str, str, str, str]] = []
    if db.exists():
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute(
                "SELECT incident_id, event, target, state FROM actions ORDER BY created_at"
            ).fetchall()
    keys = [d["_idempotency_key"] for d in rx.deliveries]
    dupes = len(keys) - len(set(keys))
    out.emit(
        "summary",
        f"\nsummary: {len(rows)} action(s) journaled, "
        f"{len(rx.deliveries)} webhook(s) received, {dupes} duplicate(s); "
        f"the devices sent {fleet.traps_sent} trap(s)",
        actions=[{"incident": r[0], "event": r[1], "target": r[2], "state": r[3]} for r in rows],
        webhooks=len(rx.deliveries),
        duplicates=dupes,
        traps_sent=fleet.traps_sent,
    )
    for r in rows:
        out.emit(
            "journal",
            f"  {r[0]} {r[1]:<8} -> {r[2]:<12} {r[3]}",
            incident=r[0],
            event=r[1],
            target=r[2],
            state=r[3],
        )


def run_demo(*, json_output: bool = False, keep: bool = False) -> int:
    out = Output(json_output)
    base = Path(tempfile.mkdtemp(prefix="netreflex-demo-"))
    try:
        return asyncio.run(_scenario(out, base))
    except DemoError as exc:
        out.emit("error", f"demo failed: {exc}", error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if keep:
            out.emit("kept", f"kept {base}", dir=str(base))
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_demo(json_output="--json" in sys.argv))
