"""CPU per varbind of a poll cycle over a simulated fleet: netreflex vs Prometheus
snmp_exporter.

    /tmp/venv/bin/python bench/exporter.py --devices 200

Serves the ``fleet.py`` fleet (48-port switches, snmpsim on loopback), then, against the
same agents:

(a) netreflex's ``SnmpPoller`` (``poll.bench_netreflex``: one warm-up cycle, then
    ``--cycles`` steady cycles, ``--concurrency`` devices at a time); CPU = this process's
    ``time.process_time``;
(b) ``prometheus-snmp-exporter`` (Debian package) on a free loopback port with one module
    per device (v0.21 config format: ``auth`` lives inside the module, there is no
    ``auths`` section nor ``&auth=`` parameter) walking the same six IF-MIB columns, scraped
    ``/snmp?target=127.0.0.1:PORT&module=DEVICE`` for every device, ``--concurrency`` at
    a time (one warm-up cycle, then ``--cycles``); CPU = the exporter process's
    utime+stime from ``/proc/PID/stat``. The scraper's own CPU (this process: HTTP +
    counting lines) is not counted -- a Prometheus server would pay it on top.

Both are divided by the varbinds delivered: netreflex's received varbinds, the
exporter's samples of the six metrics in the scrape output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

try:
    import probes  # noqa: F401
except ImportError:  # run from a checkout: python bench/exporter.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import yaml
from fleet import PORTS, start_fleet, stop
from poll import Figures, bench_netreflex

COLUMNS = {
    "ifAdminStatus": ("1.3.6.1.2.1.2.2.1.7", "gauge"),
    "ifOperStatus": ("1.3.6.1.2.1.2.2.1.8", "gauge"),
    "ifInErrors": ("1.3.6.1.2.1.2.2.1.14", "counter"),
    "ifOutErrors": ("1.3.6.1.2.1.2.2.1.20", "counter"),
    "ifHCInOctets": ("1.3.6.1.2.1.31.1.1.1.6", "counter"),
    "ifHCOutOctets": ("1.3.6.1.2.1.31.1.1.1.10", "counter"),
}
SAMPLE_PREFIXES = tuple(f"{name}{{".encode() for name in COLUMNS)


def exporter_config(communities: list[str], args: argparse.Namespace) -> dict[str, object]:
    """snmp.yml for snmp_exporter 0.21: {module name: module}, auth inside the module."""
    metrics = [{"name": name, "oid": oid, "type": kind,
                "indexes": [{"labelname": "ifIndex", "type": "gauge"}]}
               for name, (oid, kind) in COLUMNS.items()]
    walk = [oid for oid, _ in COLUMNS.values()]
    return {c: {"walk": walk, "metrics": metrics, "version": 2,
                "max_repetitions": args.max_repetitions, "retries": 0,
                "timeout": f"{args.timeout:g}s", "auth": {"community": c}}
            for c in communities}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after "pid (comm)": state is fields[0], so utime (14) / stime (15) are [11], [12]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_exporter(work: Path, config: dict[str, object]) -> tuple[subprocess.Popen[bytes],
                                                                    str]:
    exe = shutil.which("prometheus-snmp-exporter")
    if exe is None:
        raise SystemExit("prometheus-snmp-exporter not found: "
                         "apt-get install -y prometheus-snmp-exporter")
    (work / "snmp.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_tcp_port()
    log = (work / "exporter.log").open("wb")
    proc = subprocess.Popen(
        [exe, f"--config.file={work / 'snmp.yml'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(base + "/", timeout=1):
                return proc, base
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise SystemExit("snmp_exporter did not start:\n"
                     + (work / "exporter.log").read_text(errors="replace")[-3000:])


async def bench_exporter(fleet: list[tuple[int, str]], base: str, pid: int,
                         args: argparse.Namespace) -> tuple[Figures, Figures]:
    gate = asyncio.Semaphore(args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout * 20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(port: int, community: str) -> tuple[int, bool]:
            url = f"{base}/snmp?target=127.0.0.1:{port}&module={community}"
            async with gate:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return 0, False
            return sum(line.startswith(SAMPLE_PREFIXES) for line in body.splitlines()), ok

        async def cycle() -> tuple[int, int]:
            results = await asyncio.gather(*(one(p, c) for p, c in fleet))
            return sum(v for v, _ in results), sum(not ok for _, ok in results)

        cpu0, wall0 = proc_cpu_s(pid), time.perf_counter()
        vb, err = await cycle()
        warm = Figures(proc_cpu_s(pid) - cpu0, time.perf_counter() - wall0, vb, 1, err)
        cpu0, wall0 = proc_cpu_s(pid), time.perf_counter()
        varbinds = errors = 0
        for _ in range(args.cycles):
            vb, err = await cycle()
            varbinds += vb
            errors += err
        steady = Figures(proc_cpu_s(pid) - cpu0, time.perf_counter() - wall0, varbinds,
                         args.cycles, errors)
    return warm, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=2, help="measured cycles, each client")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="devices polled (netreflex) / scraped (exporter) at a time")
    parser.add_argument("--max-repetitions", type=int, default=50)
    parser.add_argument("--agents", type=int, default=2, help="snmpsim processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="netreflex-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        agents = max(1, min(args.agents, args.devices))
        fleet = start_fleet(work, args.devices, agents, procs=procs)
        nr_warm, nr = asyncio.run(bench_netreflex(fleet, args))
        exporter, base = start_exporter(work, exporter_config([c for _, c in fleet], args))
        procs.append(exporter)
        ex_warm, ex = asyncio.run(bench_exporter(fleet, base, exporter.pid, args))
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'client':<36}{'varbinds/cycle':>15}{'CPU us/varbind':>16}"
          f"{'CPU ms/device':>15}{'wall s/cycle':>14}{'errors':>8}")
    rows = [("netreflex warm-up (reads names)", nr_warm),
            (f"netreflex steady ({nr.cycles} cycles)", nr),
            ("snmp_exporter warm-up", ex_warm),
            (f"snmp_exporter steady ({ex.cycles} cycles)", ex)]
    for label, f in rows:
        print(f"{label:<36}{f.varbinds / f.cycles:>15.0f}{f.us_per_varbind:>16.1f}"
              f"{f.cpu_s / f.cycles / args.devices * 1e3:>15.2f}{f.wall_s / f.cycles:>14.2f}"
              f"{f.errors:>8}")
    print(f"\nsnmp_exporter process CPU / netreflex client CPU, per varbind (steady): "
          f"{ex.us_per_varbind / nr.us_per_varbind:.2f}x")
    print(f"(netreflex: 6 columns + 2 GET varbinds per device; snmp_exporter: 6 columns, "
          f"{6 * PORTS} samples per device; exporter CPU from /proc utime+stime, "
          f"{1e3 / os.sysconf('SC_CLK_TCK'):.0f} ms ticks, scraper CPU not counted)")
    print(f"settings: devices {args.devices}, concurrency {args.concurrency}, "
          f"max-repetitions {args.max_repetitions}, snmpsim processes {agents}, "
          f"cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
