"""Fault -> first action latency of the real daemon: linkDown trap sent -> webhook received.

    /tmp/venv/bin/python bench/latency.py --devices 20 --faults 50

Serves a ``fleet.py`` fleet with one snmpsim process listening on one loopback address
per device (127.0.1.1, 127.0.1.2, ...: traps are attributed by source address, so devices
must not share one), starts a webhook receiver (``tests/support/receiver.py``) and
``netreflex run`` as a subprocess polling every device every ``--interval`` seconds, with
a trap listener on a free loopback UDP port and a policy sending a webhook on ``opened``.
The inventory binds one subscriber to each port that will be faulted.

After the first poll of every device (the daemon learns the ifIndex -> name map), for each
fault: a linkDown v2c trap, pre-encoded with pysnmp (no snmptrap process start counted),
is sent from the device's address; the send time is taken right before ``sendto``; the
latency is the receiver's arrival time of the ``opened`` webhook for that port's incident.
Then a linkUp for the same port, and a short random pause. Each fault hits a different
port (round-robin over devices), so flap damping never applies.
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import tests.support  # noqa: F401
except ImportError:  # run as python bench/latency.py: the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from fleet import oper_up_ports, port_name, start_fleet, stop

from tests.e2e.conftest import DaemonProcess
from tests.support.receiver import Delivery, WebhookReceiver

LINK_DOWN = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)
COMMUNITY = "trapsecret"


def encode(trap: tuple[int, ...], if_index: int, request_id: int) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v2c

    oper = 2 if trap == LINK_DOWN else 1
    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiTrapPDU.set_varbinds(pdu, [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), v2c.TimeTicks(1000 + request_id)),
        ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), v2c.ObjectIdentifier(trap)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, if_index), v2c.Integer(if_index)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 7, if_index), v2c.Integer(1)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, if_index), v2c.Integer(oper)),
    ])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, COMMUNITY)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(work: Path, fleet: list[tuple[int, str]], hosts: list[str],
                 faults: list[tuple[str, int]], hook: str, trap_port: int,
                 args: argparse.Namespace) -> Path:
    ports: dict[str, list[str]] = {}
    for device, if_index in faults:
        ports.setdefault(device, []).append(port_name(if_index))
    rows = ["id,device,port,monthly_revenue,sla_tier,email,consent_email"]
    rows += [f"S-{i},{device},{port_name(if_index)},50,business,s{i}@x.example,false"
             for i, (device, if_index) in enumerate(faults)]
    (work / "subscribers.csv").write_text("\n".join(rows) + "\n")
    (work / "inventory.yaml").write_text(yaml.safe_dump({
        "devices": {c: {"ports": ports.get(c, [])} for _, c in fleet},
        "subscriber_files": ["subscribers.csv"],
    }))
    (work / "policy.yaml").write_text(yaml.safe_dump({
        "targets": {"noc": {"kind": "webhook", "url": hook}},
        "rules": [{"name": "first-action", "when": {"events": ["opened"]},
                   "do": [{"target": "noc"}]}],
    }))
    path = work / "netreflex.yaml"
    path.write_text(yaml.safe_dump({
        "daemon": {"state_dir": str(work / "state"), "metrics_listen": "127.0.0.1:0",
                   "api_listen": None},
        # snmpsim spends ~15 ms CPU per PDU: a slow agent, not a dead device
        "polling": {"interval": args.interval, "timeout": 10, "retries": 0,
                    "concurrency": 4},
        "credentials": {c: {"version": "2c", "community": c} for _, c in fleet},
        "devices": {c: {"address": host,
                        "probes": [{"kind": "snmp", "credentials": c, "port": port}]}
                    for (port, c), host in zip(fleet, hosts, strict=True)},
        "traps": {"listen": f"127.0.0.1:{trap_port}", "communities": [COMMUNITY]},
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }))
    return path


def opened(ds: list[Delivery], root: str) -> Delivery | None:
    for d in ds:
        b = d.body
        if isinstance(b, dict) and b.get("event") == "opened" \
                and b.get("incident", {}).get("root") == root:
            return d
    return None


def wait_baseline(daemon: DaemonProcess, devices: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        text = daemon.metrics()
        if all(f'netreflex_interface_oper_status{{device="{c}"' in text for c in devices):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise SystemExit(f"no baseline poll of every device after {timeout} s:\n"
                     + daemon.since_start()[-3000:])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]  # nearest rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for one webhook")
    args = parser.parse_args()
    if args.devices > 250:
        raise SystemExit("--devices: at most 250 (one 127.0.1.x address each)")

    work = Path(tempfile.mkdtemp(prefix="netreflex-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    hosts = [f"127.0.1.{n + 1}" for n in range(args.devices)]
    latencies: list[float] = []
    missed = 0
    daemon: DaemonProcess | None = None
    rng = random.Random(7)
    try:
        fleet = start_fleet(work, args.devices, 1, hosts, procs=procs)
        up = {c: oper_up_ports(work, args.devices, 1, c) for _, c in fleet}
        faults = [(fleet[i % args.devices][1],
                   up[fleet[i % args.devices][1]][i // args.devices]) for i in range(args.faults)]
        addr = {c: host for (_, c), host in zip(fleet, hosts, strict=True)}
        trap_port = free_udp_port()
        with WebhookReceiver() as rx:
            cfg = write_config(work, fleet, hosts, faults, rx.url, trap_port, args)
            daemon = DaemonProcess(cfg, work / "daemon.log").start()
            took = wait_baseline(daemon, [c for _, c in fleet], 120)
            print(f"daemon polling {args.devices} devices every {args.interval:g} s; "
                  f"baseline after {took:.1f} s; traps to 127.0.0.1:{trap_port}")
            for i, (device, if_index) in enumerate(faults):
                root = f"link:{device}:{port_name(if_index)}"
                down = encode(LINK_DOWN, if_index, 2 * i + 1)
                linkup = encode(LINK_UP, if_index, 2 * i + 2)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((addr[device], 0))
                    sent = time.time()
                    s.sendto(down, ("127.0.0.1", trap_port))
                    deadline = time.monotonic() + args.timeout
                    hit = None
                    while hit is None and time.monotonic() < deadline:
                        hit = opened(rx.snapshot(), root)
                        if hit is None:
                            time.sleep(0.002)
                    if hit is None:
                        missed += 1
                        print(f"  fault {i}: no opened webhook for {root} in {args.timeout} s")
                    else:
                        latencies.append(hit.ts - sent)
                    s.sendto(linkup, ("127.0.0.1", trap_port))
                time.sleep(0.2 + rng.random() * 0.3)
            if daemon.terminate() != 0:
                print("daemon exit status non-zero:\n" + daemon.since_start()[-2000:])
    finally:
        if daemon is not None:
            daemon.ensure_stopped()
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    if not latencies:
        raise SystemExit("no webhook arrived")
    ms = [x * 1e3 for x in latencies]
    print(f"\nlinkDown trap sent -> opened webhook received, {len(ms)} of {args.faults} faults "
          f"({missed} missed), ms:")
    print(f"  p50 {pct(ms, 50):.1f}   p95 {pct(ms, 95):.1f}   p99 {pct(ms, 99):.1f}   "
          f"max {max(ms):.1f}   min {min(ms):.1f}   mean {statistics.fmean(ms):.1f}")
    print(f"settings: {args.devices} devices x 48 ports polled every {args.interval:g} s by "
          f"`netreflex run`, pre-encoded v2c traps (pysnmp) from the device's loopback "
          f"address, nearest-rank percentiles")


if __name__ == "__main__":
    main()
