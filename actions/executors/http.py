"""What every HTTP executor shares: one session, one timeout per request, and the rule
for what an answer means.

2xx → ``succeeded``; 429, 5xx, timeouts and connection errors → ``retry`` (with the
server's ``Retry-After`` when it gives one); any other status → ``failed``, not retried
(the request is wrong and will stay wrong). Redirects are not followed: a POST turned
into a GET loses its body, so a 3xx means the configured URL is wrong.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from actions.types import ActionPlan, ActionResult

USER_AGENT = "netreflex/0.1"
MAX_BODY = 1 << 20  # answers are read up to this many bytes
DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome: ``body`` is the parsed JSON answer of a 2xx (or None)."""

    outcome: Literal["succeeded", "failed", "retry"]
    detail: str
    status: int | None = None
    body: Any = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "succeeded"

    def result(self, plan: ActionPlan, target: str, kind: str,
               detail: str | None = None) -> ActionResult:
        return ActionResult(plan.key, target, kind, self.outcome,
                            self.detail if detail is None else detail, self.status,
                            self.retry_after)


def classify(status: int, text: str = "", retry_after: float | None = None,
             body: Any = None) -> Answer:
    if 200 <= status < 300:
        return Answer("succeeded", f"HTTP {status}", status, body)
    snippet = text[:DETAIL_CHARS]
    if status == 429 or status >= 500:
        return Answer("retry", f"HTTP {status}: {snippet}", status, retry_after=retry_after)
    return Answer("failed", f"HTTP {status} (not retried): {snippet}", status)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


class HttpClient:
    """One aiohttp session per executor, created on first use (inside the running loop)."""

    def __init__(self, *, timeout: float, user_agent: str = USER_AGENT) -> None:
        self.timeout = timeout
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": self.user_agent},
            )
        return self._session

    async def send(self, method: str, url: str, body: Any = None, *,
                   headers: Mapping[str, str] | None = None,
                   content_type: str = "application/json") -> Answer:
        """Send ``body`` as JSON; never raises for network trouble, only classifies it."""
        hdrs = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, sort_keys=True).encode()
            hdrs.setdefault("Content-Type", content_type)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().request(method, url, data=data, headers=hdrs,
                                                  allow_redirects=False) as resp:
                    status = resp.status
                    raw = await _read_capped(resp)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            return Answer("retry", f"timed out after {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return Answer("retry", f"{type(exc).__name__}: {exc}")
        text = raw.decode("utf-8", errors="replace")
        parsed: Any = None
        if 200 <= status < 300 and raw:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        return classify(status, text, retry_after, parsed)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    out = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        out += chunk
        if len(out) >= MAX_BODY:
            break
    return bytes(out[:MAX_BODY])


def bearer(token: Any) -> dict[str, str]:
    """``Authorization: Bearer`` from an optional SecretStr."""
    return {} if token is None else {"Authorization": "Bearer " + token.get_secret_value()}
