"""The SQLite files under the state directory, opened the same way everywhere.

Incidents (``correlator.store``), the action journal, ticket ids and the credit ledger
(``actions``) each keep one file; they all open it here: autocommit (transactions are
explicit, ``BEGIN IMMEDIATE``), usable from the executor threads, WAL with
``synchronous=FULL`` (a row written is on disk: the exactly-once guarantees depend on
it), the schema created if missing, and a failure that says what to check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MEMORY = ":memory:"


def open_state_db(path: str, schema: str, *, what: str,
                  error: Callable[[str], Exception]) -> sqlite3.Connection:
    """Open (or create) ``path`` with ``schema``; ``what`` names it in the error
    (``error(message)``, raised from the SQLite error). ``:memory:`` stays in memory."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != MEMORY:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        raise error(f"cannot open {what} {path}: {exc}; check that the state directory "
                    "exists and is writable by the netreflex user") from exc
    return db
