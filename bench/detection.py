"""Interface samples per second through the detectors (``correlator.detection``), one core.

    /tmp/venv/bin/python bench/detection.py                 # 200 devices x 48 ports, 60 polls
    /tmp/venv/bin/python bench/detection.py --devices 500 --polls 30

Generates (before timing) ``--devices`` switches of 48 ports (1 and 10 Gb/s, 64-bit
counters, a few 32-bit ones that wrap), polled ``--polls`` times ``--step`` seconds apart:
each port carries its own base load with noise; 5 % of the ports congest (95 %) for a
third of the run, 2 % step up in traffic, 1 % count input errors; half of the ports are
bound to one subscriber with a plan (plan saturation is judged on them); every device also
sends one RTT and one loss observation per poll. Then, timed with ``process_time``:

* **detectors**: ``Detectors.counters`` for every poll, ``Detectors.observe`` for the
  ping observations, as the correlator calls them;
* **bare loop**: the same tables walked once, taking the difference of each counter with
  its last value (the least any rate computation does), for a ratio within the same run.

Printed: interface samples/s (target >= 200,000), observations/s, the ratio to the bare
loop, and the conditions raised/cleared by kind (a sanity check that the detectors ran).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout: python bench/detection.py
    sys.path.insert(0, str(ROOT))

from correlator.detection import DetectionConfig, Detectors  # noqa: E402
from correlator.inventory import Device, Inventory, Subscriber  # noqa: E402
from probes.types import LOSS_RATIO, RTT_MS, InterfaceCounters, Observation  # noqa: E402

PORTS = 48


def build(devices: int, polls: int, step: float, seed: int) -> tuple[
        Inventory, list[list[tuple[str, InterfaceCounters, float]]], list[list[Observation]]]:
    rng = random.Random(seed)
    names = [f"ge-0/0/{i}" for i in range(PORTS)]
    index = list(range(1, PORTS + 1))
    subs = []
    ports = []  # per device: (speed Mb/s, base share, kind, 32-bit)
    for d in range(devices):
        dev = f"sw{d:04d}"
        row = []
        for p in range(PORTS):
            speed = 10_000 if p >= PORTS - 4 else 1000
            r = rng.random()
            kind = "congest" if r < 0.05 else "step" if r < 0.07 else "errors" if r < 0.08 \
                else ""
            row.append((speed, rng.uniform(0.02, 0.5), kind, p % 16 == 5))
            if p % 2 == 0:
                subs.append(Subscriber(f"S{d:04d}-{p:02d}", None, None, dev, names[p], None,
                                       None, None, 30.0, "residential", None, 0.0, None, None,
                                       False, False, rng.choice([50.0, 100.0, 300.0, 1000.0])))
        ports.append(row)
    inv = Inventory({f"sw{d:04d}": Device(f"sw{d:04d}", "access", None, (), None)
                     for d in range(devices)}, subs)
    counters: list[list[tuple[str, InterfaceCounters, float]]] = []
    pings: list[list[Observation]] = []
    raw = [[[rng.randrange(2**32) if w else rng.randrange(2**40), 0, 0]
            for (_, _, _, w) in row] for row in ports]
    t0 = 1_700_000_000.0
    for k in range(polls):
        ts = t0 + k * step
        batch = []
        obs = []
        for d, row in enumerate(ports):
            ins: list[int | None] = []
            outs: list[int | None] = []
            errs: list[int | None] = []
            speeds: list[int | None] = []
            for p, (speed, share, kind, w32) in enumerate(row):
                bps = speed * 1e6 * share * rng.uniform(0.9, 1.1)
                if kind == "congest" and polls // 3 <= k < 2 * polls // 3:
                    bps = speed * 1e6 * 0.95
                elif kind == "step" and k >= polls // 2:
                    bps = min(speed * 1e6 * 0.8, bps * 4)
                c = raw[d][p]
                c[0] += int(bps * step / 8 * 0.3)
                c[1] += int(bps * step / 8)
                c[2] += int(step * 5) if kind == "errors" else 0
                if w32:
                    c[0] %= 2**32
                    c[1] %= 2**32
                ins.append(c[0])
                outs.append(c[1])
                errs.append(c[2])
                speeds.append(speed)
            dev = f"sw{d:04d}"
            batch.append((dev, InterfaceCounters(index, names, [1] * PORTS, ins, outs, errs,
                                                 [0] * PORTS, speeds), ts))
            rtt = rng.gauss(20.0, 1.0) if not (d % 50 == 0 and k > polls // 2) else 200.0
            obs.append(Observation(dev, "ping", RTT_MS, "", rtt, ts))
            obs.append(Observation(dev, "ping", LOSS_RATIO, "", 0.0, ts))
        counters.append(batch)
        pings.append(obs)
    return inv, counters, pings


def run_detectors(inv: Inventory, counters: list[list[tuple[str, InterfaceCounters, float]]],
                  pings: list[list[Observation]]) -> tuple[float, Counter[str]]:
    det = Detectors(DetectionConfig(), inv)
    kinds: Counter[str] = Counter()
    start = time.process_time()
    for batch, obs in zip(counters, pings, strict=True):
        for device, c, ts in batch:
            for cond in det.counters(device, c, ts):
                kinds[f"{cond.kind} {'raised' if cond.active else 'cleared'}"] += 1
        for o in obs:
            for cond in det.observe(o):
                kinds[f"{cond.kind} {'raised' if cond.active else 'cleared'}"] += 1
    return time.process_time() - start, kinds


def run_bare(counters: list[list[tuple[str, InterfaceCounters, float]]]) -> float:
    last: dict[str, tuple[list[int | None], list[int | None], list[int | None]]] = {}
    start = time.process_time()
    total = 0
    for batch in counters:
        for device, c, _ in batch:
            prev = last.get(device)
            last[device] = (c.in_octets, c.out_octets, c.in_errors)
            if prev is None:
                continue
            for a, b, x, y, e, f in zip(prev[0], c.in_octets, prev[1], c.out_octets, prev[2],
                                        c.in_errors, strict=True):
                if a is not None and b is not None and x is not None and y is not None and \
                        e is not None and f is not None:
                    total += (b - a) + (y - x) + (f - e)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--polls", type=int, default=60)
    ap.add_argument("--step", type=float, default=60.0, help="seconds between polls")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t = time.perf_counter()
    inv, counters, pings = build(args.devices, args.polls, args.step, args.seed)
    samples = args.devices * PORTS * args.polls
    observations = sum(map(len, pings))
    print(f"generated {samples:,} interface samples and {observations:,} observations "
          f"in {time.perf_counter() - t:.1f} s")
    cpu, kinds = run_detectors(inv, counters, pings)
    bare = run_bare(counters)
    rate = samples / cpu
    print(f"detectors: {cpu:.2f} s CPU for interface samples and observations: "
          f"{rate:,.0f} interface samples/s (target >= 200,000: "
          f"{'ok' if rate >= 200_000 else 'MISSED'}), "
          f"{(samples + observations) / cpu:,.0f} samples + observations/s")
    print(f"bare loop: {bare:.2f} s CPU: {samples / bare:,.0f} samples/s; detectors cost "
          f"{cpu / bare:.1f}x the bare loop")
    for kind, n in sorted(kinds.items()):
        print(f"  {kind}: {n}")


if __name__ == "__main__":
    main()
