"""ping_many throughput on loopback: targets/s and CPU per echo (127.0.0.0/8 only).

python bench/ping.py [targets] [concurrency] [count]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

from probes.icmp import PingProbeConfig, ping_many


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(targets: int, concurrency: int, count: int) -> None:
    addresses = [f"127.0.{i // 250 % 250}.{i % 250 + 1}" for i in range(targets)]
    config = PingProbeConfig(count=count, interval=0.0, timeout=1.0)
    c0, t0 = _cpu(), time.perf_counter()
    stats = await ping_many(addresses, config=config, concurrency=concurrency)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    echoes = sum(s.sent for s in stats.values())
    lost = sum(s.sent - s.received for s in stats.values())
    print(
        f"{targets} targets x {count} echoes, concurrency {concurrency}: "
        f"{targets / wall:.0f} targets/s, {cpu / echoes * 1e6:.1f} us CPU/echo, lost {lost}"
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    asyncio.run(main(*(args + [10_000, 500, 3][len(args) :])))
