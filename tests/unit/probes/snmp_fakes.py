"""Recorded SNMP replies as gufo-snmp would yield them, and a fake gufo session.

``load_snmprec`` turns an snmpsim ``.snmprec`` file into ``{oid: value}`` with the Python
types gufo-snmp returns (checked against net-snmp in the integration tests): INTEGER,
Counter32/64, Gauge32 and TimeTicks are ``int``, OCTET STRING is ``bytes``, OBJECT
IDENTIFIER and IpAddress are ``str``, NULL is ``None``.
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from probes.snmp.parse import Row, Value

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "snmp"

_INT_TAGS = {"2", "65", "66", "67", "70"}


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.split("."))


def load_snmprec(name: str) -> dict[str, Value]:
    rows: dict[str, Value] = {}
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        oid, tag, text = line.split("|", 2)
        raw = binascii.unhexlify(text) if tag.endswith("x") else text.encode()
        tag = tag.removesuffix("x")
        value: Value
        if tag in _INT_TAGS:
            value = int(raw)
        elif tag == "4":
            value = raw
        elif tag in ("6", "64"):
            value = raw.decode()
        elif tag == "5":
            value = None
        else:
            raise ValueError(f"{name}: unsupported snmprec tag {tag} at {oid}")
        rows[oid] = value
    return dict(sorted(rows.items(), key=lambda kv: oid_key(kv[0])))


def column(rows: dict[str, Value], prefix: str) -> list[Row]:
    """What a GETBULK walk of ``prefix`` yields."""
    start = prefix + "."
    return [(oid, value) for oid, value in rows.items() if oid.startswith(start)]


def columns(rows: dict[str, Value], prefixes: Iterable[str]) -> dict[str, list[Row]]:
    return {p: column(rows, p) for p in prefixes}


class FakeAgent:
    """A device behind the fake sessions: rows to serve, failures to inject.

    ``fail[oid] = exc`` raises ``exc`` when a GET includes ``oid`` or a walk starts at
    it (``"refresh"`` for v3 discovery). ``hang`` (an OID, or ``"*"`` for any request)
    makes that request wait forever after setting ``in_flight``; with ``swallow_cancel``
    a cancellation then returns the reply instead, as ``asyncio.wait_for`` inside gufo
    does on Python 3.11 when the reply and the cancellation arrive together.
    """

    def __init__(self, rows: dict[str, Value]) -> None:
        self.rows = dict(rows)
        self.fail: dict[str, BaseException] = {}
        self.requests: list[str] = []
        self.sessions = 0
        self.refreshes = 0
        self.hang: str | None = None
        self.swallow_cancel = False
        self.in_flight = asyncio.Event()
        self.endless: str | None = None

    def set(self, oid: str, value: Value) -> None:
        self.rows[oid] = value
        self.rows = dict(sorted(self.rows.items(), key=lambda kv: oid_key(kv[0])))

    def delete(self, oid: str) -> None:
        self.rows.pop(oid, None)

    def connect(self) -> FakeSession:
        self.sessions += 1
        return FakeSession(self)

    async def _request(self, oids: Iterable[str]) -> None:
        oids = list(oids)
        for oid in oids:
            self.requests.append(oid)
            if oid in self.fail:
                raise self.fail[oid]
        if self.hang == "*" or self.hang in oids:
            self.in_flight.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not self.swallow_cancel:
                    raise


class FakeSession:
    """The three ``gufo.snmp.aio.SnmpSession`` methods the poller uses."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    async def get_many(self, oids: Iterable[str]) -> dict[str, Value]:
        wanted = list(oids)
        await self.agent._request(wanted)
        return {oid: self.agent.rows[oid] for oid in wanted if oid in self.agent.rows}

    def getbulk(self, oid: str, max_repetitions: int | None = None) -> AsyncIterator[Row]:
        return self._walk(oid)

    async def _walk(self, oid: str) -> AsyncIterator[Row]:
        await self.agent._request([oid])
        if oid == self.agent.endless:
            n = 0
            while True:
                n += 1
                yield f"{oid}.{n}", 1
        for row in column(self.agent.rows, oid):
            yield row

    async def refresh(self) -> None:
        self.agent.refreshes += 1
        await self.agent._request(["refresh"])
