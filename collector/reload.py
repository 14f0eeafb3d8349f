"""SIGHUP: re-read config, inventory and policy off the event loop, validate them, and
swap them in at once. Incidents and the journal are kept. An invalid file keeps the old
configuration, logs every problem and sets ``netreflex_config_last_reload_successful``
to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from actions.dispatcher import Dispatcher, build_executors
from actions.types import Executor
from collector.config import Settings, load_config
from collector.scheduler import PollJob
from correlator.inventory import off_the_loop
from probes.source import SourceError

if TYPE_CHECKING:
    from collector.daemon import Daemon

log = logging.getLogger(__name__)

# Sections that are bound at start (sockets, files, state) and need a restart to change.
RESTART_ONLY = ("daemon", "traps", "syslog", "cluster")


async def reload(daemon: Daemon) -> bool:
    path = daemon.settings.path
    log.info("reloading %s", path)
    try:
        new: Settings = await asyncio.to_thread(_load_off_loop, path)
    except SourceError as exc:
        for problem in exc.problems:
            log.error("reload rejected: %s", problem)
        log.error("reload rejected: %d problem(s); still running the previous configuration",
                  len(exc.problems))
        daemon.metrics.reloads.labels("error").inc()
        daemon.metrics.reload_ok.set(0)
        return False
    except OSError as exc:
        log.error("reload rejected: cannot read %s: %s", path, exc)
        daemon.metrics.reloads.labels("error").inc()
        daemon.metrics.reload_ok.set(0)
        return False
    apply(daemon, new)
    daemon.metrics.reloads.labels("ok").inc()
    daemon.metrics.reload_ok.set(1)
    daemon.metrics.reload_time.set_to_current_time()
    return True


def _load_off_loop(path: str | os.PathLike[str]) -> Settings:
    """``load_config`` in a worker thread; a large inventory is loaded by another process
    (see ``reload_inventory``), so that the GIL stays free for the event loop."""
    with off_the_loop():
        return load_config(path)


def apply(daemon: Daemon, new: Settings) -> None:
    """Swap in an already validated configuration (synchronous: nothing runs in between)."""
    old = daemon.settings
    for section in RESTART_ONLY:
        if getattr(old.config, section) != getattr(new.config, section):
            log.warning("reload: %s: changes take effect at the next restart", section)
    if (old.config.correlation.model_copy(update={"maintenance_file": None})
            != new.config.correlation.model_copy(update={"maintenance_file": None})):
        log.warning("reload: correlation: hold-downs, priority, churn, damping and detection "
                    "settings take effect at the next restart (the inventory and maintenance "
                    "windows are reloaded now)")
    config = new.config.model_copy(update={s: getattr(old.config, s) for s in RESTART_ONLY})

    daemon.correlator.inventory = new.inventory
    daemon.correlator.maintenance.replace_windows(new.maintenance)
    _swap_policy(daemon, new)
    for source in daemon.sources:
        set_rules = getattr(source, "set_rules", None)
        if set_rules is not None:
            set_rules(list(new.syslog_rules))
    daemon.resolver.update({n: d.address for n, d in config.devices.items()})
    changed = _swap_jobs(daemon, config)
    daemon.settings = Settings(
        path=new.path, config=config, inventory=new.inventory, policy=new.policy,
        warnings=new.warnings, maintenance=new.maintenance, syslog_rules=new.syslog_rules,
    )
    daemon.cfg = config
    log.info("reload done: %d device(s) (%d added or changed), %d subscriber(s), %d rule(s)",
             len(config.devices), changed, len(new.inventory.subscribers),
             len(new.policy.rules))


def _swap_policy(daemon: Daemon, new: Settings) -> None:
    dispatcher = daemon.dispatcher
    old_targets = dispatcher.policy.targets
    fresh = build_executors(new.policy, state_dir=Path(daemon.cfg.daemon.state_dir),
                            context=daemon.executor_context)
    keep: dict[str, Executor] = {}
    retired: list[Executor] = []
    for name, executor in dispatcher.executors.items():
        if name in new.policy.targets and old_targets.get(name) == new.policy.targets[name]:
            keep[name] = executor  # unchanged target: keep its connections
        else:
            retired.append(executor)
    for name, executor in fresh.items():
        if name in keep:
            daemon_close = executor.aclose()
            daemon.background(daemon_close, name=f"close-unused:{name}")
        else:
            keep[name] = executor
    dispatcher.policy = new.policy
    dispatcher.executors = keep
    for executor in retired:  # in-flight actions may still use them: close when idle
        daemon.background(_close_when_idle(dispatcher, executor),
                          name="close-retired-executor")


RETIRED_IDLE_WAIT = 900.0  # seconds: a remediation's settle and verify fit in it


async def _close_when_idle(dispatcher: Dispatcher, executor: Executor,
                           bound: float = RETIRED_IDLE_WAIT) -> None:
    """Close a retired executor once no in-flight action uses it (at most ``bound``)."""
    if not await dispatcher.idle(executor, bound):
        log.warning("reload: a retired %s executor still runs an action after %.0fs; "
                    "closing it anyway", executor.kind, bound)
    with contextlib.suppress(Exception):
        await executor.aclose()


def _swap_jobs(daemon: Daemon, config: object) -> int:
    from collector.config import RootConfig

    assert isinstance(config, RootConfig)
    old = daemon.cfg
    sched = daemon.scheduler
    changed = 0
    for name in set(old.devices) | set(config.devices):
        before = (old.devices.get(name), old.polling, old.credentials)
        after = (config.devices.get(name), config.polling, config.credentials)
        if name in old.devices and before == after:
            continue
        for job in [j for j in sched.jobs if j.poller.device == name]:
            sched.remove(job)
            daemon.background(job.poller.aclose(), name=f"close-poller:{name}")
            daemon.metrics.devices.forget(name)
        if name in config.devices:
            for job in daemon.build_jobs(config, only=name):
                sched.add(job)
            changed += 1
    daemon.jobs = sched.jobs
    return changed


__all__ = ["PollJob", "apply", "reload"]
