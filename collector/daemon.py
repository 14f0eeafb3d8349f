"""The daemon: builds every component from Settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from actions.dispatcher import Dispatcher, build_executors
from actions.executors.mqtt import publish_results, result_publishers
from actions.executors.remediate import DeviceAccess
from actions.journal import Journal
from actions.types import ActionResult, ExecutorContext
from collector import roles
from collector.bus import Batch, CounterTable
from collector.config import RootConfig, Settings
from collector.metrics import Metrics
from collector.resolver import ConfigResolver
from collector.scheduler import PollJob, Scheduler
from collector.systemd import Notifier
from correlator.engine import Correlator
from correlator.incidents import Incident, IncidentEvent
from correlator.store import IncidentStore
from probes.cli.config import CliProbeConfig
from probes.cli.poller import CliPoller
from probes.errors import ProbeError
from probes.gnmi.config import GnmiProbeConfig
from probes.gnmi.probe import GnmiProbe
from probes.icmp.config import PingProbeConfig
from probes.icmp.pinger import PingPoller
from probes.snmp.config import SnmpProbeConfig
from probes.snmp.poller import SnmpPoller
from probes.snmp.traps import TrapReceiver
from probes.syslog.receiver import SyslogReceiver
from probes.types import EventSource, Poller, PollResult

log = logging.getLogger(__name__)
CATCH_UP_SLACK = 300.0  # seconds before the last decided event that a restart looks back

from collector.version import VERSION  # noqa: E402


class Daemon:
    """One netreflex process (role ``all``): poll → correlate → act, plus metrics."""

    def __init__(self, settings: Settings, *, shutdown_trigger: Awaitable[object] | None = None):
        self.settings = settings
        self.cfg = settings.config
        self._trigger = shutdown_trigger
        self.stopping = asyncio.Event()
        self.metrics = Metrics()
        self.metrics.build.info({"version": VERSION})
        self.notifier = Notifier()
        self.plan = roles.plan(self.cfg.cluster)
        self.bus = self.plan.bus
        roles.register_metrics(self.bus, self.metrics.registry)
        roles.deliver_counters(self.bus, self._on_counters)  # core: tables from pollers
        state = Path(self.cfg.daemon.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.store = IncidentStore(state / "incidents.db")
        self.journal = Journal(state / "journal.db")
        corr = self.cfg.correlation
        self.correlator = Correlator(
            settings.inventory, self.store,
            hold_down=corr.unreachable_hold_down, priority=corr.priority, churn=corr.churn,
            damping=corr.damping, windows=settings.maintenance, max_silence=corr.max_silence,
            detection=corr.detection, state_hold_down=corr.state_hold_down,
            condition_recheck=corr.condition_recheck,
        )
        self.executor_context = ExecutorContext(
            state_dir=state, inventory=lambda: self.correlator.inventory,
            incident=self._incident, journal=self.journal,
            maintenance=self.correlator.maintenance,
            # remediation: device access from the current config, and its verify hooks
            devices=self._device_access, on_mitigated=self._mitigated,
            on_remediation_failed=self._remediation_failed)
        self.dispatcher = Dispatcher(
            settings.policy, self.journal,
            build_executors(settings.policy, state_dir=state, context=self.executor_context),
            on_result=self._on_action, down_share=self._down_share, incident=self._incident,
        )
        self.jobs = self._build_jobs()
        self.resolver = ConfigResolver(
            {name: dev.address for name, dev in self.cfg.devices.items()}, self.metrics.devices
        )
        self.sources = self._build_sources()
        self.metrics.register_sources(self.sources)
        self.metrics.register_detections(lambda: self.correlator.stats.detections)
        self.metrics.register_guardrail_trips(lambda: self.dispatcher.trips)
        self.exit_code = 0
        self.scheduler = Scheduler(
            self.jobs, self._on_poll, concurrency=self.cfg.polling.concurrency
        )
        m = self.metrics
        m.gauge("netreflex_incidents_open", "Open incidents",
                lambda: len(self.correlator.open))
        m.gauge("netreflex_action_backlog", "Actions planned or running in the journal",
                self.journal.backlog)
        m.gauge("netreflex_actions_waiting_approval", "Actions waiting for a person to "
                "approve or deny them", lambda: self.journal.state_counts().get(
                    "waiting_approval", 0))
        m.gauge("netreflex_bus_depth", "Observation batches waiting for the correlator",
                self.bus.depth)
        m.gauge("netreflex_polls_in_flight", "Polls running now", lambda: self.scheduler.in_flight)
        m.gauge("netreflex_devices", "Devices being polled", lambda: len(self.jobs))
        self._runner: web.AppRunner | None = None
        self._reload_requested = asyncio.Event()
        self._background: set[asyncio.Task[object]] = set()

    # --- wiring --------------------------------------------------------------------------

    def _incident(self, incident_id: str) -> Incident | None:
        """An incident as the correlator has it now (open ones from memory)."""
        for inc in self.correlator.open.values():
            if inc.id == incident_id:
                return inc
        return self.store.get(incident_id)

    def _device_access(self, name: str) -> DeviceAccess | None:
        """How remediation reaches a polled device (None: not polled, so passive here)."""
        dev = self.cfg.devices.get(name)
        if dev is None:
            return None

        def if_index(port: str) -> int | None:
            table = self.metrics.devices.counters.get(name)
            if table is None or port not in table.name:
                return None
            return int(table.if_index[table.name.index(port)])

        return DeviceAccess.from_probes(name, dev.address, dev.probes, self.cfg.credentials,
                                        if_index=if_index)

    def _mitigated(self, incident_id: str, *, by: str, detail: str, ts: float) -> None:
        event = self.correlator.mark_mitigated(incident_id, by, detail, ts)
        if event is not None:
            self._handle([event])

    def _remediation_failed(self, incident_id: str, *, by: str, detail: str,
                            ts: float) -> None:
        inc = self._incident(incident_id)
        if inc is not None:
            log.warning("remediation did not fix incident=%s by=%s: %s", incident_id, by,
                        detail)
            self._handle([IncidentEvent("remediation_failed", inc, ts)])

    def _catch_up(self) -> None:
        """Decide again the incident events a crash kept from the journal (saved, never
        submitted; see Dispatcher.catch_up): open incidents, and those that ended since
        a little before the last decided event."""
        last = self.journal.last_decided_at()
        since = max(self.journal.decided_since(),
                    (time.time() if last is None else last) - CATCH_UP_SLACK)
        events = self.dispatcher.catch_up([*self.correlator.open.values(),
                                           *self.store.closed_since(since)])
        if events:
            log.warning("decided %d incident event(s) that were saved but not journaled "
                        "before the last stop", len(events))

    def _build_jobs(self) -> list[PollJob]:
        self.cli_pool = ThreadPoolExecutor(max_workers=self.cfg.polling.cli_sessions,
                                           thread_name_prefix="cli")
        return self.build_jobs(self.cfg)

    def build_jobs(self, cfg: RootConfig, *, only: str | None = None) -> list[PollJob]:
        jobs: list[PollJob] = []
        for name, dev in cfg.devices.items():
            if (only is not None and name != only) or not self.plan.polls(name):
                continue
            for probe in dev.probes:
                poller: Poller
                if isinstance(probe, SnmpProbeConfig):
                    timeout = probe.timeout or cfg.polling.timeout
                    poller = SnmpPoller(
                        device=name, address=dev.address, port=probe.port,
                        credentials=cfg.credentials[probe.credentials], timeout=timeout,
                        max_repetitions=probe.max_repetitions,
                    )
                    retries = cfg.polling.retries if probe.retries is None else probe.retries
                    interval = probe.interval or cfg.polling.interval
                elif isinstance(probe, CliProbeConfig):
                    # blocking SSH sessions share one bounded thread pool
                    poller = CliPoller(device=name, address=dev.address, config=probe,
                                       executor=self.cli_pool)
                    timeout, retries = probe.timeout, 0
                    interval = probe.interval or cfg.polling.interval
                elif isinstance(probe, PingProbeConfig):
                    poller = PingPoller(device=name, address=dev.address, config=probe)
                    timeout, retries = probe.timeout * probe.count, 0
                    interval = cfg.polling.interval
                else:
                    continue  # streaming probes (gNMI) are event sources, not polled
                jobs.append(PollJob(poller=poller, probe=probe.kind, interval=interval,
                                    timeout=timeout, retries=retries,
                                    jitter=cfg.polling.jitter))
        return jobs

    def _build_sources(self) -> list[EventSource]:
        sources: list[EventSource] = []
        if self.cfg.traps is not None:
            sources.append(TrapReceiver(config=self.cfg.traps, resolver=self.resolver))
        if self.cfg.syslog is not None:
            sources.append(SyslogReceiver(config=self.cfg.syslog, resolver=self.resolver,
                                          rules=list(self.settings.syslog_rules)))
        for name, dev in self.cfg.devices.items():
            if not self.plan.polls(name):
                continue
            for probe in dev.probes:
                if isinstance(probe, GnmiProbeConfig):
                    sources.append(GnmiProbe(device=name, address=dev.address, config=probe))
        return sources

    async def _announce_ready(self) -> None:
        """READY=1 only once every listener is bound (or has failed, which stops us)."""
        waits = [w for s in self.sources if (w := getattr(s, "ready", None)) is not None]
        if waits:
            async def all_ready() -> None:
                for w in waits:
                    await w.wait()

            ready = asyncio.ensure_future(all_ready())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
            for t in (ready, stop):
                t.cancel()
            await asyncio.gather(ready, stop, return_exceptions=True)
            if self.stopping.is_set():
                return
        log.info("netreflex %s started: %d device(s) (%d polled probe(s)), %d subscriber(s), "
                 "%d open incident(s), %d action(s) pending, %d listener(s)", VERSION,
                 len({j.poller.device for j in self.jobs}), len(self.jobs),
                 len(self.settings.inventory.subscribers), len(self.correlator.open),
                 self.journal.backlog(), len(self.sources))
        self.notifier.notify("READY=1")
        self._status()

    async def _run_source(self, source: EventSource) -> None:
        """An event source that cannot start (say, its port is taken) stops the daemon
        with a clear message rather than running half-blind."""
        try:
            await source.run(self.bus.publish, self.stopping)
        except ProbeError as exc:
            log.error("cannot run %s: %s", source.name, exc)
            self.exit_code = 1
            self.request_stop()

    async def _on_poll(self, job: PollJob, result: PollResult, elapsed: float, _: int) -> None:
        m = self.metrics
        m.poll_duration.labels(job.probe).observe(elapsed)
        m.polls.labels(job.probe, "ok" if result.ok else "error").inc()
        if result.error:
            m.poll_errors.labels(job.probe, result.error).inc()
        if result.varbinds:
            m.varbinds.inc(result.varbinds)
        m.devices.update(result.device, result.counters,
                         reachable=result.error not in ("timeout", "socket"))
        if result.observations:
            await self.bus.publish(result.observations)
        if result.counters is not None:
            table = CounterTable(result.device, result.ts, result.counters)
            if self.plan.correlates:
                self._on_counters(table)
            else:  # a poller: the table goes to the core over the bus
                await roles.publish_counters(self.bus, table)

    def _on_counters(self, table: CounterTable) -> None:
        """An interface table (SNMP) to the detectors: rates, utilization, errors. From
        this process's polls, or (role ``core``) from a poller over the bus."""
        try:
            events = self.correlator.observe_counters(table.device, table.counters, table.ts)
        except Exception:  # one bad table must not take the NOC's eyes out
            self.metrics.internal_errors.labels("correlator").inc()
            log.exception("correlator failed on the counters of %s; skipped", table.device)
            return
        self._handle(events)

    def _on_batch(self, batch: Batch) -> None:
        m = self.metrics
        for obs in batch:
            m.observations.labels(obs.source).inc()
        if not self.plan.correlates:
            return  # a poller: the core correlates what the bus delivers
        before = self.correlator.stats.unknown_device
        try:
            events = self.correlator.observe(batch)
        except Exception:  # one bad batch must not take the NOC's eyes out
            m.internal_errors.labels("correlator").inc()
            log.exception("correlator failed on a batch of %d observation(s) from %s; "
                          "batch skipped", len(batch), batch[0].device if batch else "?")
            return
        if self.correlator.stats.unknown_device != before:
            m.unknown_device_observations.inc(self.correlator.stats.unknown_device - before)
        self._handle(events)

    def _handle(self, events: list[IncidentEvent]) -> None:
        for ev in events:
            self.metrics.incident_events.labels(ev.type).inc()
            self.dispatcher.submit(ev)
        if events:
            self._status()

    async def _tick(self) -> None:
        """Time-driven correlation (hold-downs) about once a second."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.stopping.wait()
            try:
                events = self.correlator.tick()
            except Exception:  # a bug in one tick must not take the NOC's eyes out
                self.metrics.internal_errors.labels("correlator").inc()
                log.exception("correlator tick failed; trying again in a second")
                continue
            self._handle(events)

    def _down_share(self) -> float:
        """The share of polled devices that stopped answering (blast-radius guardrail)."""
        polled = self.cfg.devices
        if not polled:
            return 0.0
        return len(self.correlator.down_devices & polled.keys()) / len(polled)

    def _on_action(self, result: ActionResult) -> None:
        self.metrics.actions.labels(result.executor, result.outcome).inc()
        publishers = result_publishers(self.dispatcher.executors)
        if publishers and result.outcome != "wait":  # wait: nothing happened, not yet
            row = self.journal.get(result.key)
            self.background(publish_results(publishers, result,
                                            None if row is None else row.incident_id),
                            name=f"result:{result.key}")

    def _status(self) -> None:
        self.notifier.notify(
            f"STATUS=polling {len(self.jobs)} device(s); {len(self.correlator.open)} open "
            f"incident(s); {self.journal.backlog()} action(s) pending"
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def _serve_metrics(self) -> None:
        listen = self.cfg.daemon.metrics_listen
        if not listen:
            return
        host, _, port = listen.rpartition(":")

        async def metrics(_: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "devices": len(self.jobs),
                                      "open_incidents": len(self.correlator.open)})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), int(port))
        await site.start()
        bound = self._runner.addresses[0] if self._runner.addresses else (host, port)
        log.info("metrics on http://%s:%s/metrics", bound[0], bound[1])

    _api_runner: web.AppRunner | None = None

    async def _serve_api(self) -> None:
        """The supervisor API (collector/api.py); never served without a token."""
        listen = self.cfg.daemon.api_listen
        if not listen:
            return
        if self.cfg.daemon.api_token is None:
            log.warning("supervisor API off: daemon.api_token is not set "
                        "(see `netreflex check`)")
            return
        from collector.api import build_api

        host, _, port = listen.rpartition(":")
        runner = web.AppRunner(build_api(self), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._api_runner = runner
        addr, bound_port = runner.addresses[0][:2] if runner.addresses else (host, port)
        addr = f"[{addr}]" if ":" in str(addr) else addr
        log.info("api on http://%s:%s/api/v1", addr, bound_port)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while not self.stopping.is_set():
            # only pet the watchdog while the scheduler loop itself is turning
            if asyncio.get_running_loop().time() - self.scheduler.last_tick < interval * 2:
                self.notifier.notify("WATCHDOG=1")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.stopping.wait()

    async def _wait_trigger(self) -> None:
        if self._trigger is not None:
            stop = asyncio.ensure_future(self.stopping.wait())
            trig = asyncio.ensure_future(self._trigger)
            await asyncio.wait({stop, trig}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            trig.cancel()
            self.stopping.set()

    def background(self, coro: Coroutine[Any, Any, object], *, name: str) -> None:
        """Run a fire-and-forget coroutine, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reloader(self) -> None:
        from collector.reload import reload

        while not self.stopping.is_set():
            wake = asyncio.ensure_future(self._reload_requested.wait())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
            for t in (wake, stop):
                t.cancel()
            if self.stopping.is_set():
                return
            self._reload_requested.clear()
            self.notifier.notify("RELOADING=1")
            try:
                await reload(self)
            except Exception:  # a reload bug must not take the daemon down
                self.metrics.internal_errors.labels("reload").inc()
                log.exception("reload failed; still running the previous configuration")
            self.notifier.notify("READY=1")
            self._status()

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("shutdown requested")
            self.stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        try:
            await self._serve_metrics()
        except OSError as exc:
            log.error("cannot listen on %s for metrics: %s", self.cfg.daemon.metrics_listen,
                      exc.strerror)
            self._close_stores()
            return 1
        try:
            await self._serve_api()
        except OSError as exc:
            log.error("cannot listen on %s for the API: %s", self.cfg.daemon.api_listen,
                      exc.strerror)
            if self._runner is not None:
                await self._runner.cleanup()
            self._close_stores()
            return 1
        if self.plan.correlates:
            self._catch_up()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.scheduler.run(self.stopping), name="scheduler")
                tg.create_task(self.bus.consume(self._on_batch, self.stopping), name="bus")
                if self.plan.correlates:
                    tg.create_task(self.dispatcher.run(self.stopping), name="dispatcher")
                    tg.create_task(self._tick(), name="correlation-tick")
                for source in self.sources:
                    tg.create_task(self._run_source(source), name=f"source:{source.name}")
                tg.create_task(self._watchdog(), name="watchdog")
                tg.create_task(self._wait_trigger(), name="shutdown-trigger")
                tg.create_task(self._announce_ready(), name="ready")
                tg.create_task(self._reloader(), name="reloader")
        finally:
            await self._shutdown()
        return self.exit_code

    async def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1")
        budget = self.cfg.daemon.shutdown_timeout
        cancelled = await self.scheduler.drain(budget / 2)
        undelivered = await roles.close_bus(self.bus, self._on_batch, budget / 2)
        cancelled_actions = await self.dispatcher.drain(budget / 2)
        if self._background:  # action results still being published, and the like
            _, left = await asyncio.wait(set(self._background), timeout=min(2.0, budget / 4))
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        for ex in self.dispatcher.executors.values():
            with contextlib.suppress(Exception):
                await ex.aclose()
        for job in self.jobs:
            with contextlib.suppress(Exception):
                await job.poller.aclose()
        if self._api_runner is not None:
            await self._api_runner.cleanup()
        if self._runner is not None:
            await self._runner.cleanup()
        self.cli_pool.shutdown(wait=False, cancel_futures=True)
        self._close_stores()
        log.info("stopped (polls cancelled: %d, actions left for next start: %d, "
                 "observation batches undelivered: %d)", cancelled, cancelled_actions, undelivered)

    def _close_stores(self) -> None:
        self.journal.close()
        self.store.close()
