"""Polling one device over SSH/CLI (netmiko), in a bounded thread pool shared by all.

The I/O is here; what the output means is in :mod:`probes.cli.parse`; logging in and
cutting a session from outside are in :mod:`probes.cli.session` (remediation uses them too).

netmiko blocks, so each poll is one job in the executor passed in: (re)connect if needed,
run the allowed commands, parse them. The SSH session stays open between polls. The
event loop bounds the job with ``timeout`` (from the moment a thread picks it up); when
it expires the poll reports ``error="timeout"`` at once and *aborts* the job from the
outside -- shuts the TCP socket down (paramiko's reader stops, a login in progress fails)
and cuts netmiko's channel (its read loop raises instead of polling until its own
timeout) -- so the stuck thread returns to the pool within a few hundredths of a second.
A device holds at most one thread: while its previous job is still unwinding, a poll
waits up to a second for it, then reports ``timeout`` without queueing another. Time
spent waiting for a free thread is not part of ``timeout``: the caller bounds the
whole poll if it must (the pool is shared, so a busy pool is not this device's fault).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from netmiko import BaseConnection

from probes.cli import parse
from probes.cli.commands import Command, commands_for
from probes.cli.config import CliProbeConfig
from probes.cli.session import Aborted, CliJob, abort, classify, cut, open_session
from probes.errors import ProbeConfigError
from probes.types import PollResult

if TYPE_CHECKING:
    from probes.types import Poller

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT: Final = 5.0  # seconds a polite logout may take in aclose()
_UNWIND_WAIT: Final = 1.0  # seconds a poll waits for the previous, aborted job to end


@dataclass(slots=True)
class _Link:
    """One open SSH session: netmiko's connection on a TCP socket we own."""

    conn: BaseConnection
    sock: socket.socket


@dataclass(slots=True)
class _Job(CliJob):
    """A poll's abortable job (:class:`probes.cli.session.CliJob`) and what it read."""

    results: list[tuple[Command, list[parse.Fact] | parse.OutputError]] = field(
        default_factory=list
    )


class CliPoller:
    """Scrapes one device's CLI; reports what changed since its last good read.

    One job (one pool thread) at a time per device; one poll at a time per poller (a
    second concurrent call is a RuntimeError). ``poll`` never raises for device trouble:
    ``timeout`` (no TCP connect, no SSH banner or no prompt in time; REACHABLE 0),
    ``socket`` (refused, unreachable, session dropped; REACHABLE 0), ``auth`` (the device
    rejected the credentials; REACHABLE 1), ``hostkey`` (host key not in ``known_hosts``
    or changed; REACHABLE 1), ``decode`` (the device answered but no command's output
    could be used; REACHABLE 1). Output one command's parser cannot use is counted in
    :attr:`stats` (``rejected`` / ``unparsed``), logged, named in ``detail``, and the
    command's previous state is kept.
    """

    def __init__(
        self,
        *,
        device: str,
        address: str,
        config: CliProbeConfig,
        executor: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ProbeConfigError(
                f"{device}: CLI address {address!r} is not an IP address "
                "(put the IP in the inventory)",
                device=device,
                operation="cli poll",
            ) from None
        missing = parse.check_templates(config.platform)
        if missing:
            raise ProbeConfigError(
                f"{device}: ntc-templates lacks {', '.join(missing)}; "
                "pip install 'ntc-templates>=9'",
                device=device,
                operation="cli poll",
            )
        self.device = device
        self._address = address
        self._config = config
        self._timeout = config.timeout
        self._commands = commands_for(config.platform, config.commands)
        self._executor = executor
        self._link: _Link | None = None  # touched by the running job only
        self._job: _Job | None = None
        self._future: concurrent.futures.Future[Any] | None = None
        self._state: dict[str, dict[parse.Key, parse.Fact]] = {}
        self._failing: set[str] = set()  # commands whose last output was not used
        self._busy = False
        self.stats: dict[str, int] = {"connects": 0, "rejected": 0, "unparsed": 0}
        """Monotonic counters: SSH logins, and command outputs not used (by reason)."""

    @property
    def commands(self) -> tuple[Command, ...]:
        return self._commands

    async def aclose(self) -> None:
        """Log out (in the pool, bounded) and drop the session; a later poll logs in again."""
        if self._future is not None and not self._future.done():
            assert self._job is not None
            abort(self._job)  # the job drops the session as it unwinds
            return
        link, self._link = self._link, None
        if link is None:
            return
        try:
            future = self._executor.submit(_close, link, polite=True)
            await asyncio.wait_for(asyncio.wrap_future(future), _CLOSE_TIMEOUT)
        except (RuntimeError, TimeoutError):  # pool shut down, or logout hung
            cut(link.sock, link.conn)

    async def poll(self) -> PollResult:
        if self._busy:
            raise RuntimeError(f"{self.device}: poll() is already running (one at a time)")
        self._busy = True
        try:
            return await self._poll()
        finally:
            self._busy = False

    async def _poll(self) -> PollResult:
        ts = time.time()
        previous = self._future
        if previous is not None and not previous.done():
            # An aborted job unwinds in a few hundredths of a second; give it a moment.
            await asyncio.wait({asyncio.wrap_future(previous)}, timeout=_UNWIND_WAIT)
            if not previous.done():
                assert self._job is not None
                return self._failed(
                    ts, "timeout", f"the previous session is still closing ({self._job.doing})"
                )
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        job = self._job = _Job()
        cfuture = self._future = self._executor.submit(self._work, job, loop, started)
        future = asyncio.wrap_future(cfuture, loop=loop)
        try:
            await asyncio.wait({started, future}, return_when=asyncio.FIRST_COMPLETED)
            async with asyncio.timeout(self._timeout):
                error = await future
        except TimeoutError:
            abort(job)
            return self._failed(ts, "timeout", f"no answer in {self._timeout:g} s ({job.doing})")
        except asyncio.CancelledError:
            if not cfuture.cancel():
                abort(job)
            raise
        if error is not None:
            return self._failed(ts, *classify(error, self._config))
        return self._fold(ts, job.results)

    def _fold(
        self, ts: float, results: list[tuple[Command, list[parse.Fact] | parse.OutputError]]
    ) -> PollResult:
        observations = [parse.reachable(self.device, ts, answered=True, reason="ok")]
        problems = []
        for command, facts in results:
            if isinstance(facts, parse.OutputError):
                self.stats[facts.reason] = self.stats.get(facts.reason, 0) + 1
                level = logging.DEBUG if command.text in self._failing else logging.WARNING
                self._failing.add(command.text)
                log.log(
                    level, "cli output not used device=%s reason=%s %s",
                    self.device, facts.reason, facts.detail,
                )
                problems.append(f"{command.text}: {facts.reason}")
                continue
            self._failing.discard(command.text)
            state, changed = parse.changes(self._state.get(command.text), facts)
            self._state[command.text] = state
            observations.extend(parse.observation(self.device, ts, f) for f in changed)
        detail = "; ".join(problems)
        if problems and len(problems) == len(results):
            return self._failed(ts, "decode", f"no usable output: {detail}", answered=True)
        return PollResult(device=self.device, ts=ts, detail=detail, observations=observations)

    def _failed(
        self, ts: float, error: str, detail: str, answered: bool | None = None
    ) -> PollResult:
        if answered is None:
            answered = error not in ("timeout", "socket")
        where = f"{self._address}:{self._config.port}"
        return PollResult(
            device=self.device,
            ts=ts,
            error=error,
            detail=f"{where}: {detail}",
            observations=[parse.reachable(self.device, ts, answered=answered, reason=error)],
        )

    # --- in the pool thread ------------------------------------------------------------

    def _work(
        self, job: _Job, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None]
    ) -> Exception | None:
        """The whole poll's I/O. Returns the exception that ended it, if any."""
        try:
            loop.call_soon_threadsafe(_set_once, started)
        except RuntimeError:  # the loop is closed: nobody waits for us
            return None
        link = self._link
        try:
            if link is not None and not _alive(job, link):
                self._link = link = None
            if link is None:
                link = self._link = self._connect(job)
            for command in self._commands:
                job.doing = f"running {command.text!r}"
                if job.aborted:
                    raise Aborted
                text = link.conn.send_command(
                    command.text, read_timeout=self._timeout, strip_prompt=True,
                    strip_command=True,
                )
                try:
                    facts: list[parse.Fact] | parse.OutputError = parse.parse(command, str(text))
                except parse.OutputError as exc:
                    facts = exc
                job.results.append((command, facts))
            if job.aborted:  # too late for this poll, and the channel may be cut
                raise Aborted
        except Exception as exc:  # noqa: BLE001  # reported by the event loop, not raised
            self._link = None
            if job.conn is not None and job.sock is not None:
                _close(_Link(job.conn, job.sock), polite=False)
            elif job.sock is not None:
                job.sock.close()
            if job.aborted:
                log.debug("cli job ended after abort device=%s: %r", self.device, exc)
            return exc
        return None

    def _connect(self, job: _Job) -> _Link:
        conn, sock = open_session(job, self._address, self._config, self._timeout)
        self.stats["connects"] += 1
        log.debug("cli session open device=%s platform=%s", self.device, self._config.platform)
        return _Link(conn, sock)


def _alive(job: _Job, link: _Link) -> bool:
    """Whether the kept session still works; a dead one is closed (job points at it until
    then, so an abort reaches it)."""
    job.doing = "checking the open session"
    job.sock, job.conn = link.sock, link.conn
    try:
        alive = link.conn.is_alive()
    except Exception:  # noqa: BLE001  # any failure here means: log in again
        alive = False
    if not alive:
        _close(link, polite=False)
        job.sock = job.conn = None
    return alive


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close(link: _Link, *, polite: bool) -> None:
    """Release a session (blocking). ``polite``: log out first, which may wait on the
    device (SmartAX confirms for up to 30 s) -- only where the wait is bounded from
    outside; otherwise the session is cut first and netmiko's logout fails at once."""
    if not polite:
        cut(link.sock, link.conn)
    with contextlib.suppress(Exception):  # already broken: nothing more to do
        link.conn.disconnect()  # also drops netmiko's log filter that holds the password
    link.sock.close()


if TYPE_CHECKING:

    def _is_a_poller(poller: CliPoller) -> Poller:
        return poller
