"""Incidents persisted in SQLite under the state directory; they survive a restart."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from correlator.errors import StateStoreError
from correlator.incidents import Incident
from correlator.sqlite_util import open_state_db

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
-- which incidents hit which subscriber, and when (churn risk rises with repeats)
CREATE TABLE IF NOT EXISTS subscriber_hits (
    subscriber TEXT NOT NULL,
    incident TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (subscriber, incident)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriber_hits_incident ON subscriber_hits(incident);
CREATE INDEX IF NOT EXISTS subscriber_hits_ts ON subscriber_hits(ts);
-- an incident's subscriber list as a JSON array: incidents.data leaves it out (from this
-- version on), so that a large outage's list is written when it changes, not on every save
CREATE TABLE IF NOT EXISTS incident_subscribers (
    incident TEXT PRIMARY KEY,
    ids TEXT NOT NULL
);
-- ad-hoc silences (maintenance created at run time); data is the silence as JSON
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    expired_at REAL,
    data TEXT NOT NULL
);
"""

class IncidentStore:
    """A tiny synchronous store: writes are few (one per incident change) and small."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_state_db(self.path, _SCHEMA, what="incident store",
                                 error=StateStoreError)
        # open incident id -> the subscriber list last written for it by this store
        self._written: dict[str, tuple[str, ...]] = {}

    def next_id(self) -> str:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "INSERT INTO counters(name, value) VALUES('incident', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()
        return f"INC-{int(row[0]):06d}"

    def save(self, inc: Incident) -> None:
        """Write an incident (its subscriber list only if this store has not written that
        list for it already), in one transaction."""
        data = inc.to_dict()
        subscribers = inc.impact.subscribers
        del data["impact"]["subscribers"]
        written = self._written.get(inc.id)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if written is None or (written is not subscribers and written != subscribers):
                    self._db.execute(
                        "INSERT INTO incident_subscribers(incident, ids) VALUES(?,?) "
                        "ON CONFLICT(incident) DO UPDATE SET ids=excluded.ids",
                        (inc.id, json.dumps(list(subscribers))),
                    )
                self._db.execute(
                    "INSERT INTO incidents(id, root, state, opened_at, resolved_at, data) "
                    "VALUES(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                    "resolved_at=excluded.resolved_at, data=excluded.data",
                    (inc.id, inc.root, inc.state, inc.opened_at, inc.resolved_at,
                     json.dumps(data, sort_keys=True)),
                )
        except sqlite3.Error as exc:
            self._written.pop(inc.id, None)
            raise StateStoreError(f"cannot write incident {inc.id} to {self.path}: {exc}") from exc
        if inc.state == "open":
            self._written[inc.id] = subscribers
        else:
            self._written.pop(inc.id, None)

    def open_incidents(self) -> list[Incident]:
        return self._query("SELECT data, ids FROM incidents LEFT JOIN incident_subscribers "
                           "ON incident = id WHERE state='open' ORDER BY opened_at")

    def get(self, incident_id: str) -> Incident | None:
        rows = self._query("SELECT data, ids FROM incidents LEFT JOIN incident_subscribers "
                           "ON incident = id WHERE id=?", (incident_id,))
        return rows[0] if rows else None

    def closed_since(self, since: float) -> list[Incident]:
        """Incidents that ended (resolved or merged) at or after ``since``, oldest first."""
        return self._query("SELECT data, ids FROM incidents LEFT JOIN incident_subscribers "
                           "ON incident = id WHERE state != 'open' AND resolved_at >= ? "
                           "ORDER BY resolved_at", (since,))

    def recent(self, limit: int = 100) -> list[Incident]:
        return self._query("SELECT data, ids FROM incidents LEFT JOIN incident_subscribers "
                           "ON incident = id ORDER BY opened_at DESC LIMIT ?", (limit,))

    def query(
        self,
        *,
        states: Sequence[str] = (),
        severity: str | None = None,
        device: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Incidents in any of ``states`` (all when empty) matching the other filters that
        are given, most recently opened first."""
        where: list[str] = []
        args: list[object] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        for name, value in (("severity", severity), ("device", device), ("kind", kind)):
            if value is not None:
                where.append(f"json_extract(data, '$.{name}') = ?")
                args.append(value)
        sql = "SELECT data, ids FROM incidents LEFT JOIN incident_subscribers ON incident = id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        return self._query(sql, (*args, limit))

    def count_by_state(self) -> dict[str, int]:
        """How many incidents are in each state (states with none are left out)."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM incidents GROUP BY state")
        return {str(r[0]): int(r[1]) for r in rows}

    # --- subscriber incident history (churn) --------------------------------------------

    def record_hits(self, incident_id: str, subscribers: Sequence[str], ts: float) -> None:
        """Note that ``incident_id`` hit ``subscribers`` (once per pair; repeats are no-ops)."""
        if not subscribers:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                # one statement over a JSON array: SQLite loops, not Python (an outage can
                # hit a hundred thousand subscribers)
                self._db.execute(
                    "INSERT OR IGNORE INTO subscriber_hits(subscriber, incident, ts) "
                    "SELECT value, ?, ? FROM json_each(?)",
                    (incident_id, ts, json.dumps(list(subscribers))),
                )
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"cannot record subscribers of incident {incident_id} in {self.path}: {exc}"
            ) from exc

    def hit_counts(
        self, subscribers: Sequence[str], *, since: float, exclude: Sequence[str] = ()
    ) -> dict[str, int]:
        """How many incidents (not in ``exclude``) hit each of ``subscribers`` at or after
        ``since``; subscribers with none are left out."""
        if not subscribers:
            return {}
        skip = f" AND incident NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        try:
            rows = self._db.execute(
                "SELECT subscriber, COUNT(*) FROM subscriber_hits WHERE subscriber IN "
                f"(SELECT value FROM json_each(?)) AND ts >= ?{skip} GROUP BY subscriber",
                (json.dumps(list(subscribers)), since, *exclude),
            )
            return {str(r[0]): int(r[1]) for r in rows}
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read subscriber history in {self.path}: {exc}") from exc

    def incidents_hitting(self, subscriber: str, *, since: float) -> list[str]:
        """Ids of the incidents that hit ``subscriber`` at or after ``since``, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT incident FROM subscriber_hits WHERE subscriber=? AND ts >= ? "
                "ORDER BY ts, incident", (subscriber, since))
            return [str(r[0]) for r in rows]
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot read subscriber history in {self.path}: {exc}") from exc

    def forget_hits(self, incident_id: str) -> None:
        """Drop an incident's hits (it was merged: its subscribers count once, with the
        incident it merged into)."""
        try:
            self._db.execute("DELETE FROM subscriber_hits WHERE incident=?", (incident_id,))
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"cannot update subscriber history in {self.path}: {exc}"
            ) from exc

    def prune_hits(self, before: float) -> int:
        """Forget hits older than ``before``; returns how many."""
        try:
            cur = self._db.execute("DELETE FROM subscriber_hits WHERE ts < ?", (before,))
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot prune subscriber history in {self.path}: {exc}") from exc
        return cur.rowcount

    # --- silences ------------------------------------------------------------------------

    def next_silence_id(self) -> str:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "INSERT INTO counters(name, value) VALUES('silence', 1) "
                "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
            ).fetchone()
        return f"SIL-{int(row[0]):06d}"

    def save_silence(
        self, silence_id: str, *, expires_at: float, expired_at: float | None, data: str
    ) -> None:
        try:
            self._db.execute(
                "INSERT INTO silences(id, expires_at, expired_at, data) VALUES(?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET expires_at=excluded.expires_at, "
                "expired_at=excluded.expired_at, data=excluded.data",
                (silence_id, expires_at, expired_at, data),
            )
        except sqlite3.Error as exc:
            raise StateStoreError(
                f"cannot write silence {silence_id} to {self.path}: {exc}"
            ) from exc

    def load_silences(self, *, include_expired: bool = False, limit: int = 1000) -> list[str]:
        """Silences as JSON, most recently expiring first; only those not yet marked
        expired unless ``include_expired``."""
        where = "" if include_expired else " WHERE expired_at IS NULL"
        rows = self._db.execute(
            f"SELECT data FROM silences{where} ORDER BY expires_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [str(r[0]) for r in rows]

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[Incident]:
        """Incidents from rows of (data, ids): the subscriber list is in ``ids``, or in
        ``data`` as older versions wrote it."""
        out = []
        for data, ids in self._db.execute(sql, args):
            d = json.loads(data)
            if ids is not None and "subscribers" not in d.get("impact", {}):
                d.setdefault("impact", {})["subscribers"] = json.loads(ids)
            out.append(Incident.from_dict(d))
        return out

    def close(self) -> None:
        self._db.close()
