"""Inventory and correlation at ISP scale: load, memory, impact, observations per second.

    /tmp/venv/bin/python bench/scale.py                  # 1M subscribers, ~3 min

Generates, in a temporary directory, an ISP of ``--subscribers`` subscribers on
``--ports`` PON ports: 2 core routers; aggregation nodes dual-homed to both cores; OLTs of
16 PON ports, each single-homed to one aggregation node through a named port (so that one
aggregation node carries ``--per-agg`` subscribers); on one PON port in four a passive
splitter with two outputs, the subscribers of that port bound to the splitter's outputs.
Devices are YAML (``inventory.yaml``); subscribers are CSV (``subscribers.csv``, rows in
random order, typical columns filled in). Then, in a fresh process (so that generating
does not count towards memory), it measures:

1. **load**: ``load_inventory`` wall time, and resident memory after the load (VmRSS) and
   at its peak (VmHWM) -- targets < 10 s and < 1 GB;
2. **impact** of one aggregation node failing: topology analysis + subscriber collection
   + revenue by tier, both the full recomputation (``analyse`` + ``subscribers_behind`` +
   ``compute_impact``) and the engine's incremental path (``topology.Analyser``, when
   present) -- target < 100 ms;
3. **observations/s** through ``Correlator.observe`` on one core (CPU time of this
   process, ``time.process_time``), steady state: every device polled in turn (reachable
   + 16 oper statuses per OLT), PON ports going down (``--fault-rate`` per port
   observation) and back up a few polls later, an OLT now and then unreachable for a few
   polls, 0.1 % observations from devices not in the inventory; a fake clock advancing at
   the offered rate and ``tick()`` once per simulated second; a real SQLite incident store
   in the temporary directory. Twice: with no outage, and during an open aggregation
   outage (its incident and 100 000 subscribers stay open throughout) -- target 20 000/s;
   then both again with detection in the mix (``correlation.detection``): each OLT poll
   also brings its interface table (16 PON ports + uplink, ``observe_counters``; one
   interface row counts as one observation) and a ping RTT; a PON port now and then runs
   at 95 % of its speed for a few polls (``--congestion-rate``), and the congestion
   detector raises at once (``raise_after_s: 0``), so conditions open and resolve;
4. **reload**: ``reload_inventory`` in a thread (when present): its wall time, the
   longest stall of the event loop meanwhile, and the peaks of this process (VmHWM reset
   just before) and of the loading child;
5. **reference**: the same load as in 1, now, in another process with Arrow off (the
   pure-Python CSV reader and index, as before Arrow), and the ratio to 1.

Options: ``--subscribers``, ``--ports``, ``--per-agg``, ``--observations`` (per run),
``--max-cpu`` (seconds per run, whichever ends first), ``--fault-rate``, ``--seed``,
``--congestion-rate``, ``--keep DIR`` (generate into DIR and keep it), ``--skip-reload``,
``--skip-reference``,
``--skip-detection``, ``--splitter-role``
(``access`` for code that predates ``passive``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout, whatever is installed

PON = 16  # PON ports per OLT
SPLIT_EVERY = 4  # one PON port in four feeds a passive splitter (two outputs)

FIRST = ["R.", "J.", "M.", "A.", "L.", "K.", "S.", "T.", "P.", "D.", "E.", "N."]
LAST = ["Silva", "Okafor", "Chen", "Novak", "Garcia", "Kowalski", "Nguyen", "Haddad",
        "Müller", "Rossi", "Ivanova", "Tanaka", "Smith", "Dubois", "Larsen", "Costa"]
PLANS = [("residential", "29.99"), ("residential", "45.00"), ("residential", "59.90"),
         ("business", "120.00"), ("business", "250.00"), ("enterprise", "3000.00")]
PLAN_WEIGHTS = [45, 30, 15, 6, 3, 1]


# --- generating the ISP ----------------------------------------------------------------


def olt_name(i: int) -> str:
    return f"olt{i:05d}"


def layout(subscribers: int, ports: int, per_agg: int) -> tuple[int, int, int]:
    """(OLTs, aggregation nodes, OLTs per aggregation node)."""
    olts = max(1, ports // PON)
    per_port = subscribers / (olts * PON)
    olts_per_agg = max(1, round(per_agg / per_port / PON))
    aggs = -(-olts // olts_per_agg)
    return olts, aggs, olts_per_agg


def generate(base: Path, *, subscribers: int, ports: int, per_agg: int, seed: int,
             splitter_role: str) -> dict[str, Any]:
    rng = random.Random(seed)
    olts, aggs, olts_per_agg = layout(subscribers, ports, per_agg)
    lines = ["devices:",
             "  core1: {role: core, site: pop-central}",
             "  core2: {role: core, site: pop-west}"]
    bindings: list[tuple[str, str]] = []  # where subscribers bind (device, port)
    splitters = 0
    for a in range(aggs):
        lines.append(f"  agg{a:03d}: {{role: aggregation, site: pop-{a:03d}, parents: ["
                     f"{{device: core1, port: xe-0/0/{a}}}, {{device: core2, port: xe-0/0/{a}}}]}}")
    for o in range(olts):
        agg = o // olts_per_agg
        name = olt_name(o)
        pons = [f"pon0/{p + 1}" for p in range(PON)]
        lines.append(f"  {name}: {{role: access, site: cab-{o:05d}, parents: [{{device: "
                     f"agg{agg:03d}, port: ge-1/0/{o % olts_per_agg}, local_port: xe-0/0/0}}], "
                     f"ports: [{', '.join(pons)}]}}")
        for p, pon in enumerate(pons):
            if p % SPLIT_EVERY == SPLIT_EVERY - 1:
                spl = f"spl-{name}-{p + 1}"
                splitters += 1
                lines.append(f"  {spl}: {{role: {splitter_role}, parents: [{{device: {name}, port: "
                             f"{pon}}}], ports: [out1, out2]}}")
                bindings += [(spl, "out1"), (spl, "out2")]
            else:
                bindings.append((name, pon))
    lines.append("subscriber_files: [subscribers.csv]")
    (base / "inventory.yaml").write_text("\n".join(lines) + "\n")

    # subscriber i sits on PON port i // per_port; ids are assigned at random, rows are
    # written in random order (billing exports are not sorted by port)
    ids = list(range(1, subscribers + 1))
    rng.shuffle(ids)
    order = list(range(subscribers))
    rng.shuffle(order)
    pon_ports = olts * PON
    today = dt.date(2026, 3, 10)
    with (base / "subscribers.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "account", "name", "device", "port", "onu_id", "modem_mac",
                    "cpe_mac", "monthly_revenue", "sla_tier", "contract_end", "churn_risk",
                    "email", "phone", "consent_email", "consent_sms"])
        for i in order:
            o, p = divmod(i * pon_ports // subscribers, PON)  # OLT, PON port
            if p % SPLIT_EVERY == SPLIT_EVERY - 1:
                device, port = f"spl-{olt_name(o)}-{p + 1}", "out1" if i % 2 else "out2"
            else:
                device, port = olt_name(o), f"pon0/{p + 1}"
            sid = ids[i]
            tier, price = rng.choices(PLANS, PLAN_WEIGHTS)[0]
            first, last = rng.choice(FIRST), rng.choice(LAST)
            end = (today + dt.timedelta(days=rng.randrange(-30, 900))).isoformat() \
                if rng.random() < 0.4 else ""
            mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6)) \
                if tier != "residential" else ""
            email = f"{first[0].lower()}.{last.lower()}{sid}@mail.example" \
                if rng.random() < 0.8 else ""
            phone = f"+1 555 {sid % 10_000_000:07d}" if rng.random() < 0.5 else ""
            w.writerow([f"S-{sid:07d}", f"A-{sid:07d}", f"{first} {last}", device, port,
                        str(i % 64 + 1), "", mac, price, tier, end,
                        f"{rng.random() * 0.6:.2f}", email, phone,
                        "true" if email else "false", "true" if phone else "false"])
    return {"olts": olts, "aggregation": aggs, "olts_per_agg": olts_per_agg,
            "splitters": splitters, "bindings": len(bindings), "pon_ports": pon_ports}


# --- measuring --------------------------------------------------------------------------


def vm(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def report(name: str, value: float, unit: str, target: str, ok: bool | None) -> None:
    mark = "" if ok is None else ("  ok" if ok else "  MISSED")
    goal = f"  target {target}{mark}" if target else ""
    print(f"  {name:<66} {value:>11,.1f} {unit:<5}{goal}", flush=True)


def measure(base: Path, args: argparse.Namespace, meta: dict[str, Any]) -> None:
    import logging

    logging.disable(logging.CRITICAL)  # incidents opening are expected, not news here
    from correlator import topology
    from correlator.incidents import compute_impact
    from correlator.inventory import load_inventory

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other "
          "work on the machine slows everything down)")
    print(f"inventory: {meta['olts']} OLTs x {PON} PON ports on {meta['aggregation']} "
          f"aggregation nodes ({meta['olts_per_agg']} OLTs each), {meta['splitters']} "
          f"passive splitters, {meta['bindings']} binding ports, {args.subscribers:,} "
          "subscribers", flush=True)
    rss0 = vm("VmRSS")
    t = time.perf_counter()
    inv = load_inventory([base / "inventory.yaml"])
    load_s = time.perf_counter() - t
    gc.collect()
    rss = vm("VmRSS")
    hwm = vm("VmHWM")
    print(f"1. load ({len(inv.devices):,} devices, {len(inv.subscribers):,} subscribers)")
    report("load_inventory", load_s, "s", "< 10 s", load_s < 10)
    report("resident memory after load (VmRSS)", rss / 2**20, "MiB", "< 1024 MiB",
           rss < 2**30)
    report("  of which the inventory (VmRSS - before)", (rss - rss0) / 2**20, "MiB", "", None)
    report("peak resident memory (VmHWM)", hwm / 2**20, "MiB", "< 1024 MiB", hwm < 2**30)

    # --- 2. impact of an aggregation node failure -------------------------------------
    agg = "agg000"
    root = topology.device_root(agg)
    print(f"2. impact of an aggregation node failing ({agg}, then agg001..agg004)")
    analyser_cls = getattr(topology, "Analyser", None)
    if analyser_cls is not None:  # what the engine does
        an = analyser_cls(inv)
        an.analyse(set(), set())  # steady state: nothing down
        times = []
        for i in range(5):
            node = f"agg{i:03d}"
            t = time.perf_counter()
            a2 = an.analyse({node}, set())
            imp2 = an.impact(topology.device_root(node), a2.affected_devices[
                topology.device_root(node)])
            times.append(time.perf_counter() - t)
            if i == 0:
                first = imp2
            an.analyse(set(), set())
        report(f"engine (Analyser): analyse + impact, {first.subscriber_count:,} subscribers "
               f"/ {len(first.devices)} devices", times[0] * 1e3, "ms", "< 100 ms",
               times[0] < 0.1)
        report("  the same for agg001..agg004 (median)", statistics.median(times[1:]) * 1e3,
               "ms", "< 100 ms", statistics.median(times[1:]) < 0.1)
        an.analyse({agg}, set())
        t = time.perf_counter()
        a3 = an.analyse({agg, olt_name(0)}, set())
        imp3 = an.impact(root, a3.affected_devices[root])
        report("  then one more device down behind it", (time.perf_counter() - t) * 1e3,
               "ms", "", None)
    full = []
    for _ in range(3):
        t = time.perf_counter()
        a = topology.analyse(inv, {agg}, set())
        devices = a.affected_devices[root]
        subs = topology.subscribers_behind(inv, root, devices)
        imp = compute_impact(inv, subs, devices)
        full.append(time.perf_counter() - t)
    label = "analyse + subscribers_behind + compute_impact (from scratch)"
    if analyser_cls is None:  # the engine's path before Analyser
        report(label, min(full) * 1e3, "ms", "< 100 ms", min(full) < 0.1)
    else:
        report(label, min(full) * 1e3, "ms", "", None)
        assert first == imp and imp3 == imp, "the engine's impact differs from the full one"
    opening(base, inv, agg)
    try:  # the impact of a condition (the element still works), in code that has them
        from correlator.conditions import degraded_impact
    except ImportError:
        pass
    else:
        for what, device, port in (("an aggregation node", agg, None),
                                   ("a PON port", olt_name(0), "pon0/1")):
            t = time.perf_counter()
            imp = degraded_impact(inv, device, port)
            report(f"degraded_impact of {what} ({imp.subscriber_count:,} subscribers)",
                   (time.perf_counter() - t) * 1e3, "ms", "", None)

    # --- 3. observations per second ---------------------------------------------------
    for detect in (False, True) if not args.skip_detection else (False,):
        for outage in (False, True):
            observations(base, inv, args, meta, outage=outage, detect=detect)

    # --- 4. reload ----------------------------------------------------------------------
    from correlator import inventory as inventory_mod

    reload_fn = getattr(inventory_mod, "reload_inventory", None)
    if reload_fn is not None and not args.skip_reload:
        del inv
        gc.collect()
        print("4. reload_inventory (off the event loop, the old inventory still loaded)")
        old = load_inventory([base / "inventory.yaml"])
        peak_reset = reset_peak()  # VmHWM from here on: the reload's, not the run's so far
        lag, took = asyncio.run(_reload(reload_fn, base))
        report("reload_inventory wall time", took, "s", "", None)
        report("longest event-loop stall during the reload", lag * 1e3, "ms", "", None)
        report("peak resident memory (VmHWM, both loaded)" if peak_reset else
               "peak resident memory (VmHWM, whole run: could not reset it)",
               vm("VmHWM") / 2**20, "MiB", "", None)
        # a large reload is loaded by another process (then its own CSV reader): the
        # largest of the processes this one waited for (the reference run comes after)
        report("  peak resident memory of a loading child process (ru_maxrss)",
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10, "MiB", "", None)
        del old

    # --- 5. reference -------------------------------------------------------------------
    if not args.skip_reference:
        ref_s = reference_load(base)
        if ref_s is not None:
            print("5. reference: the same load without Arrow (pure-Python reader), now")
            report("load_inventory, Arrow off (another process)", ref_s, "s", "", None)
            report("  load_inventory (section 1) is faster by", ref_s / load_s, "x", "", None)


def reset_peak() -> bool:
    """Reset this process's VmHWM to its VmRSS (Linux: 5 to clear_refs); False: cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def reference_load(base: Path) -> float | None:
    """``load_inventory`` of the same files in another process (memory figures stay this
    process's) with Arrow off: the CSV read and indexed by the pure-Python reader (two
    processes), as before Arrow. None: this code has no such switch."""
    code = ("import sys, time\n"
            "from correlator import inventory, subscriber_csv, subscriber_index\n"
            "if not hasattr(subscriber_csv, 'ARROW_FROM'): sys.exit(3)\n"
            "subscriber_csv.ARROW_FROM = 1 << 62\n"
            "subscriber_csv._ARROW = False\n"  # the processes index their parts again
            "subscriber_index.ARROW_FROM = 1 << 62\n"
            "t = time.perf_counter()\n"
            "inventory.load_inventory([sys.argv[1]])\n"
            "print(time.perf_counter() - t)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    got = subprocess.run([sys.executable, "-c", code, str(base / "inventory.yaml")], env=env,
                         capture_output=True, text=True, check=False)
    return float(got.stdout) if got.returncode == 0 else None


async def _reload(fn: Any, base: Path) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = loop.time()
        while not done:
            await asyncio.sleep(0.001)
            now = loop.time()
            worst = max(worst, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    t = time.perf_counter()
    await fn([base / "inventory.yaml"])
    took = time.perf_counter() - t
    done = True
    await task
    return worst, took


def opening(base: Path, inv: Any, agg: str) -> None:
    """The observe() call that opens the aggregation node's incident: analysis, impact,
    judgement (churn history and priority of every subscriber) and the SQLite writes."""
    from correlator.engine import Correlator
    from correlator.store import IncidentStore
    from probes.types import REACHABLE, Observation

    db = base / "incidents-open.db"
    store = IncidentStore(db)
    corr = Correlator(inv, store, clock=FakeClock(1.8e9), hold_down=0.0)
    corr.observe([Observation(agg, "snmp", REACHABLE, "", 1, 0.0)])
    t = time.perf_counter()
    (_opened,) = corr.observe([Observation(agg, "snmp", REACHABLE, "", 0, 0.0,
                                          {"reason": "timeout"})])
    took = time.perf_counter() - t
    report("Correlator.observe opening its incident (+ judgement, SQLite)", took * 1e3, "ms",
           "", None)
    store.close()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def observations(base: Path, inv: Any, args: argparse.Namespace, meta: dict[str, Any], *,
                 outage: bool, detect: bool = False) -> None:
    from correlator.engine import Correlator
    from correlator.store import IncidentStore
    from probes.types import IF_OPER_STATUS, REACHABLE, RTT_MS, InterfaceCounters, Observation

    rng = random.Random(args.seed + outage)
    clock = FakeClock(dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC).timestamp())
    db = base / f"incidents-{int(outage)}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = IncidentStore(db)
    detection: Any = None
    if detect:
        from correlator.detection import DetectionConfig

        detection = DetectionConfig.model_validate(
            {"congestion": {"raise_after_s": 0, "clear_after_s": 0}})
    corr = Correlator(inv, store, clock=clock, hold_down=5.0, detection=detection)
    up_labels = {"admin": "up"}
    no_answer = {"reason": "timeout"}
    olts = [olt_name(i) for i in range(meta["olts"])]
    olts_per_agg = meta["olts_per_agg"]
    aggs = [f"agg{a:03d}" for a in range(meta["aggregation"])]
    pons = [f"pon0/{p + 1}" for p in range(PON)]
    down_ports: dict[tuple[str, str], int] = {}  # simulated port -> polls left down
    olt_down: dict[str, int] = {}
    dead = set(olts[:olts_per_agg]) | {"agg000"} if outage else set()
    if_names = [*pons, "xe-0/0/0"]
    speeds: list[int | None] = [*([2500] * PON), 10_000]  # GPON 2.5 Gb/s, 10 Gb/s uplink
    n_if = len(if_names)
    octets: dict[str, list[int]] = {}
    congested: dict[tuple[str, int], int] = {}  # (OLT, port index) -> polls left at 95 %
    last_poll: dict[str, float] = {}

    def table(name: str, ts: float) -> InterfaceCounters:
        """The OLT's interface table: octets grown at ~30 % of speed since its last poll
        (95 % on a congested port)."""
        seconds = ts - last_poll.get(name, ts - 1.0)
        last_poll[name] = ts
        o = octets.setdefault(name, [0] * n_if)
        for i in range(n_if):
            left = congested.get((name, i), 0)
            if left:
                congested[name, i] = left - 1
                if left == 1:
                    del congested[name, i]
            elif i < PON and rng.random() < args.congestion_rate:
                congested[name, i] = left = rng.randrange(2, 6)
            share = 0.95 if left else 0.25 + 0.1 * rng.random()
            o[i] += int(share * (speeds[i] or 0) * 125_000 * seconds)
        return InterfaceCounters(list(range(1, n_if + 1)), if_names, [1] * n_if, list(o),
                                 [0] * n_if, [0] * n_if, [0] * n_if, speeds)

    def cycle(baseline: bool) -> Iterator[tuple[list[Observation], InterfaceCounters | None]]:
        """One poll of every device, as the scheduler would batch them."""
        ts = clock.now
        for name in ("core1", "core2", *aggs):
            if name in dead:
                yield [Observation(name, "snmp", REACHABLE, "", 0, ts, no_answer)], None
                continue
            yield [Observation(name, "snmp", REACHABLE, "", 1, ts),
                   Observation(name, "snmp", IF_OPER_STATUS, "xe-0/0/0", 1, ts,
                               up_labels)], None
        for name in olts:
            if rng.random() < 0.001:
                yield [Observation("unknown-dev", "snmp", REACHABLE, "", 1, ts)], None
            left = olt_down.get(name, 0)
            if not baseline and not left and rng.random() < args.fault_rate / 20:
                left = olt_down[name] = 3
            if name in dead or left:
                if left:
                    olt_down[name] = left - 1
                yield [Observation(name, "snmp", REACHABLE, "", 0, ts, no_answer)], None
                continue
            batch = [Observation(name, "snmp", REACHABLE, "", 1, ts)]
            for pon in pons:
                key = (name, pon)
                n = down_ports.get(key, 0)
                if n:
                    down_ports[key] = n - 1
                    if n == 1:
                        del down_ports[key]
                elif not baseline and rng.random() < args.fault_rate:
                    down_ports[key] = n = rng.randrange(2, 8)
                batch.append(Observation(name, "snmp", IF_OPER_STATUS, pon, 2 if n else 1, ts,
                                         up_labels))
            if not detect:
                yield batch, None
                continue
            batch.append(Observation(name, "ping", RTT_MS, "", 2.0 + rng.random(), ts))
            yield batch, table(name, ts)

    # warm-up: the first poll of every port is its baseline; then open the outage, if any
    def feed(batch: list[Observation], counters: InterfaceCounters | None) -> int:
        events = len(corr.observe(batch))
        if counters is not None:
            events += len(corr.observe_counters(batch[0].device, counters, clock.now))
        return events

    for batch, counters in cycle(True):
        feed(batch, counters)
    for _ in range(7):
        clock.now += 1.0
        for batch, counters in cycle(True):
            feed(batch, counters)
        corr.tick()
    opened = len(corr.open)

    step = 1.0 / args.rate  # simulated seconds per observation at the offered rate
    n_obs = 0
    cpu = 0.0
    wall = 0.0
    next_tick = clock.now + 1.0
    n_events = 0
    while n_obs < args.observations and cpu < args.max_cpu:
        batches = list(cycle(False))
        for batch, counters in batches:
            size = len(batch) + (n_if if counters is not None else 0)
            clock.now += step * size
            c0, w0 = time.process_time(), time.perf_counter()
            n_events += feed(batch, counters)
            if clock.now >= next_tick:
                next_tick += 1.0
                n_events += len(corr.tick())
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            n_obs += size
            if n_obs >= args.observations or cpu >= args.max_cpu:
                break
    label = "during an aggregation outage" if outage else "no outage"
    if detect:
        found = ", ".join(f"{k} {s} {n:,}" for (k, s), n in sorted(corr.stats.detections.items()))
        label += f", with detection (counters + RTT; {found or 'nothing found'})"
    big = max((i.impact.subscriber_count for i in corr.open.values()), default=0)
    print(f"3. observations through Correlator.observe, {label} ({n_obs:,} observations, "
          f"{corr.stats.faults:,} state changes, {n_events:,} incident events, "
          f"{len(corr.open)} open incidents, largest {big:,} subscribers; "
          f"{opened} open after warm-up)")
    report("observations/s (CPU time, one core)", n_obs / cpu, "obs/s", "> 20,000",
           n_obs / cpu > 20_000)
    report("observations/s (wall time, incl. SQLite fsync)", n_obs / wall, "obs/s", "", None)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--ports", type=int, default=20_000)
    ap.add_argument("--per-agg", type=int, default=100_000,
                    help="subscribers behind one aggregation node")
    ap.add_argument("--observations", type=int, default=400_000, help="per run")
    ap.add_argument("--max-cpu", type=float, default=60.0, help="CPU seconds per run at most")
    ap.add_argument("--rate", type=float, default=20_000.0,
                    help="offered observations per simulated second")
    ap.add_argument("--fault-rate", type=float, default=0.0005,
                    help="probability that a port goes down, per port observation")
    ap.add_argument("--congestion-rate", type=float, default=0.0005,
                    help="probability that a PON port starts a few congested polls, per "
                         "counter sample (with detection)")
    ap.add_argument("--skip-detection", action="store_true",
                    help="only the up/down mix (no counters, RTT or detectors)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    ap.add_argument("--skip-reload", action="store_true")
    ap.add_argument("--skip-reference", action="store_true",
                    help="do not load the inventory again with the pure-Python CSV reader")
    ap.add_argument("--splitter-role", default="passive",
                    help="inventory role of the splitters (code without 'passive': access)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure is not None:
        meta = json.loads((args.measure / "meta.json").read_text())
        measure(args.measure, args, meta)
        return
    with tempfile.TemporaryDirectory(prefix="netreflex-scale-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        meta = generate(base, subscribers=args.subscribers, ports=args.ports,
                        per_agg=args.per_agg, seed=args.seed,
                        splitter_role=args.splitter_role)
        (base / "meta.json").write_text(json.dumps(meta))
        size = (base / "subscribers.csv").stat().st_size
        print(f"generated {base} in {time.perf_counter() - t:.1f} s "
              f"(subscribers.csv {size / 2**20:.0f} MiB)", flush=True)
        child = [sys.executable, __file__, *sys.argv[1:], "--measure", str(base)]
        sys.exit(subprocess.call(child, env={**os.environ, "PYTHONHASHSEED": "0"}))


if __name__ == "__main__":
    main()
