"""A real SMTP server on loopback (aiosmtpd) that records every message it accepts.

It runs aiosmtpd's protocol on a free port of 127.0.0.1, in its own event loop and thread,
so sync and async tests can both use it. Every accepted message is recorded -- duplicates
included, so "exactly once" assertions mean what they say. Options:

- ``rcpt_replies`` / ``data_replies``: answers to give, in order, at RCPT TO or at the end
  of DATA (``"550 5.1.1 mailbox unknown"``, ``"451 4.7.1 try again later"``); once a list
  is empty the server accepts. A message answered with an error is not recorded.
- ``refuse``: ``{address: reply}``: every RCPT TO that address gets that reply (a
  mailbox that does not exist), whatever the order messages arrive in.
- ``tls``: ``(cert.pem, key.pem)``; with ``implicit=False`` (the default) the server
  offers STARTTLS and requires it, with ``implicit=True`` it speaks TLS from the first
  byte (port 465 style).
- ``users``: ``{login: password}``; when given, AUTH is required.

``SilentServer`` accepts TCP connections and never says a word: a hung SMTP server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool
    ts: float = field(default_factory=time.time)

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return "" if part is None else str(part.get_content())


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.server.refuse.get(address) or self.server._next(self.server.rcpt_replies)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.server._next(self.server.data_replies)
        if reply is not None:
            return reply
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        with self.server.lock:
            self.server.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos),
                                          msg, login, _encrypted(server, session)))
        return "250 2.0.0 accepted"


def _encrypted(server: SMTP, session: Session) -> bool:
    """STARTTLS happened, or the connection spoke TLS from the start."""
    transport = server.transport
    return session.ssl is not None or (
        transport is not None and transport.get_extra_info("ssl_object") is not None)


class SmtpServer:
    def __init__(self, *, rcpt_replies: list[str] | None = None,
                 data_replies: list[str] | None = None,
                 tls: tuple[Path, Path] | None = None, implicit: bool = False,
                 users: dict[str, str] | None = None,
                 refuse: dict[str, str] | None = None) -> None:
        self.rcpt_replies = list(rcpt_replies or [])
        self.refuse = dict(refuse or {})
        self.data_replies = list(data_replies or [])
        self.users = users
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self.port = 0
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(str(tls[0]), str(tls[1]))
        self.implicit = implicit
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="smtp-server", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, replies: list[str]) -> str | None:
        with self.lock:
            return replies.pop(0) if replies else None

    def _auth(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
              data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and self.users is not None
              and self.users.get(data.login.decode()) == data.password.decode())
        return AuthResult(success=ok, auth_data=data.login if ok else None)

    def _protocol(self) -> SMTP:
        return SMTP(
            _Handler(self), hostname="smtp.test", loop=self._loop,
            tls_context=None if self.implicit else self._tls,
            require_starttls=self._tls is not None and not self.implicit,
            auth_required=self.users is not None, auth_require_tls=self._tls is not None,
            authenticator=self._auth if self.users is not None else None,
        )

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMTP server did not start within 10 s")

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # sessions still open (a client that never said QUIT)
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def setup() -> None:
            self._server = await self._loop.create_server(
                self._protocol, "127.0.0.1", 0,
                ssl=self._tls if self.implicit else None)
            self.port = int(self._server.sockets[0].getsockname()[1])
            self._ready.set()

        self._loop.run_until_complete(setup())
        self._loop.run_forever()

    # --- queries -------------------------------------------------------------------------

    def snapshot(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def wait_for(self, predicate: Callable[[list[Mail]], bool],
                 timeout: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if predicate(got):
                return got
            time.sleep(0.02)
        raise AssertionError(f"SMTP server: condition not met within {timeout}s; got "
                             f"{[(m.rcpt_tos, m.message['Subject']) for m in self.snapshot()]}")


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (nor closes them) -- or, with
    ``trickle``, sends its greeting one byte every ``trickle`` seconds, so that no read
    ever times out and only a deadline on the whole conversation ends it."""

    def __init__(self, *, trickle: float | None = None) -> None:
        self.trickle = trickle
        self.dropped = 0  # trickled connections the client closed
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="silent-smtp", daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self._sock.close()

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)
            if self.trickle is not None:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        assert self.trickle is not None
        for byte in b"220 smtp.test ESMTP" * 100:
            if self._stop.wait(self.trickle):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:  # the client hung up
                with self._lock:
                    self.dropped += 1
                return
