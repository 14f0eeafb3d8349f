"""Polling one device's interface table over SNMP (gufo-snmp), v2c or v3 USM.

The I/O is here; what the replies mean is in :mod:`probes.snmp.parse`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Final, Protocol

from gufo.snmp import (
    Aes128Key,
    Aes192Key,
    Aes256Key,
    BaseAuthKey,
    BasePrivKey,
    DesKey,
    Md5Key,
    NoSuchInstance,
    Sha1Key,
    Sha224Key,
    Sha256Key,
    Sha384Key,
    Sha512Key,
    SnmpAuthError,
    SnmpDecodeError,
    SnmpError,
    User,
)
from gufo.snmp.aio import SnmpSession

from probes.errors import ProbeConfigError
from probes.snmp import parse
from probes.snmp.config import SnmpV2c, SnmpV3
from probes.types import PollResult

if TYPE_CHECKING:
    from probes.types import Poller

_AUTH_KEYS: Final[dict[str, type[BaseAuthKey]]] = {
    "MD5": Md5Key,
    "SHA": Sha1Key,
    "SHA224": Sha224Key,
    "SHA256": Sha256Key,
    "SHA384": Sha384Key,
    "SHA512": Sha512Key,
}
_PRIV_KEYS: Final[dict[str, type[BasePrivKey]]] = {
    "DES": DesKey,
    "AES": Aes128Key,
    "AES192": Aes192Key,
    "AES256": Aes256Key,
}

# USM agents accept a message whose engine time is within 150 s of theirs; gufo does not
# advance the time it learnt, so a session idle for longer re-synchronises first.
_V3_RESYNC_AFTER: Final = 120.0
# A walk that yields more rows than this is an agent going round in circles.
_MAX_ROWS: Final = 100_000


class _Session(Protocol):
    """The part of ``gufo.snmp.aio.SnmpSession`` the poller uses (tests fake it)."""

    async def get_many(self, oids: Iterable[str]) -> dict[str, parse.Value]: ...

    def getbulk(
        self, oid: str, max_repetitions: int | None = None
    ) -> AsyncIterator[tuple[str, parse.Value]]: ...

    async def refresh(self) -> None: ...


class SnmpPoller:
    """Polls one device's interfaces; reports what changed since its last good poll.

    One gufo session (one UDP socket) per device, opened on the first poll, reused, and
    re-opened after a timeout, a socket error or a v3 authentication failure (the agent
    may have restarted with a new engine ID). Columns are walked one after the other:
    a gufo session carries one request at a time.

    ``timeout`` is per request; the caller bounds the whole poll (``asyncio.timeout``),
    and may cancel it at any await: the state only changes when a poll completes. One
    poll at a time per poller (a second concurrent call is a RuntimeError).
    """

    def __init__(
        self,
        *,
        device: str,
        address: str,
        port: int,
        credentials: SnmpV2c | SnmpV3,
        timeout: float,
        max_repetitions: int = 50,
    ) -> None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ProbeConfigError(
                f"{device}: SNMP address {address!r} is not an IP address "
                "(gufo-snmp does not resolve names; put the IP in the inventory)",
                device=device,
                operation="snmp poll",
            ) from None
        if timeout <= 0 or not 1 <= max_repetitions <= 1000:
            raise ProbeConfigError(
                f"{device}: SNMP timeout must be > 0 and max_repetitions 1..1000 "
                f"(got {timeout}, {max_repetitions})",
                device=device,
                operation="snmp poll",
            )
        self.device = device
        self._address = address
        self._port = port
        self._timeout = timeout
        self._max_repetitions = max_repetitions
        self._credentials = credentials
        self._user: User | None = None
        self._engine_id: bytes | None = None
        if isinstance(credentials, SnmpV3):
            self._user = _user(credentials, device)
            self._engine_id = engine_id(credentials, device)
        self._session: _Session | None = None
        self._last_exchange = 0.0  # time.monotonic() of the last answered request
        self._state: parse.DeviceState | None = None
        self._sys_name: str | None = None
        self._received = 0
        self._doing = ""
        self._task: asyncio.Task[object] | None = None
        self._cancels = 0
        self._busy = False
        self.name_reads = 0
        """How many polls read the descriptive columns (ifName, ifDescr, ifAlias, speed)."""

    @property
    def sys_name(self) -> str | None:
        """sysName.0 as read on the first successful poll, if the agent has it."""
        return self._sys_name

    async def aclose(self) -> None:
        """Drop the session (its socket closes with it). A later poll opens a new one."""
        self._session = None

    async def poll(self) -> PollResult:
        if self._busy:
            raise RuntimeError(f"{self.device}: poll() is already running (one at a time)")
        self._busy = True
        try:
            return await self._guarded_poll()
        finally:
            self._busy = False

    async def _guarded_poll(self) -> PollResult:
        ts = time.time()
        self._received = 0
        self._doing = "open session"
        self._task = asyncio.current_task()
        self._cancels = 0 if self._task is None else self._task.cancelling()
        try:
            return await self._poll(ts)
        except TimeoutError:
            self._session = None
            return self._failed(ts, "timeout", f"no answer in {self._timeout:g} s", False)
        except SnmpAuthError:
            self._session = None
            return self._failed(ts, "auth", _AUTH_REJECTED, True)
        except NoSuchInstance:
            return self._failed(ts, "no_such_object", "the agent has no such object", True)
        except SnmpDecodeError as exc:
            return self._failed(ts, "decode", f"undecodable reply: {exc}", True)
        except SnmpError as exc:  # an error-status from the agent, or our request
            return self._failed(ts, "decode", f"SNMP error: {exc}", True)
        except parse.ReplyError as exc:
            return self._failed(ts, exc.reason, exc.detail, True)
        except OSError as exc:
            self._session = None
            return self._failed(ts, "socket", f"socket error: {exc}", False)

    async def _poll(self, ts: float) -> PollResult:
        session = await self._open()
        prev = self._state
        want = [parse.SYS_UPTIME, parse.IF_TABLE_LAST_CHANGE]
        if prev is None:
            want.append(parse.SYS_NAME)
        self._doing = "GET sysUpTime.0, ifTableLastChange.0"
        reply = await session.get_many(want)
        self._answered(len(reply))
        scalars = parse.parse_scalars(reply)
        status = parse.parse_status(
            await self._walk(session, parse.STATUS_COLUMNS),
            None if prev is None else prev.status.layout,
        )
        names = None
        if parse.names_due(prev, scalars, status) is not None:
            names = parse.parse_names(
                await self._walk(session, parse.NAME_COLUMNS), status.layout
            )
        state, observations, counters = parse.update(
            prev, scalars, status, names, device=self.device, ts=ts
        )
        # Everything read and understood: only now does the state move on.
        self._state = state
        if names is not None:
            self.name_reads += 1
        if scalars.sys_name is not None:
            self._sys_name = scalars.sys_name
        observations.insert(0, parse.reachable(self.device, ts, answered=True, reason="ok"))
        return PollResult(
            device=self.device,
            ts=ts,
            observations=observations,
            counters=counters,
            varbinds=self._received,
        )

    async def _walk(
        self, session: _Session, columns: Iterable[str]
    ) -> dict[str, list[tuple[str, parse.Value]]]:
        out: dict[str, list[tuple[str, parse.Value]]] = {}
        cancelling = None if self._task is None else self._task.cancelling
        cancels = self._cancels
        for column in columns:
            self._doing = f"GETBULK {column} ({parse.COLUMN_NAMES[column]})"
            rows: list[tuple[str, parse.Value]] = []
            append = rows.append
            async for row in session.getbulk(column, self._max_repetitions):
                append(row)
                if cancelling is not None and cancelling() > cancels:
                    raise asyncio.CancelledError  # swallowed by gufo: see _checkpoint
                if len(rows) > _MAX_ROWS:
                    raise parse.ReplyError(
                        "decode", f"walk of {column} did not end after {_MAX_ROWS} rows"
                    )
            self._answered(len(rows))
            out[column] = rows
        return out

    async def _open(self) -> _Session:
        session = self._session
        if session is None:
            session = self._connect()
            if self._user is not None:
                self._doing = "SNMPv3 engine discovery"
                await session.refresh()
                self._answered(0)
            self._session = session
        elif self._user is not None and time.monotonic() - self._last_exchange > _V3_RESYNC_AFTER:
            self._doing = "SNMPv3 time synchronisation"
            await session.refresh()
            self._answered(0)
        return session

    def _connect(self) -> _Session:
        if self._user is None:
            assert isinstance(self._credentials, SnmpV2c)
            return SnmpSession(
                self._address,
                self._port,
                community=self._credentials.community.get_secret_value(),
                timeout=self._timeout,
                max_repetitions=self._max_repetitions,
            )
        return SnmpSession(
            self._address,
            self._port,
            user=self._user,
            engine_id=self._engine_id,
            timeout=self._timeout,
            max_repetitions=self._max_repetitions,
        )

    def _answered(self, varbinds: int) -> None:
        self._received += varbinds
        self._last_exchange = time.monotonic()
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Re-raise a cancellation that gufo-snmp swallowed.

        gufo waits for replies with ``asyncio.wait_for``, which on Python 3.11 returns the
        reply and drops the CancelledError when both arrive in the same loop iteration
        (measured: a quarter of polls under a tight ``asyncio.timeout``). The task still
        counts the request (``Task.cancelling()``), so honour it here, after every reply.
        """
        if self._task is not None and self._task.cancelling() > self._cancels:
            raise asyncio.CancelledError

    def _failed(self, ts: float, error: str, detail: str, answered: bool) -> PollResult:
        where = f" ({self._doing})" if self._doing else ""
        return PollResult(
            device=self.device,
            ts=ts,
            error=error,
            detail=f"{self._address}:{self._port}: {detail}{where}",
            observations=[parse.reachable(self.device, ts, answered=answered, reason=error)],
            varbinds=self._received,
        )


_AUTH_REJECTED: Final = (
    "the agent rejected our credentials (SNMPv3: check the user name, auth protocol and "
    "auth key; a wrong priv key shows as a timeout)"
)


def _user(cred: SnmpV3, device: str) -> User:
    auth = _AUTH_KEYS[cred.auth_protocol](cred.auth_key.get_secret_value().encode())
    priv: BasePrivKey | None = None
    if cred.priv_key is not None:
        if cred.priv_protocol is None:
            raise ProbeConfigError(
                f"{device}: SNMPv3 priv_key is set but priv_protocol is null; "
                "set priv_protocol (e.g. AES) or remove priv_key",
                device=device,
                operation="snmp poll",
            )
        priv = _PRIV_KEYS[cred.priv_protocol](cred.priv_key.get_secret_value().encode())
    return User(cred.user, auth_key=auth, priv_key=priv)


def engine_id(cred: SnmpV3, device: str) -> bytes | None:
    """The configured SNMPv3 authoritative engine id as bytes (None: discover it);
    a value that is not hex is a ProbeConfigError naming the device."""
    if cred.engine_id is None:
        return None
    text = cred.engine_id.removeprefix("0x").removeprefix("0X")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ProbeConfigError(
            f"{device}: SNMPv3 engine_id must be hex, like 80001f8804... "
            f"(got {cred.engine_id!r})",
            device=device,
            operation="snmp poll",
        ) from None


if TYPE_CHECKING:

    def _is_a_poller(poller: SnmpPoller) -> Poller:
        return poller
