"""One SSH/CLI session (netmiko) on a TCP socket we own, that the event loop can cut.

Shared by the CLI poller (:mod:`probes.cli.poller`) and remediation
(``actions.executors.remediate``). netmiko blocks, so a session runs in a pool thread as
one *job*: :func:`open_session` connects and logs in, filling in the :class:`CliJob`
as it goes, so that :func:`abort` (from the event loop) reaches whatever the thread is
waiting on -- the socket during TCP connect and login, netmiko's channel afterwards.
:func:`classify` turns what a job raised into a probe error code and a one-line detail.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

import paramiko  # type: ignore[import-untyped]
from netmiko import (
    BaseConnection,
    ConnectHandler,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)

from probes.cli.commands import NEEDS_ENABLE, NETMIKO_DEVICE_TYPE
from probes.cli.config import CliProbeConfig

log = logging.getLogger(__name__)


class Aborted(Exception):
    """The event loop gave up on this job (timeout or cancellation)."""


@dataclass(slots=True)
class CliJob:
    """What the event loop needs to abort one running job; the worker fills it in."""

    sock: socket.socket | None = None
    conn: BaseConnection | None = None
    doing: str = "waiting for a thread"
    aborted: bool = False


def open_session(job: CliJob, address: str, config: CliProbeConfig, timeout: float, *,
                 enable: bool = False) -> tuple[BaseConnection, socket.socket]:
    """TCP connect, SSH login (and ``enable`` when asked or the platform needs it), in
    the calling (pool) thread. Blocking; raises what went wrong (:class:`Aborted` when
    the job was aborted on the way). ``job.sock`` / ``job.conn`` are set as soon as they
    exist, so an abort reaches them; the caller closes them."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    job.doing = "TCP connect"
    sock = job.sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((address, config.port))
    if job.aborted:
        raise Aborted
    job.doing = "SSH login"
    conn = ConnectHandler(
        device_type=NETMIKO_DEVICE_TYPE[config.platform],
        host=address,
        port=config.port,
        username=config.username,
        password=None if config.password is None else config.password.get_secret_value(),
        use_keys=config.key_file is not None,
        key_file=config.key_file,
        passphrase=(
            None if config.key_passphrase is None
            else config.key_passphrase.get_secret_value()
        ),
        allow_agent=False,
        ssh_strict=config.known_hosts is not None,
        system_host_keys=False,
        alt_host_keys=config.known_hosts is not None,
        alt_key_file=config.known_hosts or "",
        sock=sock,
        conn_timeout=timeout,
        auth_timeout=timeout,
        banner_timeout=timeout,
        auto_connect=False,
    )
    # Log in only now that an abort can reach the connection: netmiko's session
    # preparation waits up to ~20 s for a prompt, whatever our timeouts say. These are
    # the public steps of what ConnectHandler does itself when auto_connect is true.
    job.conn = conn
    if job.aborted:
        raise Aborted
    conn.establish_connection()
    conn.write_channel(conn.RETURN)  # session preparation needs something to read
    time.sleep(0.1)
    conn.session_preparation()
    if enable or config.platform in NEEDS_ENABLE:
        job.doing = "enable"
        conn.enable()
    if job.aborted:
        raise Aborted
    return conn, sock


def cut(sock: socket.socket | None, conn: BaseConnection | None) -> None:
    """Break a session from any thread; nothing here blocks.

    Shutting the socket down stops paramiko's transport thread (and a login in
    progress); netmiko's read loops only poll ``recv_ready()``, which stays False on a
    dead channel until their own timeouts (20 s and more), so its channel is cut too:
    the next read or write raises at once.
    """
    if sock is not None:
        with contextlib.suppress(OSError):  # not connected (yet, or any more)
            sock.shutdown(socket.SHUT_RDWR)
    channel = getattr(conn, "channel", None)
    if channel is not None and hasattr(channel, "remote_conn"):
        channel.remote_conn = None


def abort(job: CliJob) -> None:
    """Make a running job give up (from the event loop thread)."""
    job.aborted = True
    cut(job.sock, job.conn)


def classify(exc: Exception, config: CliProbeConfig) -> tuple[str, str]:
    """A job's exception as a PollResult error code and a one-line detail (no secrets:
    the password never appears in netmiko's or paramiko's messages we quote)."""
    if isinstance(exc, NetmikoAuthenticationException):
        how = "key_file" if config.password is None else "password"
        return "auth", f"authentication failed for user {config.username!r} (check the {how})"
    if isinstance(exc, ConnectionRefusedError):
        return "socket", f"connection refused (is SSH enabled on port {config.port}?)"
    if isinstance(exc, TimeoutError):
        return "timeout", "TCP connect timed out"
    if isinstance(exc, NetmikoTimeoutException):
        cause = exc.__context__
        text = str(cause if cause is not None else exc)
        if isinstance(cause, paramiko.BadHostKeyException) or "known_hosts" in text:
            return "hostkey", f"host key rejected (known_hosts {config.known_hosts}): {_line(text)}"
        if "banner" in text.lower():
            return "timeout", f"no SSH banner: {_line(text)}"
        return "timeout", _line(text) or "SSH connection timed out"
    if isinstance(exc, ReadTimeout):
        return "timeout", f"no prompt after the command: {_line(str(exc))}"
    if isinstance(exc, ReadException | OSError | EOFError | paramiko.SSHException | Aborted):
        return "socket", f"session failed: {type(exc).__name__}: {_line(str(exc))}"
    log.warning("unexpected error in cli session", exc_info=exc)
    return "socket", f"unexpected {type(exc).__name__}: {_line(str(exc))}"


def _line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:200]


__all__ = ["Aborted", "CliJob", "abort", "classify", "cut", "open_session"]
