"""What an HTTP answer means for an action: shared by every HTTP executor."""

from __future__ import annotations

import datetime as dt

import pytest

from actions.executors.http import classify, parse_retry_after


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "succeeded"), (201, "succeeded"), (202, "succeeded"), (204, "succeeded"),
    (400, "failed"), (401, "failed"), (404, "failed"), (409, "failed"), (422, "failed"),
    (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
    (301, "failed"),  # a redirect aiohttp did not follow (a POST): the URL is wrong
])
def test_status_classification(status: int, outcome: str) -> None:
    assert classify(status, "x" * 500).outcome == outcome


def test_details_are_short_and_say_not_retried() -> None:
    a = classify(422, "y" * 1000)
    assert a.detail.startswith("HTTP 422 (not retried): ") and len(a.detail) < 250


def test_retry_after_seconds_and_http_date() -> None:
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert classify(429, "", retry_after=7.0).retry_after == 7.0
