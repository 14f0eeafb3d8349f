"""Which external ticket belongs to which incident, kept next to the journal.

A ticket created on ``opened`` is PATCHed on ``updated`` and ``resolved``, possibly after
a restart: the id the ticketing system returned is written here (``tickets.db`` in the
state directory) before the action is reported as done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from actions.state_file import StateFile

log = logging.getLogger(__name__)

FILE_NAME = "tickets.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    target TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    href TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, incident_id)
);
"""


@dataclass(frozen=True, slots=True)
class TicketRef:
    ticket_id: str
    href: str | None
    status: str


class TicketStore(StateFile):
    """``(target, incident) -> ticket``; in memory when ``state_dir`` is None (tests, or a
    daemon that did not pass one: ids are then lost at restart)."""

    FILE_NAME = FILE_NAME  # the module constant: "tickets.db"
    SCHEMA = _SCHEMA
    WHAT = "ticket store"

    def get(self, target: str, incident_id: str) -> TicketRef | None:
        row = self._exec(
            "SELECT ticket_id, href, status FROM tickets WHERE target=? AND incident_id=?",
            (target, incident_id),
        ).fetchone()
        return None if row is None else TicketRef(row[0], row[1], row[2])

    def put(self, target: str, incident_id: str, ticket_id: str, href: str | None,
            status: str, now: float) -> None:
        self._exec(
            "INSERT INTO tickets(target, incident_id, ticket_id, href, status, created_at, "
            "updated_at) VALUES(?,?,?,?,?,?,?) ON CONFLICT(target, incident_id) DO UPDATE "
            "SET ticket_id=excluded.ticket_id, href=excluded.href, status=excluded.status, "
            "updated_at=excluded.updated_at",
            (target, incident_id, ticket_id, href, status, now, now),
        )

    def set_status(self, target: str, incident_id: str, status: str, now: float) -> None:
        self._exec("UPDATE tickets SET status=?, updated_at=? WHERE target=? AND incident_id=?",
                   (status, now, target, incident_id))

