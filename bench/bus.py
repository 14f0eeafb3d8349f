"""Observations per second through the bus: in-process vs MQTT (publisher -> mosquitto ->
subscriber, same machine), same batches.

    /tmp/venv/bin/python bench/bus.py                      # batch sizes 1, 10, 100, 500
    /tmp/venv/bin/python bench/bus.py --observations 400000 --batch-sizes 50

For each batch size (observations per batch; one device per batch, as a poll produces):

* **in-process**: ``InProcessBus`` (bounded queue, backpressure); one task publishes every
  batch, ``consume`` hands each to a handler that counts. Time: first publish to last
  observation handled.
* **mqtt**: a real ``mosquitto`` on a free loopback port (persistence on, as deployed).
  The core (``MqttSubscriber``, acknowledging after its handler) runs in this process; the
  poller (``MqttPublisher``, QoS 1, ``--inflight`` unacknowledged) runs in a *separate
  process* (this script with ``--poller``), as it would on its own host. The poller
  builds its Observations before "go"; the time runs from "go" to the last observation
  handled by the core, so it covers encoding, the broker, decoding and dedup.

Printed: observations/s and batches/s for both, the ratio, and the CPU seconds each
process used (the broker's included, from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout: python bench/bus.py
    sys.path.insert(0, str(ROOT))

from collector.bus import Batch, InProcessBus  # noqa: E402
from collector.cluster import BrokerConfig  # noqa: E402
from collector.mqtt_bus import MqttPublisher, MqttSubscriber  # noqa: E402
from probes.types import Observation  # noqa: E402


def make_batches(observations: int, batch_size: int, devices: int = 500) -> list[list[Observation]]:
    """Interface-status-like observations: one device per batch, one interface each."""
    ts = time.time()
    out = []
    for b in range(max(1, observations // batch_size)):
        dev = f"sw{b % devices:04d}.pop{b % 17}"
        out.append([Observation(dev, "snmp", "if_oper_status", f"ge-0/0/{i}", 1 + (i % 2),
                                ts + b, {"admin": "1"} if i % 5 == 0 else {})
                    for i in range(batch_size)])
    return out


def broker_cfg(port: int) -> BrokerConfig:
    return BrokerConfig(host="127.0.0.1", port=port, reconnect_min=0.05, reconnect_max=0.5,
                        ack_timeout=30)


# --- in-process ---------------------------------------------------------------------------


def counting(total: int) -> tuple[Callable[[Batch], None], asyncio.Event]:
    """A bus handler that counts observations, and the event set once ``total`` arrived."""
    got = 0
    done = asyncio.Event()

    def handler(batch: Batch) -> None:
        nonlocal got
        got += len(batch)
        if got >= total:
            done.set()

    return handler, done


async def in_process(batches: list[list[Observation]]) -> float:
    bus = InProcessBus()
    handler, done = counting(sum(map(len, batches)))
    stopping = asyncio.Event()

    consumer = asyncio.create_task(bus.consume(handler, stopping))
    t0 = time.perf_counter()
    for b in batches:
        await bus.publish(b)
    await done.wait()
    elapsed = time.perf_counter() - t0
    stopping.set()
    await consumer
    return elapsed


# --- mqtt: the poller process ---------------------------------------------------------------


async def poller_main(port: int, observations: int, batch_size: int, inflight: int) -> None:
    batches = make_batches(observations, batch_size)
    pub = MqttPublisher(broker=broker_cfg(port), poller_id="bench",
                        buffer_batches=len(batches) + inflight + 1, max_inflight=inflight,
                        flush_timeout=120)
    stopping = asyncio.Event()
    pump = asyncio.create_task(pub.consume(lambda b: None, stopping))
    while not pub.connected:  # noqa: ASYNC110 (a flag, polled once at start)
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    for b in batches:
        await pub.publish(b)
    stopping.set()  # consume() flushes everything before returning
    await pump
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"left": pub.buffered(), "cpu": ru.ru_utime + ru.ru_stime}), flush=True)


# --- mqtt: the core side --------------------------------------------------------------------


async def mqtt_path(port: int, observations: int, batch_size: int, inflight: int,
                    broker_pid: int) -> tuple[float, float, float, float]:
    handler, done = counting(len(make_batches(observations, batch_size)) * batch_size)
    stopping = asyncio.Event()

    sub = MqttSubscriber(broker=broker_cfg(port), client_id=f"bench-core-{batch_size}")
    core = asyncio.create_task(sub.consume(handler, stopping))
    await asyncio.wait_for(sub.subscribed.wait(), 10)
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--poller", "--port", str(port), "--observations",
        str(observations), "--batch-sizes", str(batch_size), "--inflight", str(inflight),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    cpu0 = time.process_time()
    broker0 = proc_cpu(broker_pid)
    t0 = time.perf_counter()
    child.stdin.write(b"go\n")
    await child.stdin.drain()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - t0
    core_cpu = time.process_time() - cpu0
    broker_cpu = proc_cpu(broker_pid) - broker0
    result = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))
    await child.wait()
    stopping.set()
    await core
    assert result["left"] == 0 and sub.stats["duplicates"] == 0, (result, sub.stats)
    return elapsed, result["cpu"], core_cpu, broker_cpu


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--batch-sizes", default="1,10,100,500")
    ap.add_argument("--inflight", type=int, default=64, help="poller's unacknowledged window")
    ap.add_argument("--poller", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    if args.poller:
        asyncio.run(poller_main(args.port, args.observations, sizes[0], args.inflight))
        return

    from tests.support.mosquitto import Mosquitto

    print(f"{args.observations} observations per run; poller window {args.inflight}; "
          f"{os.cpu_count()} CPU(s)")
    print(f"{'batch':>6} {'in-process obs/s':>17} {'mqtt obs/s':>11} {'mqtt batch/s':>13} "
          f"{'ratio':>7}   cpu s (poller / core / broker)")
    with Mosquitto(max_queued_messages=10_000_000) as broker:
        assert broker.pid is not None
        for size in sizes:
            n = max(size, args.observations // size * size)
            local = asyncio.run(in_process(make_batches(n, size)))
            elapsed, pcpu, ccpu, bcpu = asyncio.run(
                mqtt_path(broker.port, n, size, args.inflight, broker.pid))
            print(f"{size:>6} {n / local:>17,.0f} {n / elapsed:>11,.0f} "
                  f"{n / size / elapsed:>13,.0f} {local / elapsed:>7.4f}   "
                  f"{pcpu:.1f} / {ccpu:.1f} / {bcpu:.1f}", flush=True)


if __name__ == "__main__":
    main()
