"""Syslog on the wire: RFC 5424, RFC 3164 as devices really send it, RFC 6587 framing.

No I/O here. :func:`parse_message` turns one message (a UDP datagram or one TCP frame)
into a :class:`SyslogMessage` or raises :class:`SyslogParseError` -- nothing else, for
any input (the unit tests fuzz it). :class:`TcpFramer` cuts a TCP byte stream into
messages.

RFC 3164 was written after the fact and devices never agreed on it. What is accepted
after ``<PRI>`` (each piece optional; see ``tests/fixtures/syslog/`` for real lines):

- Cisco sequence numbers: ``123: `` (and ``000045: `` with service sequence-numbers);
- a Cisco origin-id hostname ``R1: `` or an IOS-XR ``host NODE:`` prefix before the
  timestamp (``gw2 LC/0/2/CPU0:Jul  7 20:16:14.834 : ifmgr[214]: ...``);
- timestamps: BSD ``Mmm dd hh:mm:ss`` with Cisco's ``*`` (clock not set) or ``.`` (not
  synchronised) marker, milliseconds, year and zone (``*Mar  1 00:00:01.123:``,
  ``May 31 15:25:53.743 MEST:``, ``Jan 15 2024 10:00:00+08:00``), NX-OS
  ``2024 Jan 15 10:00:00``, and ISO 8601 (``2020-03-31T08:41:59+00:00``, Huawei's
  ``2018-7-23 01:00:34.270.1``);
- after a Cisco-style timestamp (ending in ``:``) the message follows; after a BSD one,
  ``HOSTNAME`` and then ``TAG[pid]:`` -- a missing hostname is recognised when the first
  word is already a tag (ends in ``:``);
- no timestamp at all: the rest is the message (RFC 3164 4.3.3).

The device's timestamp is kept as text: RFC 3164 stamps have no year or zone and device
clocks are often unset, so the receiver stamps Observations with the time of arrival.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from probes.errors import ProbeError

MAX_PRI: Final = 191  # facility 23 (local7) * 8 + severity 7


class SyslogParseError(ProbeError, ValueError):
    """The bytes are not a syslog message (no ``<PRI>``, or nothing after it)."""


class SyslogMessage(NamedTuple):
    """One message, header fields split out. ``None`` where the sender did not say.

    (A NamedTuple rather than a frozen dataclass: it is built for every message
    received, and a tuple is built several times faster.)
    """

    facility: int
    severity: int
    version: int  # 1 for RFC 5424, 0 for everything else
    timestamp: str | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None
    msg: str


# --- RFC 3164 and what devices make of it ---------------------------------------------

_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"\d\d:\d\d:\d\d(?:\.\d{1,9})*"
_OFFSET = r"(?:Z| ?[+-]\d\d:?\d\d(?: DST)?)?"  # Huawei: "+03:00 DST"
# Cisco sequence numbers ("123: ", "000045: "), then before the timestamp a Cisco
# origin-id ("R1: ") and/or an IOS-XR "[host ]NODE:". After the stamp: a zone name and
# ":" (Cisco style: the message follows), or a space (BSD: HOSTNAME and TAG follow).
_HEADER = re.compile(
    r"(?P<seq>(?:\d{0,10}: )+)?"
    r"(?P<pre>(?:[^\s:]{1,64}: )?(?:(?:[^\s:]{1,64} )?[A-Z0-9]{1,8}(?:/\w{1,8}){1,4}:)?)"
    rf"(?P<ts>[*.]?(?:{_MON} {{1,2}}\d{{1,2}}(?: \d{{4}})? {_TIME}"  # BSD, Cisco, Huawei
    rf"|\d{{4}} {_MON} {{1,2}}\d{{1,2}} {_TIME}"  # NX-OS
    rf"|\d{{4}}-\d{{1,2}}-\d{{1,2}}[T ]{_TIME}){_OFFSET})"  # ISO 8601, Huawei
    r"(?:(?P<zone> [A-Z][A-Za-z]{1,5})? ?(?P<colon>:)(?: |$)| +|$)",
    re.ASCII,
)
_SEQUENCE = re.compile(r"(?:\d{0,10}: )+", re.ASCII)
_TAG_RE = r"(?P<tag>[^\s\[\]:%]{1,64})(?:\[(?P<pid>[^\s\]]{0,32})\])?:(?: |$)"
_TAG = re.compile(_TAG_RE)
# After a BSD timestamp: "TAG[pid]: " (no hostname), or "HOSTNAME " and maybe a tag. A
# word starting with "%" is a Cisco/Huawei mnemonic: the message.
_HOST_TAG = re.compile(rf"(?:{_TAG_RE}|(?P<host>[^\s%]\S*) +(?:{_TAG_RE.replace('?P<', '?P<h')})?)")
_XR_NODE = re.compile(r"[A-Z0-9]{1,8}(?:/\w{1,8}){1,4}:$", re.ASCII)

Header = tuple[str | None, str | None, str | None, str | None, str]


def _header_3164(rest: str) -> Header:
    """(timestamp, hostname, tag, pid, msg) of everything after ``<PRI>``."""
    head = _HEADER.match(rest)
    if head is None:
        return _no_timestamp(rest)
    timestamp = head["ts"]
    if head["zone"]:
        timestamp += head["zone"]
    hostname = None
    pre = head["pre"]
    if pre:
        for word in pre.split():
            if not _XR_NODE.match(word):
                hostname = word.rstrip(":")
                break
    rest = rest[head.end():]
    if head["colon"]:  # Cisco style: the message (maybe with a tag) follows
        tag = _TAG.match(rest)
        if tag and tag["pid"] is not None:
            return timestamp, hostname, tag["tag"], tag["pid"] or None, rest[tag.end():]
        return timestamp, hostname, None, None, rest
    if hostname is not None:
        return timestamp, hostname, *_tag(rest)
    m = _HOST_TAG.match(rest)
    if m is None:
        return timestamp, None, None, None, rest
    if m["tag"] is not None:
        return timestamp, None, m["tag"], m["pid"] or None, rest[m.end():]
    if m["host"] is not None:
        return timestamp, m["host"], m["htag"], m["hpid"] or None, rest[m.end():]
    return timestamp, None, None, None, rest


def _no_timestamp(rest: str) -> Header:
    seq = _SEQUENCE.match(rest)
    if seq:  # Cisco without timestamps: "123: R1: %LINK-..." or "123: %LINK-..."
        rest = rest[seq.end():]
        word = _TAG.match(rest)
        if word and word["pid"] is None and rest[word.end():].startswith("%"):
            return None, word["tag"], None, None, rest[word.end():]
    return None, None, *_tag(rest)


def _tag(rest: str) -> tuple[str | None, str | None, str]:
    tag = _TAG.match(rest)
    if tag is None:
        return None, None, rest
    return tag["tag"], tag["pid"] or None, rest[tag.end():]


# --- RFC 5424 -------------------------------------------------------------------------

_SD = re.compile(
    r'(?:\[[^\s\]="]{1,32}(?: [^\s\]="]{1,32}="(?:[^"\\]|\\.)*")*\])+(?= |$)', re.DOTALL
)


def _parse_5424(rest: str) -> tuple[str | None, ...] | None:
    """(timestamp, hostname, app, procid, msgid, sd, msg), or None if not RFC 5424."""
    parts = rest.split(" ", 5)
    if len(parts) < 5:
        return None
    ts, host, app, procid, msgid = parts[:5]
    if not (ts == "-" or ts[:4].isdigit()):
        return None
    tail = parts[5] if len(parts) == 6 else ""
    sd: str | None = None
    if tail.startswith("["):
        m = _SD.match(tail)
        if m is None:
            return None
        sd, tail = m[0], tail[m.end() + 1:]
    elif tail == "-" or tail.startswith("- "):
        tail = tail[2:]
    else:
        return None
    if tail.startswith("\ufeff"):
        tail = tail[1:]
    return (*(None if f == "-" else f for f in (ts, host, app, procid, msgid)), sd, tail)


# --- the entry point ------------------------------------------------------------------


_PRI = re.compile(rb"<(\d{1,3})>")


def parse_message(data: bytes) -> SyslogMessage:
    """Parse one message. Raises SyslogParseError (only) when it is not syslog."""
    m = _PRI.match(data)
    if m is None:
        raise SyslogParseError("no <PRI> at the start")
    pri = int(m[1])
    if pri > MAX_PRI:
        raise SyslogParseError(f"PRI {pri} is out of range (0..{MAX_PRI})")
    rest = data[m.end():].decode("utf-8", "replace").rstrip("\r\n\x00 ")
    if rest.startswith("1 "):
        fields = _parse_5424(rest[2:])
        if fields is not None:
            ts, host, app, procid, msgid, sd, msg = fields
            if not msg and sd is None and msgid is None:
                raise SyslogParseError("RFC 5424 message with nothing in it")
            return SyslogMessage(pri >> 3, pri & 7, 1, ts, host, app, procid, msgid, sd,
                                 msg or "")
    if not rest.strip():
        raise SyslogParseError("nothing after <PRI>")
    ts, host, tag, pid, msg = _header_3164(rest)
    return SyslogMessage(pri >> 3, pri & 7, 0, ts, host, tag, pid, None, None, msg)


# --- RFC 6587 framing -----------------------------------------------------------------


class TcpFramer:
    """Cuts one TCP stream into messages: octet counting (``LEN SP MSG``) where a frame
    starts with a digit, LF-terminated otherwise (RFC 6587 3.4.1 / 3.4.2), per frame.

    Memory stays bounded: a frame longer than ``max_size`` is cut to ``max_size`` bytes
    (counted in ``truncated``) and the rest of it is skipped.
    """

    __slots__ = ("_buf", "_skip", "_skip_line", "max_size", "truncated")

    def __init__(self, *, max_size: int) -> None:
        self.max_size = max_size
        self.truncated = 0
        self._buf = bytearray()
        self._skip = 0  # octets of an over-long counted frame still to discard
        self._skip_line = False  # discarding the rest of an over-long LF frame

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            if self._skip_line:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    pos = n
                    break
                self._skip_line = False
                pos = nl + 1
                continue
            first = buf[pos]
            if 0x31 <= first <= 0x39:  # 1-9: maybe octet counting
                sp = buf.find(b" ", pos, pos + 11)
                if sp < 0 and n - pos < 11:
                    break  # wait for the rest of the length
                if sp > pos and buf[pos:sp].isdigit():
                    size = int(buf[pos:sp])
                    start = sp + 1
                    if size > self.max_size:
                        if n - start < self.max_size:
                            break
                        out.append(bytes(buf[start:start + self.max_size]))
                        self.truncated += 1
                        self._skip = size - self.max_size
                        pos = start + self.max_size
                        continue
                    if n - start < size:
                        break
                    out.append(bytes(buf[start:start + size]))
                    pos = start + size
                    continue
            if first in b"\n\r\x00 ":  # stray separators between frames
                pos += 1
                continue
            nl = buf.find(b"\n", pos, pos + self.max_size + 1)
            if nl < 0:
                if n - pos <= self.max_size:
                    break
                out.append(bytes(buf[pos:pos + self.max_size]))
                self.truncated += 1
                self._skip_line = True
                pos += self.max_size
                continue
            out.append(bytes(buf[pos:nl]))
            pos = nl + 1
        del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not complete yet (at most max_size + 11)."""
        return len(self._buf)

    def flush(self) -> list[bytes]:
        """At end of stream: what is left, if anything, as the last message."""
        rest = bytes(self._buf).strip(b"\r\n\x00 ")
        self._buf.clear()
        if self._skip or self._skip_line or not rest:
            return []
        return [rest[: self.max_size]]
