"""Polling on a schedule: per-device interval with jitter, one poll per device at a time,
a global concurrency cap, and a deadline per device so one slow or dead device never
delays the others.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from probes.types import REACHABLE, Observation, Poller, PollResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PollJob:
    poller: Poller
    probe: str
    interval: float
    timeout: float
    retries: int
    jitter: float = 0.1
    deadline: float = 0.0  # whole poll incl. retries; 0 → derived from timeout and retries
    last_error: str | None = field(default=None)
    running: bool = False
    removed: bool = False

    def __post_init__(self) -> None:
        if not self.deadline:
            per_attempt = max(self.timeout * 4, self.timeout + 1.0)
            self.deadline = min(per_attempt * (self.retries + 1), max(self.interval, 1.0) * 3)


ResultHandler = Callable[[PollJob, PollResult, float, int], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        jobs: list[PollJob],
        on_result: ResultHandler,
        *,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        first_spread: float = 5.0,
    ) -> None:
        self.jobs = jobs
        self.on_result = on_result
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self._slots = asyncio.Semaphore(concurrency)
        self._heap: list[tuple[float, int, PollJob]] = []
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.last_tick = clock()
        now = clock()
        n = max(len(jobs), 1)
        for i, job in enumerate(jobs):
            spread = min(job.interval, first_spread)
            self._push(now + spread * i / n, job)

    def add(self, job: PollJob) -> None:
        """Start polling a new job now (config reload)."""
        self.jobs = [*self.jobs, job]
        self._push(self.clock(), job)

    def remove(self, job: PollJob) -> None:
        """Stop polling a job; a poll in flight finishes but is not rescheduled."""
        job.removed = True
        self.jobs = [j for j in self.jobs if j is not job]

    def _push(self, at: float, job: PollJob) -> None:
        if job.removed:
            return
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, job))
        self._changed.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, stopping: asyncio.Event) -> None:
        """Start polls as they fall due until ``stopping`` is set."""
        while not stopping.is_set():
            self.last_tick = now = self.clock()
            while self._heap and self._heap[0][0] <= now and not stopping.is_set():
                _, _, job = heapq.heappop(self._heap)
                if job.removed:
                    continue
                await self._slots.acquire()
                job.running = True
                task = asyncio.create_task(self._poll(job), name=f"poll:{job.poller.device}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                now = self.clock()
            delay = 1.0 if not self._heap else min(1.0, max(0.0, self._heap[0][0] - now))
            self._changed.clear()
            waiter = asyncio.ensure_future(self._changed.wait())
            stopper = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=delay,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    async def drain(self, timeout: float) -> int:
        """Let running polls finish for up to ``timeout``; cancel the rest."""
        if not self._tasks:
            return 0
        _, left = await asyncio.wait(set(self._tasks), timeout=timeout)
        for t in left:
            t.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        return len(left)

    async def _poll(self, job: PollJob) -> None:
        started = self.clock()
        attempts = 0
        result: PollResult | None = None
        try:
            try:
                async with asyncio.timeout(job.deadline):
                    while True:
                        attempts += 1
                        result = await job.poller.poll()
                        if result.error != "timeout" or attempts > job.retries:
                            break
            except TimeoutError:
                result = PollResult(
                    device=job.poller.device, ts=self.wall(), error="timeout",
                    detail=f"no complete answer within the {job.deadline:.1f}s deadline",
                    observations=[Observation(job.poller.device, job.probe, REACHABLE, "", 0,
                                              self.wall(), {"reason": "deadline"})],
                )
            except Exception as exc:  # a probe bug must not stop the scheduler
                log.exception("probe crashed device=%s", job.poller.device)
                result = PollResult(device=job.poller.device, ts=self.wall(), error="internal",
                                    detail=f"{type(exc).__name__}: {exc}")
            self._log_change(job, result)
            await self.on_result(job, result, self.clock() - started, attempts)
        finally:
            job.running = False
            self._slots.release()
            elapsed = self.clock() - started
            base = started + job.interval * (1 + self.rng.uniform(-job.jitter, job.jitter))
            self._push(max(base, self.clock(), started + elapsed), job)

    @staticmethod
    def _log_change(job: PollJob, result: PollResult) -> None:
        if result.error == job.last_error:
            return
        dev = job.poller.device
        if result.error is None:
            log.info("poll ok again device=%s probe=%s (was %s)", dev, job.probe, job.last_error)
        else:
            log.warning("poll failed device=%s probe=%s reason=%s: %s", dev, job.probe,
                        result.error, result.detail)
        job.last_error = result.error
