"""After a crash between saving an incident and journaling its event, a restart decides
the missed event again -- and nothing that was already decided."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from actions.dispatcher import Dispatcher, missed
from actions.faults import FaultInjector
from actions.journal import Decided, Journal
from actions.policy import Policy
from correlator.incidents import Impact, Incident, IncidentEvent

T0 = 1_718_000_000.0
INC = Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
               port="p1", role="access", site="north", severity="minor", state="open",
               opened_at=T0, updated_at=T0,
               impact=Impact(subscribers=("S-1",), revenue_by_tier={"residential": 30.0},
                             subscribers_by_tier={"residential": 1}))
UPDATED = replace(INC, revision=2, updated_at=T0 + 60)
RESOLVED = replace(UPDATED, state="resolved", resolved_at=T0 + 120, updated_at=T0 + 120)


def names(events: list[IncidentEvent]) -> list[tuple[str, float]]:
    return [(e.type, e.ts) for e in events]


@pytest.mark.parametrize(
    ("inc", "last", "expected"),
    [
        (INC, None, [("opened", T0)]),
        (INC, Decided(INC.id, "opened", 1, T0), []),
        (UPDATED, Decided(INC.id, "opened", 1, T0), [("updated", T0 + 60)]),
        (UPDATED, Decided(INC.id, "updated", 2, T0 + 60), []),
        (RESOLVED, Decided(INC.id, "updated", 2, T0 + 60), [("resolved", T0 + 120)]),
        (RESOLVED, Decided(INC.id, "resolved", 2, T0 + 120), []),
        (RESOLVED, None, [("opened", T0), ("resolved", T0 + 120)]),
        (replace(RESOLVED, state="merged", merged_into="INC-000009"),
         Decided(INC.id, "opened", 1, T0), [("merged", T0 + 120)]),
    ],
)
def test_missed(inc: Incident, last: Decided | None, expected: list[tuple[str, float]]) -> None:
    assert names(missed(inc, last)) == expected


def test_nothing_opened_before_the_journal_kept_decisions() -> None:
    assert names(missed(UPDATED, None, since=T0 + 30)) == [("updated", T0 + 60)]


def make(path: Path) -> tuple[Dispatcher, Journal]:
    pol = Policy.model_validate({
        "targets": {"log": {"kind": "log"}},
        "rules": [{"name": "all", "when": {"events": ["opened", "updated", "resolved"]},
                   "do": [{"target": "log"}]}],
    })
    j = Journal(path)
    return Dispatcher(pol, j, {}, clock=lambda: T0 + 500, faults=FaultInjector()), j


def test_catch_up_plans_what_was_lost_once(tmp_path: Path) -> None:
    d, j = make(tmp_path / "j.db")
    d.submit(IncidentEvent("opened", INC, T0))
    assert j.decided(INC.id) == Decided(INC.id, "opened", 1, T0)
    # the process died after the update was saved, before it was submitted
    other = replace(INC, id="INC-000002", root="link:olt1:p2")  # never submitted at all
    got = d.catch_up([UPDATED, other])
    assert [(e.incident.id, e.type) for e in got] == [("INC-000001", "updated"),
                                                      ("INC-000002", "opened")]
    assert sorted((r.incident_id, r.event) for r in j.rows()) == [
        ("INC-000001", "opened"), ("INC-000001", "updated"), ("INC-000002", "opened")]
    assert j.decided(INC.id) == Decided(INC.id, "updated", 2, T0 + 60)
    assert d.catch_up([UPDATED, other]) == []  # a second restart finds nothing more
    assert len(j.rows()) == 3


def test_a_journal_from_before_decisions_were_kept_is_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    d, j = make(path)
    d.submit(IncidentEvent("opened", INC, T0))
    j.close()
    with sqlite3.connect(path) as db:  # as an older version left it
        db.execute("DROP TABLE decided")
        db.execute("DROP TABLE meta")
    d, j = make(path)
    assert j.decided_since() > T0  # from now on
    assert d.catch_up([UPDATED]) == []
    assert len(j.rows()) == 1
