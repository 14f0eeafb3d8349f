"""Incidents persisted in SQLite under the state directory; they survive a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from correlator.errors import StateStoreError
from correlator.incidents import Incident

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at REAL NOT NULL,
    resolved_at REAL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open_per_root
    ON incidents(root) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents(opened_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class IncidentStore:
    """A tiny synchronous store: writes are few (one per incident change) and small."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"cannot open incident store {self.path}: {exc}; check that the state "
                "directory exists and is writable by the netreflex user"
            ) from exc

    def next_id(self) -> str:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "INSERT INTO counters(name, value) VALUES('incident', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()
        return f"INC-{int(row[0]):06d}"

    def save(self, inc: Incident) -> None:
        try:
            self._db.execute(
                "INSERT INTO incidents(id, root, state, opened_at, resolved_at, data) "
                "VALUES(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                "resolved_at=excluded.resolved_at, data=excluded.data",
                (inc.id, inc.root, inc.state, inc.opened_at, inc.resolved_at, inc.to_json()),
            )
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot write incident {inc.id} to {self.path}: {exc}") from exc

    def open_incidents(self) -> list[Incident]:
        return self._query("SELECT data FROM incidents WHERE state='open' ORDER BY opened_at")

    def get(self, incident_id: str) -> Incident | None:
        rows = self._query("SELECT data FROM incidents WHERE id=?", (incident_id,))
        return rows[0] if rows else None

    def recent(self, limit: int = 100) -> list[Incident]:
        return self._query("SELECT data FROM incidents ORDER BY opened_at DESC LIMIT ?", (limit,))

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Incident]:
        import json

        return [Incident.from_dict(json.loads(r[0])) for r in self._db.execute(sql, args)]

    def close(self) -> None:
        self._db.close()
