"""Fault injection for the exactly-once tests. TEST ONLY: never set this in production.

``NETREFLEX_FAULT=POINT`` or ``NETREFLEX_FAULT=POINT:KEY`` makes the process die the way
``kill -9`` would (``os._exit(137)``: no cleanup, no flush, no journal update) the first
time an action -- or the action whose key starts with ``KEY`` -- reaches ``POINT``:

- ``before_submit`` (KEY: an incident id): the incident is saved with its new state; its
  event has not been decided on (nothing journaled for it yet)
- ``after_plan``: the action is journaled ``planned``; nothing has run yet
- ``after_hold``: it has just been put in ``waiting_approval``
- ``after_start``: it is journaled ``running``; the executor has not been called
- ``after_send``: the executor has returned (the effect happened); nothing recorded yet
- ``after_finish``: its outcome (``succeeded`` ...) is journaled

tests/e2e/test_exactly_once.py kills ``netreflex run`` at each point and checks that the
restarted daemon neither loses nor repeats the action.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from actions.errors import ActionError

ENV = "NETREFLEX_FAULT"
POINTS = ("before_submit", "after_plan", "after_hold", "after_start", "after_send", "after_finish")
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL


@dataclass(frozen=True, slots=True)
class FaultInjector:
    point: str | None = None
    key: str = ""

    @classmethod
    def parse(cls, spec: str | None) -> FaultInjector:
        if not spec:
            return cls()
        point, _, key = spec.partition(":")
        if point not in POINTS:
            raise ActionError(f"{ENV}={spec!r}: unknown fault point {point!r} (points: "
                              f"{', '.join(POINTS)}); it is for tests only, unset it")
        return cls(point, key)

    @classmethod
    def from_env(cls) -> FaultInjector:
        return cls.parse(os.environ.get(ENV))

    def __call__(self, point: str, key: str) -> None:
        if self.point == point and key.startswith(self.key):
            what = "incident" if point == "before_submit" else "action"
            os.write(2, f"netreflex: {ENV}={point} reached by {what} {key}: dying now "
                        f"(exit {EXIT_CODE}, like kill -9)\n".encode())
            os._exit(EXIT_CODE)
