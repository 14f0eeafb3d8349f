"""Flap damping per element (a port or a device), after BGP route-flap dampening.

An element earns ``penalty`` points each time it goes down; the points decay
exponentially with ``half_life``. At ``suppress`` points the element is *suppressed*: the
engine turns it into one ``flapping`` incident and only counts its further changes. It is
released once it has been stable (no change) for ``stable_for`` seconds and its points
have decayed below ``reuse``. Points are capped at ``reuse x 2^(max_suppress/half_life)``
so that a release is never more than ``max_suppress`` seconds of stability away.

The transition count shown on a flapping incident covers the current episode: it starts
again once the points of an element that is not suppressed have decayed below ``reuse``.

Pure and clock-free: the caller passes the time. Only elements that changed state
recently are kept, so the work per observation is O(1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from correlator.config import DampingConfig


@dataclass(slots=True)
class ElementFlaps:
    penalty: float  # as of ``updated``
    updated: float
    transitions: int  # state changes in the current episode
    first: float  # time of the episode's first change
    last_change: float
    down: bool
    suppressed: bool = False

    @property
    def window(self) -> float:
        return self.last_change - self.first


class Damper:
    def __init__(self, cfg: DampingConfig) -> None:
        self.cfg = cfg
        self.elements: dict[str, ElementFlaps] = {}
        self.suppressed: set[str] = set()
        self.ceiling = cfg.reuse * 2.0 ** (cfg.max_suppress / cfg.half_life)

    def _decayed(self, st: ElementFlaps, now: float) -> float:
        elapsed = max(0.0, now - st.updated)
        return st.penalty * math.pow(0.5, elapsed / self.cfg.half_life)

    def penalty(self, key: str, now: float) -> float:
        st = self.elements.get(key)
        return 0.0 if st is None else self._decayed(st, now)

    def get(self, key: str) -> ElementFlaps | None:
        return self.elements.get(key)

    def record(self, key: str, now: float, *, down: bool) -> ElementFlaps:
        """Count one state change of ``key``; ``suppressed`` on the result says whether the
        element is flapping now (compare with ``key in self.suppressed`` before calling to
        tell a new suppression)."""
        st = self.elements.get(key)
        if st is None:
            st = self.elements[key] = ElementFlaps(0.0, now, 0, now, now, down)
        else:
            st.penalty = self._decayed(st, now)
            st.updated = now
            if not st.suppressed and st.penalty < self.cfg.reuse:
                st.transitions, st.first = 0, now  # a new episode
        st.transitions += 1
        st.last_change = now
        st.down = down
        if down:
            st.penalty = min(st.penalty + self.cfg.penalty, self.ceiling)
        if not st.suppressed and st.penalty >= self.cfg.suppress:
            st.suppressed = True
            self.suppressed.add(key)
        return st

    def restore(self, key: str, now: float, *, transitions: int, first: float,
                down: bool) -> None:
        """After a restart, a persisted flapping incident: suppressed again, at the
        ``suppress`` threshold, and it must be stable for ``stable_for`` from now."""
        self.elements[key] = ElementFlaps(self.cfg.suppress, now, transitions, first, now, down,
                                          suppressed=True)
        self.suppressed.add(key)

    def due(self, now: float) -> list[str]:
        """Suppressed elements that may be released now (sorted, for determinism)."""
        out = []
        for key in self.suppressed:
            st = self.elements[key]
            if now - st.last_change >= self.cfg.stable_for and \
                    self._decayed(st, now) < self.cfg.reuse:
                out.append(key)
        return sorted(out)

    def release(self, key: str, now: float) -> None:
        st = self.elements.get(key)
        self.suppressed.discard(key)
        if st is not None:
            st.penalty = self._decayed(st, now)
            st.updated = now
            st.suppressed = False
            st.transitions, st.first = 0, now

    def sweep(self, now: float) -> int:
        """Forget elements whose points have decayed to nothing; returns how many."""
        gone = [k for k, st in self.elements.items()
                if not st.suppressed and self._decayed(st, now) < 1.0]
        for k in gone:
            del self.elements[k]
        return len(gone)
