"""Customer e-mail over SMTP (stdlib ``smtplib``, in a small thread pool of its own).

Who gets a message and when is ``actions/executors/notify.py``; this module builds one
plain-text message and hands it to the SMTP server. ``Message-ID`` is derived from the
action key (``<nrx-...@netreflex.example.net>``), so a copy sent again after a crash or a
timeout carries the same id -- SMTP itself has no idempotency (see notify.py).

What an answer means: 2xx → ``succeeded``; 5xx (mailbox unknown, message refused, login
refused) → ``failed``, not retried -- it will be refused again; 4xx (greylisting, mailbox
busy, server short of space), timeouts, refused or dropped connections → ``retry``. A
server certificate that does not verify, or a server that does not offer STARTTLS, is a
configuration problem → ``failed`` with what to fix.

``timeout`` bounds the whole conversation: each socket operation has it as its timeout,
and when the attempt as a whole runs over, its socket is shut down so the thread ends at
once (a server that answers one byte at a time cannot hold a thread for long).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import smtplib
import socket
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from actions.executors.notify import NotifyExecutor, Phase, mask
from actions.targets import EmailTarget
from actions.templates import render
from actions.types import ActionPlan, ActionResult, ExecutorContext

Verdict = tuple[Literal["succeeded", "failed", "retry"], str, int | None]
DETAIL_CHARS = 200
SENDERS = 4  # SMTP conversations at once per target


class _Aborted(Exception):
    """The attempt ran over its deadline and was stopped."""


def smtp_verdict(exc: BaseException) -> Verdict:
    """What an exception from ``smtplib`` (or the socket under it) means for the action."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (0, b""))
        return _by_code(int(code), f"recipient refused: {_text(text)}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if exc.smtp_code >= 500:
            return ("failed", f"SMTP {exc.smtp_code}: login refused ({_text(exc.smtp_error)}); "
                    "check username and password", exc.smtp_code)
        return ("retry", f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, _text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ("failed", f"the server does not support it: {exc} (security starttls needs a "
                "server that offers STARTTLS; use tls for port 465)", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ("failed", f"server certificate not trusted: {exc.verify_message}; set "
                "tls.ca_file to the CA that signed it", None)
    if isinstance(exc, _Aborted | TimeoutError):
        return ("retry", f"timed out ({exc})" if str(exc) else "timed out", None)
    return ("retry", f"{type(exc).__name__}: {exc}", None)


def _by_code(code: int, text: str) -> Verdict:
    if 500 <= code < 600:
        return ("failed", f"SMTP {code} (not retried): {text}", code)
    return ("retry", f"SMTP {code}: {text}", code)


def _text(raw: bytes | str) -> str:
    out = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(out.split())[:DETAIL_CHARS]


def _one_line(text: str) -> str:
    """A value put into a header: no line breaks (no header injection)."""
    return " ".join(text.split())


def message_id(key: str, from_address: str) -> str:
    _, addr = email.utils.parseaddr(from_address)
    domain = addr.rpartition("@")[2] or "localhost"
    return f"<{key}@netreflex.{domain}>"


def build_message(target: EmailTarget, plan: ActionPlan, address: str,
                  variables: Mapping[str, object], phase: Phase, degraded: bool,
                  now: float) -> EmailMessage:
    if phase == "all_clear":
        subject, body = target.resolved_subject, target.resolved_body
    elif degraded:
        subject, body = target.degraded_subject, target.degraded_body or target.body
    else:
        subject, body = target.subject, target.body
    msg = EmailMessage()
    msg["From"] = target.from_address
    msg["To"] = address
    if target.reply_to:
        msg["Reply-To"] = target.reply_to
    msg["Subject"] = render(subject, variables, escape=_one_line)
    msg["Date"] = email.utils.formatdate(now, usegmt=True)
    msg["Message-ID"] = message_id(plan.key, target.from_address)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    msg["X-Netreflex-Incident"] = plan.incident_id
    msg.set_content(render(body, variables))
    return msg


class _Conversation:
    """One SMTP conversation in a worker thread, which the event loop can cut short: its
    socket is registered the moment it exists (``_Smtp._get_socket``), before the
    greeting is read, so ``abort`` can shut it down at any point of the conversation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None
        self._sock: socket.socket | None = None
        self.aborted = False

    def attach(self, smtp: smtplib.SMTP, sock: socket.socket) -> None:
        with self._lock:
            if self.aborted:
                sock.close()
                raise _Aborted("stopped before it started")
            self._smtp, self._sock = smtp, sock

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            # after STARTTLS the socket is the TLS one (the first is detached from its fd)
            sock = getattr(self._smtp, "sock", None) or self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Smtp(smtplib.SMTP):
    def __init__(self, conv: _Conversation, host: str, port: int, *, timeout: float) -> None:
        self._conv = conv
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # the hook smtplib's own SMTP_SSL and LMTP override (typeshed leaves it out)
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._conv.attach(self, sock)
        return sock


class _SmtpTls(smtplib.SMTP_SSL):
    def __init__(self, conv: _Conversation, host: str, port: int, *, timeout: float,
                 context: ssl.SSLContext) -> None:
        self._conv = conv
        super().__init__(host, port, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # the hook smtplib's own SMTP_SSL and LMTP override (typeshed leaves it out)
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._conv.attach(self, sock)
        return sock


class EmailExecutor(NotifyExecutor):
    kind = "email"
    contact = "email"
    consent = "consent_email"
    channel = "e-mail"

    def __init__(self, name: str, target: EmailTarget, *, state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        super().__init__(name, target, state_dir=state_dir, context=context)
        self.target = target
        self._pool: ThreadPoolExecutor | None = None
        self._tls: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            t = self.target.tls
            ctx = ssl.create_default_context(cafile=t.ca_file if t else None)
            if t is not None and t.cert_file:
                ctx.load_cert_chain(t.cert_file, t.key_file)
            if t is not None and t.insecure:
                ctx.check_hostname = False
            self._tls = ctx
        return self._tls

    async def send(self, plan: ActionPlan, address: str, variables: Mapping[str, object],
                   phase: Phase, degraded: bool) -> ActionResult:
        msg = build_message(self.target, plan, address, variables, phase, degraded,
                            self.context.clock())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=SENDERS,
                                            thread_name_prefix=f"smtp-{self.name}")
        conv = _Conversation()
        fut = asyncio.get_running_loop().run_in_executor(
            self._pool, self._deliver, msg, address, conv)
        timeout = self.target.timeout
        try:
            async with asyncio.timeout(timeout):
                outcome, detail, code = await asyncio.shield(fut)
        except TimeoutError:
            conv.abort()
            outcome, detail, code = "retry", f"timed out after {timeout:g}s", None
        except asyncio.CancelledError:
            conv.abort()
            raise
        what = "all-clear" if phase == "all_clear" else "outage message"
        if outcome == "succeeded":
            detail = f"{what} e-mailed to {plan.recipient} ({mask(address)}): {detail}"
        else:
            detail = f"{what} to {plan.recipient} ({mask(address)}): {detail}"
        return self._result(plan, outcome, detail, code)

    def _deliver(self, msg: EmailMessage, address: str, conv: _Conversation) -> Verdict:
        """The blocking part, in a worker thread; SMTP and network errors become verdicts."""
        t = self.target
        smtp: smtplib.SMTP | None = None
        try:
            if t.security == "tls":
                smtp = _SmtpTls(conv, t.host, t.effective_port, timeout=t.timeout,
                                context=self._tls_context())
            else:
                smtp = _Smtp(conv, t.host, t.effective_port, timeout=t.timeout)
            smtp.ehlo()
            if t.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if t.username is not None and t.password is not None:
                smtp.login(t.username, t.password.get_secret_value())
            _, sender = email.utils.parseaddr(t.from_address)
            smtp.send_message(msg, from_addr=sender, to_addrs=[address])
        except (smtplib.SMTPException, OSError, _Aborted) as exc:
            if smtp is not None:
                smtp.close()
            if conv.aborted:
                return ("retry", f"timed out after {t.timeout:g}s", None)
            return smtp_verdict(exc)
        try:  # accepted: a server that fumbles QUIT changes nothing
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
        return ("succeeded", "accepted by the SMTP server", 250)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
