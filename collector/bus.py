"""The in-process event bus: batches of Observations from probes to the correlator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probes.types import InterfaceCounters, Observation

Batch = Sequence[Observation]


@dataclass(frozen=True, slots=True)
class CounterTable:
    """One device's interface table from one poll, as the MQTT bus carries it to the core
    (in one process the daemon hands the table to the correlator directly)."""

    device: str
    ts: float
    counters: InterfaceCounters


CountersHandler = Callable[[CounterTable], None]


class InProcessBus:
    """A bounded queue: when the correlator falls behind, producers wait (backpressure)."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._q: asyncio.Queue[Batch] = asyncio.Queue(maxsize)

    async def publish(self, batch: Batch) -> None:
        await self._q.put(batch)

    def depth(self) -> int:
        return self._q.qsize()

    async def consume(self, handler: Callable[[Batch], None], stopping: asyncio.Event) -> None:
        while not (stopping.is_set() and self._q.empty()):
            getter = asyncio.ensure_future(self._q.get())
            stopper = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if getter.done():
                handler(getter.result())
            else:
                getter.cancel()

    def drain_now(self, handler: Callable[[Batch], None]) -> int:
        n = 0
        while not self._q.empty():
            handler(self._q.get_nowait())
            n += 1
        return n
