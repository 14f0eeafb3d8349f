"""One small SQLite file of an executor's in the state directory.

The ticket ids (``tickets.db``), the credit ledger (``credits.db``) and the remediation
record (``remediation.db``) each keep what must survive a restart in a file of their own,
opened the way every state file is (``correlator.sqlite_util.open_state_db``); in memory
when there is no state directory (tests). A SQLite failure is a ``JournalError`` that
names the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from actions.errors import JournalError
from correlator.sqlite_util import MEMORY, open_state_db


class StateFile:
    FILE_NAME = ""  # e.g. "credits.db"
    SCHEMA = ""
    WHAT = ""  # how errors name it, e.g. "credit ledger"

    def __init__(self, state_dir: Path | None) -> None:
        self.path = MEMORY if state_dir is None else str(Path(state_dir) / self.FILE_NAME)
        self._db = open_state_db(self.path, self.SCHEMA, what=self.WHAT, error=JournalError)

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.WHAT} {self.path}: {exc}") from exc
