"""Policy → journal → webhook executor against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actions.dispatcher import Dispatcher, build_executors
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionResult
from correlator.incidents import Impact, Incident, IncidentEvent
from tests.support.receiver import WebhookReceiver

pytestmark = pytest.mark.integration


def event(kind: str = "opened", inc_id: str = "INC-000007") -> IncidentEvent:
    inc = Incident(
        id=inc_id, root="link:olt1:p1", kind="link_down", device="olt1", port="p1",
        role="access", site=None, severity="minor", state="open", opened_at=1.0, updated_at=1.0,
        impact=Impact(subscribers=("s1", "s2"), revenue_by_tier={"residential": 75.0},
                      subscribers_by_tier={"residential": 2}),
    )
    return IncidentEvent(kind, inc, 1.0)  # type: ignore[arg-type]


def make_policy(url: str, *, timeout: float = 2.0, max_attempts: int = 4) -> Policy:
    return Policy.model_validate({
        "targets": {"hook": {"kind": "webhook", "url": url, "token": "s3cret-token",
                             "timeout": timeout, "max_attempts": max_attempts,
                             "backoff_max": 0.05}},
        "rules": [{"name": "all", "do": [{"target": "hook"}]}],
    })


async def run_until(d: Dispatcher, done: object, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await d.drain(2)
        for ex in d.executors.values():
            await ex.aclose()


async def test_delivers_once_with_idempotency_key_and_bearer(tmp_path: Path) -> None:
    with WebhookReceiver() as rx:
        pol = make_policy(rx.url)
        j = Journal(tmp_path / "j.db")
        results: list[ActionResult] = []
        d = Dispatcher(pol, j, build_executors(pol), on_result=results.append)
        planned = d.submit(event())
        assert d.submit(event()) == []  # same decision again: not planned twice
        await run_until(d, lambda: results)
        got = rx.snapshot()
    assert len(got) == 1
    assert got[0].headers["Idempotency-Key"] == planned[0].key
    assert got[0].headers["Authorization"] == "Bearer s3cret-token"
    body = got[0].body
    assert body["event"] == "opened"
    assert body["incident"]["impact"]["subscribers"] == ["s1", "s2"]
    assert body["incident"]["impact"]["revenue_at_risk"] == 75.0
    row = j.get(planned[0].key)
    assert row is not None and row.state == "succeeded" and row.attempts == 1


async def test_5xx_is_retried_then_succeeds(tmp_path: Path) -> None:
    with WebhookReceiver(statuses=[503, 502]) as rx:
        pol = make_policy(rx.url)
        j = Journal(tmp_path / "j.db")
        results: list[ActionResult] = []
        d = Dispatcher(pol, j, build_executors(pol), on_result=results.append)
        planned = d.submit(event())
        await run_until(d, lambda: any(r.outcome == "succeeded" for r in results))
        got = rx.snapshot()
    assert [r.outcome for r in results] == ["retry", "retry", "succeeded"]
    assert len({g.headers["Idempotency-Key"] for g in got}) == 1 and len(got) == 3
    row = j.get(planned[0].key)
    assert row is not None and row.state == "succeeded" and row.attempts == 3


async def test_4xx_is_recorded_and_not_retried(tmp_path: Path) -> None:
    with WebhookReceiver(statuses=[422]) as rx:
        pol = make_policy(rx.url)
        j = Journal(tmp_path / "j.db")
        results: list[ActionResult] = []
        d = Dispatcher(pol, j, build_executors(pol), on_result=results.append)
        planned = d.submit(event())
        await run_until(d, lambda: results)
        await asyncio.sleep(0.2)
        got = rx.snapshot()
    assert len(got) == 1
    row = j.get(planned[0].key)
    assert row is not None and row.state == "failed" and "422" in (row.last_error or "")


async def test_hanging_receiver_times_out_and_gives_up_after_max_attempts(tmp_path: Path) -> None:
    with WebhookReceiver(delay=1.0) as rx:
        pol = make_policy(rx.url, timeout=0.2, max_attempts=2)
        j = Journal(tmp_path / "j.db")
        results: list[ActionResult] = []
        d = Dispatcher(pol, j, build_executors(pol), on_result=results.append)
        planned = d.submit(event())
        await run_until(d, lambda: len(results) >= 2)
    assert [r.outcome for r in results] == ["retry", "retry"]
    row = j.get(planned[0].key)
    assert row is not None and row.state == "failed" and "timed out" in (row.last_error or "")


async def test_unreachable_receiver_does_not_stall_other_targets(tmp_path: Path) -> None:
    with WebhookReceiver() as good, WebhookReceiver(delay=1.5) as slow:
        pol = Policy.model_validate({
            "targets": {
                "slow": {"kind": "webhook", "url": slow.url, "timeout": 1, "max_attempts": 1},
                "good": {"kind": "webhook", "url": good.url},
            },
            "rules": [{"name": "all", "do": [{"target": "slow"}, {"target": "good"}]}],
        })
        j = Journal(tmp_path / "j.db")
        d = Dispatcher(pol, j, build_executors(pol))
        planned = {p.target: p.key for p in d.submit(event())}
        slow_state_when_good_arrived: list[str] = []

        def good_arrived() -> bool:
            if good.snapshot():
                row = j.get(planned["slow"])
                slow_state_when_good_arrived.append(row.state if row else "?")
                return True
            return False

        await run_until(d, good_arrived, timeout=2.5)
    # the good target was served while the slow one was still hanging
    assert slow_state_when_good_arrived == ["running"]


async def test_each_update_is_its_own_action_but_a_replay_is_not(tmp_path: Path) -> None:
    from dataclasses import replace

    pol = Policy.model_validate({
        "targets": {"log": {"kind": "log"}},
        "rules": [{"name": "u", "when": {"events": ["updated"]}, "do": [{"target": "log"}]}],
    })
    d = Dispatcher(pol, Journal(tmp_path / "j.db"), build_executors(pol))
    first = event("updated")
    second = IncidentEvent("updated", replace(first.incident, revision=2), 2.0)
    assert len(d.submit(first)) == 1
    assert len(d.submit(second)) == 1
    assert d.submit(second) == []
