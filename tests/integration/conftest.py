"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
async def rigs() -> AsyncIterator[list[Any]]:
    """The rigs (dispatcher, journal, executors on one state directory) a test builds;
    each is closed (``await rig.close()``) when the test ends, passed or not."""
    made: list[Any] = []
    yield made
    for r in made:
        await r.close()
