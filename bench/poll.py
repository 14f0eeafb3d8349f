"""Client CPU of one SNMP poll cycle over a simulated fleet: netreflex vs net-snmp.

    /tmp/venv/bin/python bench/poll.py --devices 200

Generates one ``.snmprec`` per device (48-port switch: system group, ifTable, ifXTable),
serves them with ``--agents`` ``snmpsim-command-responder`` processes on free loopback
ports (community = file name; snmpsim is single-threaded and slow, so the fleet is split
between processes), then, against the same agents:

(a) polls every device with netreflex's ``SnmpPoller`` (one warm-up cycle, which also
    reads names, then ``--cycles`` measured steady-state cycles, ``--concurrency`` devices
    at a time) and measures this process's CPU (``time.process_time``);
(b) runs ``snmpbulkwalk -v2c -c DEVICE -Cr50 -On -Oq`` for the same six status columns of
    the same devices (``--walk-parallel`` at a time) and measures the children's CPU
    (``getrusage(RUSAGE_CHILDREN)``).

Both are divided by the varbinds received. snmpsim's own CPU (~17 ms per device poll) is
the agent's, not the client's: it is not counted, but it bounds the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

try:
    import probes  # noqa: F401
except ImportError:  # run from a checkout: python bench/poll.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from probes.snmp import SnmpPoller, SnmpV2c
from probes.snmp.parse import STATUS_COLUMNS

PORTS = 48


# --- the fleet ---------------------------------------------------------------------


def device_records(n: int, rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """(oid, snmprec type, value) rows of one 48-port access switch."""
    yield "1.3.6.1.2.1.1.1.0", "4", "Juniper Networks, Inc. ex4300-48t Ethernet Switch, " \
        "kernel JUNOS 21.4R3-S4.9"
    yield "1.3.6.1.2.1.1.2.0", "6", "1.3.6.1.4.1.2636.1.1.1.2.133"
    yield "1.3.6.1.2.1.1.3.0", "67", str(rng.randrange(100_000, 4_000_000_000))
    yield "1.3.6.1.2.1.1.4.0", "4", "noc@example.net"
    yield "1.3.6.1.2.1.1.5.0", "4", f"acc-sw-{n:04d}"
    yield "1.3.6.1.2.1.1.6.0", "4", f"POP {n // 20:02d}, rack {n % 20}"
    yield "1.3.6.1.2.1.1.7.0", "2", "6"
    yield "1.3.6.1.2.1.2.1.0", "2", str(PORTS)
    for p in range(PORTS):
        i = 513 + p
        fpc, pic = divmod(p, 48)
        name = f"ge-{fpc}/{pic // 24}/{p % 48}"
        up = rng.random() < 0.8
        admin = "1" if up or rng.random() < 0.5 else "2"
        speed = 1000 if p < 44 else 10_000
        in_oct = rng.randrange(0, 2**50) if up else 0
        out_oct = rng.randrange(0, 2**50) if up else 0
        mac = f"00{n:04x}{i:06x}"
        table = {
            1: ("2", str(i)), 2: ("4", name), 3: ("2", "6"), 4: ("2", "1514"),
            5: ("66", str(speed * 1_000_000 if speed < 4000 else 4_294_967_295)),
            6: ("4x", mac), 7: ("2", admin), 8: ("2", "1" if up else "2"),
            9: ("67", str(rng.randrange(0, 100_000))), 10: ("65", str(in_oct % 2**32)),
            11: ("65", str(rng.randrange(0, 2**32))), 13: ("65", str(rng.randrange(0, 99))),
            14: ("65", str(rng.randrange(0, 5000))), 15: ("65", "0"),
            16: ("65", str(out_oct % 2**32)), 17: ("65", str(rng.randrange(0, 2**32))),
            19: ("65", str(rng.randrange(0, 99))), 20: ("65", str(rng.randrange(0, 50))),
        }
        for col, (kind, value) in table.items():
            yield f"1.3.6.1.2.1.2.2.1.{col}.{i}", kind, value
        xtable = {
            1: ("4", name), 2: ("65", str(rng.randrange(0, 2**32))),
            3: ("65", str(rng.randrange(0, 2**32))), 4: ("65", str(rng.randrange(0, 2**32))),
            5: ("65", str(rng.randrange(0, 2**32))), 6: ("70", str(in_oct)),
            7: ("70", str(rng.randrange(0, 2**50))), 10: ("70", str(out_oct)),
            11: ("70", str(rng.randrange(0, 2**50))), 15: ("66", str(speed)),
            16: ("2", "2"), 17: ("2", "1"),
            18: ("4", f"cust-{n:04d}-{p:02d} FTTB" if up else ""), 19: ("67", "0"),
        }
        for col, (kind, value) in xtable.items():
            yield f"1.3.6.1.2.1.31.1.1.1.{col}.{i}", kind, value
    yield "1.3.6.1.2.1.31.1.5.0", "67", str(rng.randrange(0, 100_000))


def write_fleet(work: Path, devices: int, agents: int) -> list[tuple[int, str]]:
    """Write the fleet into ``work/agentK/data``; return (agent number, community) pairs."""
    rng = random.Random(161)
    fleet = []
    for k in range(agents):
        (work / f"agent{k}" / "data").mkdir(parents=True)
        (work / f"agent{k}" / "cache").mkdir()
    for n in range(devices):
        community, k = f"dev{n:04d}", n % agents
        rows = sorted(device_records(n, rng), key=lambda r: tuple(map(int, r[0].split("."))))
        text = "".join(f"{oid}|{kind}|{value}\n" for oid, kind, value in rows)
        (work / f"agent{k}" / "data" / f"{community}.snmprec").write_text(text, "ascii")
        fleet.append((k, community))
    return fleet


# --- the agent ---------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_snmpsim(work: Path, port: int) -> subprocess.Popen[bytes]:
    """snmpsim serving ``work/data`` (indexes in ``work/cache``, output in a log file)."""
    exe = shutil.which("snmpsim-command-responder", path=os.path.dirname(sys.executable)) \
        or shutil.which("snmpsim-command-responder")
    if exe is None:
        raise SystemExit("snmpsim-command-responder not found: pip install snmpsim pysmi")
    log = (work / "snmpsim.log").open("wb")
    return subprocess.Popen(
        [exe, f"--data-dir={work / 'data'}", f"--cache-dir={work / 'cache'}",
         f"--agent-udpv4-endpoint=127.0.0.1:{port}", "--logging-method=stdout",
         "--log-level=error"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
    )


def wait_ready(proc: subprocess.Popen[bytes], work: Path, port: int, community: str,
               deadline_s: float) -> float:
    started = time.monotonic()
    cmd = ["snmpget", "-v2c", "-c", community, "-r0", "-t1", "-On", "-m", "",
           f"127.0.0.1:{port}", "1.3.6.1.2.1.1.3.0"]
    while time.monotonic() - started < deadline_s:
        if proc.poll() is not None:
            break
        if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    output = (work / "snmpsim.log").read_text(errors="replace")[-3000:]
    raise SystemExit(f"snmpsim not ready after {deadline_s} s (exit {proc.poll()}):\n{output}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the two clients ---------------------------------------------------------------


@dataclass
class Figures:
    cpu_s: float
    wall_s: float
    varbinds: int
    cycles: int
    errors: int

    @property
    def us_per_varbind(self) -> float:
        return self.cpu_s / self.varbinds * 1e6 if self.varbinds else float("nan")


async def bench_netreflex(fleet: list[tuple[int, str]], args: argparse.Namespace
                          ) -> tuple[Figures, Figures]:
    pollers = [
        SnmpPoller(device=c, address="127.0.0.1", port=port,
                   credentials=SnmpV2c(version="2c", community=SecretStr(c)),
                   timeout=args.timeout, max_repetitions=args.max_repetitions)
        for port, c in fleet
    ]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(poller: SnmpPoller) -> tuple[int, bool]:
        async with gate:
            result = await poller.poll()
        return result.varbinds, result.ok

    async def cycle() -> tuple[int, int]:
        results = await asyncio.gather(*(one(p) for p in pollers))
        return sum(v for v, _ in results), sum(not ok for _, ok in results)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    warm_vb, warm_err = await cycle()
    warm = Figures(time.process_time() - cpu0, time.perf_counter() - wall0, warm_vb, 1,
                   warm_err)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    varbinds = errors = 0
    for _ in range(args.cycles):
        vb, err = await cycle()
        varbinds += vb
        errors += err
    steady = Figures(time.process_time() - cpu0, time.perf_counter() - wall0, varbinds,
                     args.cycles, errors)
    for poller in pollers:
        await poller.aclose()
    return warm, steady


def walk_command(port: int, community: str, column: str, timeout: float) -> list[str]:
    # -t/-r: one request per PDU even when snmpsim is slow (no retransmissions).
    return ["snmpbulkwalk", "-v2c", "-c", community, "-Cr50", "-On", "-Oq",
            "-t", f"{timeout:g}", "-r", "0", f"127.0.0.1:{port}", column]


def bench_snmpbulkwalk(fleet: list[tuple[int, str]], args: argparse.Namespace) -> Figures:
    jobs = [walk_command(port, c, col, args.timeout) for port, c in fleet
            for col in STATUS_COLUMNS]

    def run(cmd: list[str]) -> tuple[int, bool]:
        done = subprocess.run(cmd, capture_output=True, check=False)
        return done.stdout.count(b"\n"), done.returncode == 0

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    with ThreadPoolExecutor(args.walk_parallel) as pool:
        results = list(pool.map(run, jobs))
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Figures(cpu, wall, sum(v for v, _ in results), 1, sum(not ok for _, ok in results))


# --- main --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=2, help="measured netreflex cycles")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--walk-parallel", type=int, default=4,
                        help="snmpbulkwalk processes at a time")
    parser.add_argument("--max-repetitions", type=int, default=50)
    parser.add_argument("--agents", type=int, default=2, help="snmpsim processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--skip-snmpbulkwalk", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="netreflex-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        agents = max(1, min(args.agents, args.devices))
        placed = write_fleet(work, args.devices, agents)
        print(f"fleet: {args.devices} devices x {PORTS} ports written in "
              f"{time.perf_counter() - t0:.1f} s to {work}")
        ports = [free_udp_port() for _ in range(agents)]
        t0 = time.perf_counter()
        for k, port in enumerate(ports):
            procs.append(start_snmpsim(work / f"agent{k}", port))
        for k, port in enumerate(ports):
            first = next(c for a, c in placed if a == k)
            wait_ready(procs[k], work / f"agent{k}", port, first, deadline_s=120)
        print(f"{agents} snmpsim on 127.0.0.1:{','.join(map(str, ports))} ready after "
              f"{time.perf_counter() - t0:.1f} s (index build)")
        fleet = [(ports[k], c) for k, c in placed]

        warm, steady = asyncio.run(bench_netreflex(fleet, args))
        walk = None if args.skip_snmpbulkwalk else bench_snmpbulkwalk(fleet, args)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    per_cycle = steady.varbinds / steady.cycles
    print()
    print(f"{'client':<34}{'varbinds/cycle':>15}{'CPU us/varbind':>16}"
          f"{'CPU ms/device':>15}{'wall s/cycle':>14}{'errors':>8}")
    rows = [
        ("netreflex warm-up (reads names)", warm),
        (f"netreflex steady ({steady.cycles} cycles)", steady),
    ]
    if walk is not None:
        rows.append(("snmpbulkwalk x6 columns", walk))
    for label, f in rows:
        vb = f.varbinds / f.cycles
        print(f"{label:<34}{vb:>15.0f}{f.us_per_varbind:>16.1f}"
              f"{f.cpu_s / f.cycles / args.devices * 1e3:>15.2f}{f.wall_s / f.cycles:>14.2f}"
              f"{f.errors:>8}")
    if walk is not None:
        print(f"\nsnmpbulkwalk / netreflex client CPU per varbind: "
              f"{walk.us_per_varbind / steady.us_per_varbind:.1f}x "
              f"(netreflex steady cycle: {per_cycle:.0f} varbinds incl. 2 GET varbinds/device; "
              f"snmpbulkwalk: 6 columns only)")
    print(f"settings: concurrency {args.concurrency}, max-repetitions {args.max_repetitions}, "
          f"snmpbulkwalk parallel {args.walk_parallel}, snmpsim processes {agents}, "
          f"cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
