"""The simulated fleet shared by the benchmarks: 48-port switches served by snmpsim.

``write_fleet`` writes one ``.snmprec`` per device (system group, ifTable, ifXTable;
community = file name) split over ``agents`` data directories; ``start_fleet`` serves them
with one ``snmpsim-command-responder`` per directory on free loopback ports and waits until
every process answers. Used by ``poll.py``, ``exporter.py`` and ``latency.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

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


def start_snmpsim(work: Path, port: int, hosts: Sequence[str] = ("127.0.0.1",)
                  ) -> subprocess.Popen[bytes]:
    """snmpsim serving ``work/data`` on ``host:port`` for each of ``hosts`` (all loopback
    addresses; indexes in ``work/cache``, output in a log file)."""
    exe = shutil.which("snmpsim-command-responder", path=os.path.dirname(sys.executable)) \
        or shutil.which("snmpsim-command-responder")
    if exe is None:
        raise SystemExit("snmpsim-command-responder not found: pip install snmpsim pysmi")
    log = (work / "snmpsim.log").open("wb")
    return subprocess.Popen(
        [exe, f"--data-dir={work / 'data'}", f"--cache-dir={work / 'cache'}",
         *(f"--agent-udpv4-endpoint={host}:{port}" for host in hosts),
         "--logging-method=stdout",
         "--log-level=error"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
    )


def wait_ready(proc: subprocess.Popen[bytes], work: Path, port: int, community: str,
               deadline_s: float, host: str = "127.0.0.1") -> float:
    started = time.monotonic()
    cmd = ["snmpget", "-v2c", "-c", community, "-r0", "-t1", "-On", "-m", "",
           f"{host}:{port}", "1.3.6.1.2.1.1.3.0"]
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


def start_fleet(work: Path, devices: int, agents: int, hosts: Sequence[str] = ("127.0.0.1",),
                procs: list[subprocess.Popen[bytes]] | None = None) -> list[tuple[int, str]]:
    """Write and serve the fleet; return (UDP port, community) per device. The snmpsim
    processes are appended to ``procs`` as they start, so the caller can stop them."""
    procs = [] if procs is None else procs
    t0 = time.perf_counter()
    agents = max(1, min(agents, devices))
    placed = write_fleet(work, devices, agents)
    print(f"fleet: {devices} devices x {PORTS} ports written in "
          f"{time.perf_counter() - t0:.1f} s to {work}")
    ports = [free_udp_port() for _ in range(agents)]
    t0 = time.perf_counter()
    first = len(procs)
    for k, port in enumerate(ports):
        procs.append(start_snmpsim(work / f"agent{k}", port, hosts))
    for k, port in enumerate(ports):
        community = next(c for a, c in placed if a == k)
        wait_ready(procs[first + k], work / f"agent{k}", port, community, 120, hosts[0])
    print(f"{agents} snmpsim on {','.join(hosts[:3])}{',...' if len(hosts) > 3 else ''}:"
          f"{','.join(map(str, ports))} ready after {time.perf_counter() - t0:.1f} s "
          f"(index build)")
    return [(ports[k], c) for k, c in placed]


def oper_up_ports(work: Path, devices: int, agents: int, community: str) -> list[int]:
    """ifIndexes of ``community``'s ports that the agent reports operationally up."""
    n = int(community.removeprefix("dev"))
    text = (work / f"agent{n % max(1, min(agents, devices))}" / "data"
            / f"{community}.snmprec").read_text("ascii")
    prefix = "1.3.6.1.2.1.2.2.1.8."
    return [int(oid[len(prefix):]) for oid, _, value in
            (line.split("|") for line in text.splitlines())
            if oid.startswith(prefix) and value == "1"]


def port_name(if_index: int) -> str:
    """The ifName ``device_records`` gives ``if_index``."""
    p = if_index - 513
    fpc, pic = divmod(p, 48)
    return f"ge-{fpc}/{pic // 24}/{p % 48}"
