"""The SLA credit ledger: one row per (outage, contract), next to the journal.

``credits.db`` in the state directory. A row is written (``requested``) *before* the
credit request leaves, and completed (``accepted`` / ``rejected``) after the billing
system answers, so whatever happens in between -- a second policy rule asking for the
same credit, a retry, kill -9 -- the row says what was asked for and the primary key
``(outage, contract)`` says it once. The outage is the incident id; the contract is the
subscriber id (a subscriber is one contract in the inventory).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from actions.state_file import StateFile

FILE_NAME = "credits.db"
CreditState = Literal["requested", "accepted", "rejected"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credits (
    outage TEXT NOT NULL,
    contract TEXT NOT NULL,
    account TEXT NOT NULL,
    target TEXT NOT NULL,
    action_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    month TEXT NOT NULL,
    minutes REAL NOT NULL,
    percent REAL NOT NULL,
    amount REAL NOT NULL,
    cap_percent REAL NOT NULL,
    currency TEXT NOT NULL,
    schedule_version TEXT NOT NULL,
    approver TEXT,
    state TEXT NOT NULL CHECK (state IN ('requested', 'accepted', 'rejected')),
    billing_id TEXT,
    detail TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (outage, contract)
);
CREATE INDEX IF NOT EXISTS credits_by_month ON credits (contract, month);
"""

_COLUMNS = ("outage, contract, account, target, action_key, request_id, month, minutes, "
            "percent, amount, cap_percent, currency, schedule_version, approver, state, "
            "billing_id, detail, created_at, updated_at")


def month_of(ts: float) -> str:
    """The calendar month (UTC) a credit counts against: ``2026-11``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class CreditRow:
    outage: str
    contract: str
    account: str
    target: str
    action_key: str
    request_id: str
    month: str
    minutes: float
    percent: float
    amount: float
    cap_percent: float
    currency: str
    schedule_version: str
    approver: str | None
    state: CreditState
    billing_id: str | None = None
    detail: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class CreditLedger(StateFile):
    """``(outage, contract) -> credit``; in memory when ``state_dir`` is None (tests)."""

    FILE_NAME = FILE_NAME  # the module constant: "credits.db"
    SCHEMA = _SCHEMA
    WHAT = "credit ledger"

    def get(self, outage: str, contract: str) -> CreditRow | None:
        row = self._exec(f"SELECT {_COLUMNS} FROM credits WHERE outage=? AND contract=?",
                         (outage, contract)).fetchone()
        return None if row is None else CreditRow(*row)

    def claim(self, row: CreditRow) -> CreditRow:
        """Write ``row`` (state ``requested``) unless the (outage, contract) has a row
        already; return the row that is there now -- ``row`` itself when this call wrote
        it, the earlier one otherwise."""
        self._exec(
            f"INSERT INTO credits({_COLUMNS}) VALUES({','.join('?' * 19)}) "
            "ON CONFLICT(outage, contract) DO NOTHING",
            (row.outage, row.contract, row.account, row.target, row.action_key,
             row.request_id, row.month, row.minutes, row.percent, row.amount, row.cap_percent,
             row.currency, row.schedule_version, row.approver, "requested", None, None,
             row.created_at, row.created_at),
        )
        now = self.get(row.outage, row.contract)
        assert now is not None
        return now

    def complete(self, outage: str, contract: str, state: CreditState, now: float, *,
                 billing_id: str | None = None, detail: str | None = None) -> None:
        """A ``requested`` row becomes ``accepted`` or ``rejected`` (never backwards)."""
        self._exec(
            "UPDATE credits SET state=?, billing_id=?, detail=?, updated_at=? "
            "WHERE outage=? AND contract=? AND state='requested'",
            (state, billing_id, detail, now, outage, contract),
        )

    def set_approver(self, outage: str, contract: str, approver: str, now: float) -> None:
        self._exec("UPDATE credits SET approver=?, updated_at=? WHERE outage=? AND "
                   "contract=? AND approver IS NULL", (approver, now, outage, contract))

    def credited_in_month(self, contract: str, month: str, *, besides: str) -> float:
        """What ``contract`` has been credited (or asked to be) in ``month``, leaving the
        outage ``besides`` out; rejected credits do not count."""
        row = self._exec(
            "SELECT COALESCE(SUM(amount), 0) FROM credits WHERE contract=? AND month=? "
            "AND outage<>? AND state<>'rejected'", (contract, month, besides),
        ).fetchone()
        return float(row[0])

    def rows(self, *, outage: str | None = None) -> list[CreditRow]:
        sql, args = f"SELECT {_COLUMNS} FROM credits", tuple[str, ...]()
        if outage is not None:
            sql, args = sql + " WHERE outage=?", (outage,)
        return [CreditRow(*r) for r in
                self._exec(sql + " ORDER BY created_at, outage, contract", args).fetchall()]

