"""The durable action journal: every external effect is written here before it happens.

States::

    planned ──▶ running ──▶ succeeded | failed | dry_run
       │  ▲        │
       │  └────────┘ retry (planned again, later) / deferred by a guardrail
       ├──▶ waiting_approval ──approve──▶ planned
       │          └──deny / expire──▶ blocked
       └──▶ blocked (a guardrail said no)

A row is planned exactly once per idempotency key (INSERT OR IGNORE), so re-deciding after
a restart cannot duplicate it. A row left ``running`` by a crash is retried with the *same*
key, which receivers use to drop the duplicate (the ``Idempotency-Key`` header of the
webhook executor). Every move is one UPDATE guarded by the states it may come from, so a
row never goes backwards (a finished action is never started again).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actions.errors import ActionNotFound, ActionStateConflict, JournalError
from actions.types import ActionPlan
from correlator.sqlite_util import open_state_db

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
-- the last incident event decided on, per incident: what a restart must decide again
CREATE TABLE IF NOT EXISTS decided (
    incident_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    revision INTEGER NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID;
"""

# columns added after the first release: (name, declaration); added to old journals at open
_ADDED = (
    ("recipient", "TEXT"),
    ("amount", "REAL"),
    ("inputs", "TEXT NOT NULL DEFAULT '{}'"),
    ("verdicts", "TEXT NOT NULL DEFAULT '[]'"),
    ("expires_at", "REAL"),
    ("approval", "TEXT"),
    ("started_at", "REAL"),
)

STATES = ("planned", "waiting_approval", "running", "succeeded", "failed", "blocked",
          "dry_run")
ACTIVE = ("planned", "running")  # what the dispatcher picks up when due
FINAL = ("succeeded", "failed", "blocked", "dry_run")

# to-state -> the states a row may move there from
MOVES: Mapping[str, tuple[str, ...]] = {
    "running": ("planned", "running"),  # running -> running: resumed after a crash
    "planned": ("planned", "running", "waiting_approval"),  # retry, defer, approve
    "waiting_approval": ("planned", "running"),
    "succeeded": ("running",),
    "failed": ("planned", "running"),
    "blocked": ("planned", "running", "waiting_approval"),
    "dry_run": ("planned", "running"),
}

_COLS = ("key, incident_id, event, rule, target, executor, state, dry_run, attempts, next_at, "
         "created_at, updated_at, last_error, status_code, recipient, amount, verdicts, "
         "expires_at, approval, started_at")


@dataclass(frozen=True, slots=True)
class Decided:
    """The last event of one incident that policy was asked about (``revision``: the
    incident's then), written with the actions it planned, in one transaction."""

    incident_id: str
    event: str
    revision: int
    ts: float


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
    recipient: str | None = None
    amount: float | None = None
    verdicts: tuple[Mapping[str, Any], ...] = ()
    expires_at: float | None = None
    approval: Mapping[str, Any] | None = None
    started_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["verdicts"] = [dict(v) for v in self.verdicts]
        out["approval"] = None if self.approval is None else dict(self.approval)
        return out


def _row(r: Sequence[Any]) -> JournalRow:
    return JournalRow(
        key=r[0], incident_id=r[1], event=r[2], rule=r[3], target=r[4], executor=r[5],
        state=r[6], dry_run=bool(r[7]), attempts=r[8], next_at=r[9], created_at=r[10],
        updated_at=r[11], last_error=r[12], status_code=r[13], recipient=r[14], amount=r[15],
        verdicts=tuple(json.loads(r[16] or "[]")), expires_at=r[17],
        approval=json.loads(r[18]) if r[18] else None, started_at=r[19],
    )


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_state_db(self.path, _SCHEMA, what="action journal", error=JournalError)
        try:
            have = {r[1] for r in self._db.execute("PRAGMA table_info(actions)")}
            for name, decl in _ADDED:
                if name not in have:
                    self._db.execute(f"ALTER TABLE actions ADD COLUMN {name} {decl}")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS actions_recipient ON actions(recipient, started_at)")
            # since when ``decided`` is kept: from the start in a new journal; from now in
            # one written by a version without it (it says nothing about earlier events)
            old = self._db.execute("SELECT COUNT(*) FROM decided").fetchone()[0] == 0 and \
                self._db.execute("SELECT COUNT(*) FROM actions").fetchone()[0] > 0
            self._db.execute(
                "INSERT OR IGNORE INTO meta(name, value) VALUES('decided_since', ?)",
                (time.time() if old else 0.0,))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot bring action journal {self.path} up to date: {exc}; "
                               "check that it is writable by the netreflex user") from exc

    def _exec(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise JournalError(f"action journal {self.path}: {exc}") from exc

    # --- planning and picking up -------------------------------------------------------

    def plan(self, plans: list[ActionPlan], now: float,
             decided: Decided | None = None) -> list[ActionPlan]:
        """Record plans; return only those not already in the journal (new decisions).
        ``decided``: the event they were decided on, recorded in the same transaction."""
        fresh: list[ActionPlan] = []
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if decided is not None:
                    self._db.execute(
                        "INSERT INTO decided(incident_id, event, revision, ts) VALUES(?,?,?,?) "
                        "ON CONFLICT(incident_id) DO UPDATE SET event=excluded.event, "
                        "revision=excluded.revision, ts=excluded.ts",
                        (decided.incident_id, decided.event, decided.revision, decided.ts))
                for p in plans:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO actions(key, incident_id, event, rule, target, "
                        "executor, state, dry_run, next_at, created_at, updated_at, payload, "
                        "recipient, amount, inputs) "
                        "VALUES(?,?,?,?,?,?,'planned',?,?,?,?,?,?,?,?)",
                        (p.key, p.incident_id, p.event, p.rule, p.target, p.executor,
                         int(p.dry_run), max(now, p.not_before or now), now, now,
                         _json(p.payload), p.recipient,
                         p.amount, _json(p.inputs)),
                    )
                    if cur.rowcount:
                        fresh.append(p)
        except sqlite3.Error as exc:
            raise JournalError(f"action journal {self.path}: {exc}") from exc
        return fresh

    def due(self, now: float, limit: int = 64) -> list[ActionPlan]:
        rows = self._exec(
            "SELECT key, incident_id, event, rule, target, executor, payload, dry_run, "
            "attempts, recipient, amount, inputs, approval FROM actions "
            "WHERE state IN ('planned','running') AND next_at <= ? ORDER BY next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        out = []
        for r in rows:
            approval = json.loads(r[12]) if r[12] else None
            out.append(ActionPlan(
                key=r[0], incident_id=r[1], event=r[2], rule=r[3], target=r[4], executor=r[5],
                payload=json.loads(r[6]), dry_run=bool(r[7]), attempts=int(r[8]),
                recipient=r[9], amount=r[10], inputs=json.loads(r[11] or "{}"),
                approved_by=approval["by"] if approval and approval.get("decision") ==
                "approved" else None,
            ))
        return out

    def next_due_at(self) -> float | None:
        """When something next needs the dispatcher: a planned action falls due, or an
        approval expires."""
        row = self._exec(
            "SELECT MIN(t) FROM (SELECT MIN(next_at) AS t FROM actions WHERE state IN "
            "('planned','running') UNION ALL SELECT MIN(expires_at) FROM actions WHERE "
            "state='waiting_approval')"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # --- moves -------------------------------------------------------------------------

    def _move(self, key: str, to: str, sets: str, args: Sequence[object],
              allowed: tuple[str, ...] | None = None) -> None:
        allowed = MOVES[to] if allowed is None else allowed
        cur = self._exec(
            f"UPDATE actions SET state=?, {sets} WHERE key=? AND state IN "
            f"({','.join('?' * len(allowed))})", (to, *args, key, *allowed),
        )
        if cur.rowcount:
            return
        row = self._exec("SELECT state FROM actions WHERE key=?", (key,)).fetchone()
        if row is None:
            raise ActionNotFound(key)
        raise ActionStateConflict(key, str(row[0]), to, allowed)

    def start(self, key: str, now: float,
              verdicts: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Mark running *before* the effect: a crash from here on means 'maybe sent'."""
        if verdicts is None:
            self._move(key, "running", "attempts=attempts+1, updated_at=?, "
                       "started_at=COALESCE(started_at, ?)", (now, now))
        else:
            self._move(key, "running", "attempts=attempts+1, updated_at=?, "
                       "started_at=COALESCE(started_at, ?), verdicts=?",
                       (now, now, _json(list(verdicts))))

    def finish(self, key: str, state: str, now: float, *, error: str | None = None,
               status_code: int | None = None,
               verdicts: Iterable[Mapping[str, Any]] | None = None) -> None:
        if state not in ("succeeded", "failed", "dry_run"):
            raise ValueError(f"finish: {state!r} is not succeeded, failed or dry_run")
        sets, args = "updated_at=?, last_error=?, status_code=?", [now, error, status_code]
        if verdicts is not None:
            sets += ", verdicts=?"
            args.append(_json(list(verdicts)))
        self._move(key, state, sets, args)

    def retry_at(self, key: str, when: float, now: float, *, error: str,
                 status_code: int | None = None) -> None:
        self._move(key, "planned", "next_at=?, updated_at=?, last_error=?, status_code=?",
                   (when, now, error, status_code), allowed=("planned", "running"))

    def postpone(self, key: str, until: float, now: float, *, reason: str) -> None:
        """The executor says not yet (a customer message waiting out its hold-down): try
        again at ``until``. It was not an attempt, so it does not count as one."""
        self._move(key, "planned", "next_at=?, updated_at=?, last_error=?, "
                   "attempts=MAX(attempts-1, 0)", (until, now, reason),
                   allowed=("running",))

    def defer(self, key: str, until: float, now: float,
              verdicts: Iterable[Mapping[str, Any]]) -> None:
        """A guardrail says not yet (quiet hours, a rate limit, an open circuit): try again
        at ``until``. The action keeps its place in the journal."""
        self._move(key, "planned", "next_at=?, updated_at=?, verdicts=?",
                   (until, now, _json(list(verdicts))), allowed=("planned", "running"))

    def hold(self, key: str, expires_at: float, now: float,
             verdicts: Iterable[Mapping[str, Any]]) -> None:
        """A person must approve it first; unanswered by ``expires_at`` it is blocked."""
        self._move(key, "waiting_approval", "expires_at=?, updated_at=?, verdicts=?",
                   (expires_at, now, _json(list(verdicts))))

    def block(self, key: str, now: float, reason: str,
              verdicts: Iterable[Mapping[str, Any]] | None = None) -> None:
        if verdicts is None:
            self._move(key, "blocked", "updated_at=?, last_error=?", (now, reason))
        else:
            self._move(key, "blocked", "updated_at=?, last_error=?, verdicts=?",
                       (now, reason, _json(list(verdicts))))

    def approve(self, key: str, *, by: str, reason: str | None, now: float) -> JournalRow:
        """waiting_approval → planned (due now). Raises ActionNotFound or
        ActionStateConflict (it was not waiting)."""
        record = {"decision": "approved", "by": by, "at": now, "reason": reason}
        self._move(key, "planned", "next_at=?, updated_at=?, approval=?, expires_at=NULL",
                   (now, now, _json(record)), allowed=("waiting_approval",))
        return self._must(key)

    def deny(self, key: str, *, by: str, reason: str, now: float) -> JournalRow:
        """waiting_approval → blocked, with who said no and why."""
        record = {"decision": "denied", "by": by, "at": now, "reason": reason}
        self._move(key, "blocked", "updated_at=?, approval=?, last_error=?",
                   (now, _json(record), f"denied by {by}: {reason}"),
                   allowed=("waiting_approval",))
        return self._must(key)

    def expire(self, now: float) -> list[JournalRow]:
        """Approvals nobody gave in time: waiting_approval → blocked. Returns those rows."""
        keys = [str(r[0]) for r in self._exec(
            "SELECT key FROM actions WHERE state='waiting_approval' AND expires_at <= ?",
            (now,)).fetchall()]
        out = []
        for key in keys:
            waited = now - self._must(key).updated_at
            record = {"decision": "expired", "by": None, "at": now, "reason": None}
            self._move(key, "blocked", "updated_at=?, approval=?, last_error=?",
                       (now, _json(record), "approval expired: nobody approved or denied it "
                        f"within {waited:.0f}s"), allowed=("waiting_approval",))
            out.append(self._must(key))
        return out

    # --- reading -----------------------------------------------------------------------

    def _must(self, key: str) -> JournalRow:
        row = self.get(key)
        if row is None:
            raise ActionNotFound(key)
        return row

    def messages_since(self, recipient: str, executors: Sequence[str], since: float,
                       exclude: str) -> int:
        """Actions of ``executors`` kinds for ``recipient`` started since ``since`` (not a
        dry run) that reached or may have reached the subscriber -- succeeded, running, or
        waiting to be retried --, other than ``exclude``: for per-subscriber caps. A message
        its executor refused (a flap inside the hold-down, a second copy) or that failed
        for good was not received and does not count."""
        if not executors:
            return 0
        row = self._exec(
            "SELECT COUNT(*) FROM actions WHERE recipient=? AND started_at >= ? AND key != ? "
            "AND dry_run=0 AND (state IN ('succeeded', 'running') "
            "OR (state='planned' AND attempts > 0)) "
            f"AND executor IN ({','.join('?' * len(executors))})",
            (recipient, since, exclude, *executors),
        ).fetchone()
        return int(row[0])

    def decided(self, incident_id: str) -> Decided | None:
        """The last event of ``incident_id`` that was decided on, or None."""
        row = self._exec("SELECT incident_id, event, revision, ts FROM decided "
                         "WHERE incident_id=?", (incident_id,)).fetchone()
        return None if row is None else Decided(str(row[0]), str(row[1]), int(row[2]),
                                                float(row[3]))

    def decided_since(self) -> float:
        """Since when (Unix time) decided events are recorded in this journal."""
        row = self._exec("SELECT value FROM meta WHERE name='decided_since'").fetchone()
        return float(row[0])

    def last_decided_at(self) -> float | None:
        """The time of the latest event decided on, or None."""
        row = self._exec("SELECT MAX(ts) FROM decided").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get(self, key: str) -> JournalRow | None:
        rows = self.rows("WHERE key=?", (key,))
        return rows[0] if rows else None

    def rows(
        self, where: str = "", args: tuple[object, ...] = (), limit: int = 500
    ) -> list[JournalRow]:
        cur = self._exec(f"SELECT {_COLS} FROM actions {where} ORDER BY created_at LIMIT ?",
                         (*args, limit))
        return [_row(r) for r in cur.fetchall()]

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
            f"SELECT {_COLS} FROM actions {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY created_at DESC, key LIMIT ?", (*args, limit),
        )
        return [_row(r) for r in cur.fetchall()]

    def payload(self, key: str) -> dict[str, Any] | None:
        """The body planned for ``key``: the inputs (incident snapshot) of that decision."""
        row = self._exec("SELECT payload FROM actions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return data if isinstance(data, dict) else None

    def inputs(self, key: str) -> dict[str, Any] | None:
        """What the guardrails judged ``key`` on (incident facts at decision time)."""
        row = self._exec("SELECT inputs FROM actions WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0] or "{}")
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
