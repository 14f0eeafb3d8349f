"""Trap receiver throughput and event-loop lag under a burst.

    /tmp/venv/bin/python bench/traps.py                # 5,000 v2c linkDowns, both decoders
    /tmp/venv/bin/python bench/traps.py --traps 20000 --decoder native

For each decoder (netreflex's own v1/v2c decoder, and pysnmp's) a ``TrapReceiver`` runs
in this process on a free loopback port with a publish() that only counts. A *separate
process* (this script with ``--send``) pre-encodes the datagrams with pysnmp -- distinct
request-ids and ifIndexes, community ``public`` -- waits for "go", then writes them to the
socket as fast as ``sendto`` allows. Measured here:

* handled/s: observations that reached publish(), divided by the time from the first
  datagram sent to the last observation published (the whole burst, end to end);
* event-loop lag: a task sleeping 1 ms in a loop records how late each wake-up is --
  the delay any other coroutine (an SNMP poll) would see -- idle and during the burst;
* losses: ``dropped_overload`` (our queue), ``kernel_drops`` (socket buffer full).

Then the CPU cost of one datagram on the loop, by kind (v2c native, v2c pysnmp, v3
authPriv, garbage), replaying one datagram into ``handle_datagram`` many times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

try:
    import probes  # noqa: F401
except ImportError:  # run from a checkout: python bench/traps.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes.snmp.trap_config import TrapReceiverConfig
from probes.snmp.traps import TrapReceiver
from probes.types import Observation

V3_USER = ("bench", "authpass123", "privpass123")
LINK_DOWN = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
V3_ENGINE = "80001f8803bbbbbbbbbb01"


class Inventory:
    def device_for_address(self, address: str) -> str | None:
        return "edge1" if address == "127.0.0.1" else None

    def interface_name(self, device: str, if_index: int) -> str | None:
        return f"ge-0/0/{if_index}"


# --- the sender process ------------------------------------------------------------------


def encode(n: int) -> list[bytes]:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v2c

    out = []
    for i in range(n):
        if_index = 1 + i % 4096
        pdu = v2c.SNMPv2TrapPDU()
        v2c.apiTrapPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, i + 1)
        v2c.apiTrapPDU.set_varbinds(pdu, [
            ((1, 3, 6, 1, 2, 1, 1, 3, 0), v2c.TimeTicks(100 + i)),
            ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), v2c.ObjectIdentifier(LINK_DOWN)),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 1, if_index), v2c.Integer(if_index)),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 7, if_index), v2c.Integer(1)),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, if_index), v2c.Integer(2)),
        ])
        msg = v2c.Message()
        v2c.apiMessage.set_defaults(msg)
        v2c.apiMessage.set_community(msg, "public")
        v2c.apiMessage.set_pdu(msg, pdu)
        out.append(bytes(encoder.encode(msg)))
    return out


def sender(host: str, port: int, n: int) -> None:
    import socket

    datagrams = encode(n)
    print("ready", flush=True)
    sys.stdin.readline()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.perf_counter()
        for d in datagrams:
            s.sendto(d, (host, port))
        took = time.perf_counter() - start
    print(f"sent {n} in {took:.3f}s", flush=True)


# --- the receiving side ------------------------------------------------------------------


class LagProbe:
    """How late a 1 ms sleep wakes up: what any other coroutine would wait.

    Also records the thread CPU time spent between sleep and wake-up: the work the loop
    did meanwhile (the receiver's), without the time the OS gave to other processes --
    on a shared machine the wall-clock lag includes both.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    async def run(self) -> None:
        while True:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            self.wall.append(max(0.0, time.perf_counter() - t - 0.001))
            self.cpu.append(time.thread_time() - c)

    def take(self) -> tuple[list[float], list[float]]:
        out = (self.wall, self.cpu)
        self.wall, self.cpu = [], []
        return out


def summary(samples: Sequence[float]) -> str:
    if not samples:
        return "no samples"
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"mean {statistics.fmean(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"


async def burst(n: int, decoder: str) -> None:
    published = 0
    last = 0.0

    async def publish(batch: Sequence[Observation]) -> None:
        nonlocal published, last
        published += len(batch)
        last = time.perf_counter()

    cfg = TrapReceiverConfig.model_validate(
        {"listen": "127.0.0.1:0", "communities": ["public"], "decoder": decoder,
         "max_queue": max(20_000, n)}
    )
    receiver = TrapReceiver(config=cfg, resolver=Inventory())
    stopping = asyncio.Event()
    task = asyncio.create_task(receiver.run(publish, stopping), name="receiver")
    await asyncio.wait_for(receiver.ready.wait(), 10)
    assert receiver.local_address is not None
    host, port = receiver.local_address
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--send", host, str(port), str(n),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"

    probe = LagProbe()
    probing = asyncio.create_task(probe.run(), name="lag probe")
    await asyncio.sleep(0.5)
    idle, _ = probe.take()
    cpu0 = time.process_time()
    start = time.perf_counter()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    stats = receiver.stats
    progress, quiet_since = -1, time.perf_counter()
    while stats["published"] + stats["dropped_overload"] < n:
        await asyncio.sleep(0.05)
        now = time.perf_counter()
        if stats["published"] != progress:
            progress, quiet_since = stats["published"], now
        elif now - quiet_since > 2.0:  # the rest was lost (kernel_drops is read at stop)
            break
    busy, busy_cpu = probe.take()
    cpu = time.process_time() - cpu0
    sent_line = (await proc.stdout.readline()).decode().strip()
    await proc.wait()
    probing.cancel()
    stopping.set()
    await task
    took = (last or time.perf_counter()) - start
    print(f"\n== decoder={decoder}: {n} v2c linkDown traps from another process ({sent_line})")
    print(f"   published {published} observations in {took:.3f}s from the first send: "
          f"{published / took:,.0f} traps/s handled")
    per_trap = cpu / max(published, 1)
    print(f"   receiver process CPU {cpu:.2f}s = {per_trap * 1e6:.0f} us per trap "
          f"(~{1 / per_trap:,.0f} traps/s if it had a core to itself)")
    print(f"   event-loop lag idle:  {summary(idle)}")
    print(f"   event-loop lag burst: {summary(busy)}  ({len(busy)} wake-ups of a 1 ms sleep)")
    print(f"   loop CPU between wake-ups during the burst: {summary(busy_cpu)}")
    print(f"   lost: dropped_overload={stats['dropped_overload']} "
          f"kernel_drops={stats['kernel_drops']} malformed={stats['malformed']}")


def load() -> str:
    try:
        return f"load average {Path('/proc/loadavg').read_text().split()[0]}"
    except OSError:
        return "load average unknown"


# --- per-datagram cost -------------------------------------------------------------------


async def capture_v3() -> bytes | None:
    """One v3 authPriv trap as net-snmp encodes it, if snmptrap is installed."""
    import shutil
    import socket

    if shutil.which("snmptrap") is None:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        user, auth, priv = V3_USER
        proc = await asyncio.create_subprocess_exec(
            "snmptrap", "-v3", "-u", user, "-l", "authPriv", "-a", "SHA", "-A", auth,
            "-x", "AES", "-X", priv, "-e", "0x" + V3_ENGINE,
            f"127.0.0.1:{s.getsockname()[1]}", "", "1.3.6.1.6.3.1.1.5.1",
        )
        await proc.wait()
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(s, 65535), 5)


async def per_datagram(repeat: int) -> None:
    print(f"\n== CPU per datagram in handle_datagram (one datagram replayed {repeat} times)")
    v2c_trap = encode(1)[0]
    v3_trap = await capture_v3()
    cases: list[tuple[str, str, bytes]] = [
        ("v2c linkDown, native decoder", "native", v2c_trap),
        ("v2c linkDown, pysnmp decoder", "pysnmp", v2c_trap),
        ("garbage (300 random bytes)", "native", bytes(range(256)) + bytes(44)),
    ]
    if v3_trap is not None:
        cases.append(("v3 authPriv SHA/AES (pysnmp)", "native", v3_trap))
    for label, decoder, data in cases:
        user, auth, priv = V3_USER
        cfg = TrapReceiverConfig.model_validate({
            "listen": "127.0.0.1:0", "communities": ["public"], "decoder": decoder,
            "max_queue": repeat + 1,
            "v3_users": [{"user": user, "auth_key": auth, "priv_key": priv,
                          "engine_ids": [V3_ENGINE]}],
        })
        receiver = TrapReceiver(config=cfg, resolver=Inventory())
        stopping = asyncio.Event()
        gate = asyncio.Event()

        async def publish(batch: Sequence[Observation], gate: asyncio.Event = gate) -> None:
            await gate.wait()

        task = asyncio.create_task(receiver.run(publish, stopping))
        await asyncio.wait_for(receiver.ready.wait(), 10)
        addr = ("127.0.0.1", 40000)
        receiver.handle_datagram(data, addr)  # warm-up (v3: learns the sender's time)
        t = time.thread_time()  # CPU, not wall: the machine may be shared
        for _ in range(repeat):
            receiver.handle_datagram(data, addr)
        took = (time.thread_time() - t) / repeat
        accepted = receiver.stats["notifications"]
        print(f"   {label:34s} {took * 1e6:8.1f} us  (accepted {accepted}/{repeat + 1})")
        stopping.set()
        gate.set()
        await task


async def main(args: argparse.Namespace) -> None:
    print(f"{os.cpu_count()} CPUs, {load()} before the run")
    decoders = ["native", "pysnmp"] if args.decoder == "both" else [args.decoder]
    for decoder in decoders:
        await burst(args.traps, decoder)
    await per_datagram(args.repeat)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--send":
        sender(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traps", type=int, default=5000)
    parser.add_argument("--decoder", choices=["native", "pysnmp", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=2000, help="per-datagram replays")
    asyncio.run(main(parser.parse_args()))
