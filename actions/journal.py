"""The durable action journal: every external effect is written here before it happens.

States: planned → running → succeeded | failed (| dry_run). A row is planned exactly once
per idempotency key (INSERT OR IGNORE), so re-deciding after a restart cannot duplicate
it. A row left ``running`` by a crash is retried with the *same* key, which receivers use
to drop the duplicate (the ``Idempotency-Key`` header of the webhook executor).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actions.errors import JournalError
from actions.types import ActionPlan

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    key TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    executor TEXT NOT NULL,
    state TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    status_code INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_due ON actions(state, next_at);
CREATE INDEX IF NOT EXISTS actions_incident ON actions(incident_id);
"""

ACTIVE = ("planned", "running")


@dataclass(frozen=True, slots=True)
class JournalRow:
    key: str
    incident_id: str
    event: str
    rule: str
    target: str
    executor: str
    state: str
    dry_run: bool
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    status_code: int | None

    def to_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(
                f"cannot open action journal {self.path}: {exc}; check that the state "
                "directory exists and is writable by the netreflex user"
            ) from exc

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise JournalError(f"action journal {self.path}: {exc}") from exc

    def plan(self, plans: list[ActionPlan], now: float) -> list[ActionPlan]:
        """Record plans; return only those not already in the journal (new decisions)."""
        fresh: list[ActionPlan] = []
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for p in plans:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO actions(key, incident_id, event, rule, target, "
                        "executor, state, dry_run, next_at, created_at, updated_at, payload) "
                        "VALUES(?,?,?,?,?,?,'planned',?,?,?,?,?)",
                        (p.key, p.incident_id, p.event, p.rule, p.target, p.executor,
                         int(p.dry_run), now, now, now, json.dumps(p.payload, sort_keys=True)),
                    )
                    if cur.rowcount:
                        fresh.append(p)
        except sqlite3.Error as exc:
            raise JournalError(f"action journal {self.path}: {exc}") from exc
        return fresh

    def due(self, now: float, limit: int = 64) -> list[ActionPlan]:
        rows = self._exec(
            "SELECT key, incident_id, event, rule, target, executor, payload, dry_run, attempts "
            "FROM actions WHERE state IN ('planned','running') AND next_at <= ? "
            "ORDER BY next_at LIMIT ?", (now, limit),
        ).fetchall()
        return [
            ActionPlan(key=r[0], incident_id=r[1], event=r[2], rule=r[3], target=r[4],
                       executor=r[5], payload=json.loads(r[6]), dry_run=bool(r[7]),
                       attempts=int(r[8]))
            for r in rows
        ]

    def next_due_at(self) -> float | None:
        row = self._exec(
            "SELECT MIN(next_at) FROM actions WHERE state IN ('planned','running')"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def start(self, key: str, now: float) -> None:
        """Mark running *before* the effect: a crash from here on means 'maybe sent'."""
        self._exec(
            "UPDATE actions SET state='running', attempts=attempts+1, updated_at=? WHERE key=?",
            (now, key),
        )

    def finish(self, key: str, state: str, now: float, *, error: str | None = None,
               status_code: int | None = None) -> None:
        self._exec(
            "UPDATE actions SET state=?, updated_at=?, last_error=?, status_code=? WHERE key=?",
            (state, now, error, status_code, key),
        )

    def retry_at(self, key: str, when: float, now: float, *, error: str,
                 status_code: int | None = None) -> None:
        self._exec(
            "UPDATE actions SET state='planned', next_at=?, updated_at=?, last_error=?, "
            "status_code=? WHERE key=?", (when, now, error, status_code, key),
        )

    def get(self, key: str) -> JournalRow | None:
        rows = self.rows("WHERE key=?", (key,))
        return rows[0] if rows else None

    def rows(
        self, where: str = "", args: tuple[object, ...] = (), limit: int = 500
    ) -> list[JournalRow]:
        cur = self._exec(
            "SELECT key, incident_id, event, rule, target, executor, state, dry_run, attempts, "
            f"next_at, created_at, updated_at, last_error, status_code FROM actions {where} "
            "ORDER BY created_at LIMIT ?", (*args, limit),
        )
        return [
            JournalRow(key=r[0], incident_id=r[1], event=r[2], rule=r[3], target=r[4],
                       executor=r[5], state=r[6], dry_run=bool(r[7]), attempts=r[8],
                       next_at=r[9], created_at=r[10], updated_at=r[11], last_error=r[12],
                       status_code=r[13])
            for r in cur.fetchall()
        ]

    def query(
        self, *, states: Sequence[str] = (), incident_id: str | None = None, limit: int = 100
    ) -> list[JournalRow]:
        """Rows in any of ``states`` (all when empty), of one incident if given, newest
        first: what a supervisor asks for."""
        where: list[str] = []
        args: list[object] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if incident_id is not None:
            where.append("incident_id=?")
            args.append(incident_id)
        cur = self._exec(
            "SELECT key, incident_id, event, rule, target, executor, state, dry_run, attempts, "
            "next_at, created_at, updated_at, last_error, status_code FROM actions "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY created_at DESC, key LIMIT ?", (*args, limit),
        )
        return [
            JournalRow(key=r[0], incident_id=r[1], event=r[2], rule=r[3], target=r[4],
                       executor=r[5], state=r[6], dry_run=bool(r[7]), attempts=r[8],
                       next_at=r[9], created_at=r[10], updated_at=r[11], last_error=r[12],
                       status_code=r[13])
            for r in cur.fetchall()
        ]

    def payload(self, key: str) -> dict[str, Any] | None:
        """The body planned for ``key``: the inputs (incident snapshot) of that decision."""
        row = self._exec("SELECT payload FROM actions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return data if isinstance(data, dict) else None

    def state_counts(self) -> dict[str, int]:
        """How many rows are in each state (states with none are left out)."""
        cur = self._exec("SELECT state, COUNT(*) FROM actions GROUP BY state ORDER BY state")
        return {str(r[0]): int(r[1]) for r in cur.fetchall()}

    def backlog(self) -> int:
        row = self._exec(
            "SELECT COUNT(*) FROM actions WHERE state IN ('planned','running')"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()
