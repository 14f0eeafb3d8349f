"""What the state watch (``correlator.conditions.StateWatch``: BGP sessions, ONTs) knows,
kept across a restart in ``watch.db`` beside ``incidents.db``.

Two small tables: the (device, observation name) pairs whose first report (the baseline)
was taken, and the elements known to be down -- since when, and whether that is news (it
went down while watched: its incident opens after the hold-down) or not (down already
at the baseline, or while nobody was told). Written in one transaction per flush (about
once a second, from the correlator's tick), only what changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from correlator.errors import StateStoreError
from correlator.sqlite_util import MEMORY, open_state_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watched (
    device TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (device, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS down (
    root TEXT PRIMARY KEY,
    since REAL NOT NULL,
    news INTEGER NOT NULL
) WITHOUT ROWID;
"""

Down = tuple[float, bool]  # since, news


def watch_path(incidents_path: str) -> str:
    """``watch.db`` in the directory of the incident store (in memory with it)."""
    if incidents_path == MEMORY:
        return MEMORY
    return str(Path(incidents_path).with_name("watch.db"))


class WatchStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = open_state_db(path, _SCHEMA, what="state watch store",
                                 error=StateStoreError)

    def load(self) -> tuple[set[tuple[str, str]], dict[str, Down]]:
        try:
            watched = {(d, n) for d, n in self._db.execute("SELECT device, name FROM watched")}
            down = {r: (float(s), bool(n))
                    for r, s, n in self._db.execute("SELECT root, since, news FROM down")}
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read {self.path}: {exc}") from exc
        return watched, down

    def save(self, watched: Iterable[tuple[str, str]], down: Mapping[str, Down | None],
             unwatched: Iterable[str] = ()) -> None:
        """Add ``watched`` pairs, set (or with None delete) ``down`` rows, and drop every
        row of the ``unwatched`` devices."""
        db = self._db
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR IGNORE INTO watched(device, name) VALUES(?, ?)",
                               list(watched))
                db.executemany("DELETE FROM down WHERE root=?",
                               [(r,) for r, v in down.items() if v is None])
                db.executemany("INSERT OR REPLACE INTO down(root, since, news) VALUES(?,?,?)",
                               [(r, v[0], int(v[1])) for r, v in down.items() if v is not None])
                for dev in unwatched:
                    db.execute("DELETE FROM watched WHERE device=?", (dev,))
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot write to {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


__all__ = ["WatchStore", "watch_path"]
