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
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

try:
    import probes  # noqa: F401
except ImportError:  # run from a checkout: python bench/poll.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet import start_fleet, stop
from pydantic import SecretStr

from probes.snmp import SnmpPoller, SnmpV2c
from probes.snmp.parse import STATUS_COLUMNS

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
        agents = max(1, min(args.agents, args.devices))
        fleet = start_fleet(work, args.devices, agents, procs=procs)

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
