"""The journal plans each decision once and keeps what was in flight across a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from actions.errors import ActionStateConflict
from actions.journal import Journal
from actions.types import ActionPlan, idempotency_key


def plan(incident: str = "INC-000001", event: str = "opened", target: str = "hook") -> ActionPlan:
    key = idempotency_key(incident, event, "rule", target)
    return ActionPlan(key=key, incident_id=incident, event=event, rule="rule", target=target,
                      executor="webhook", payload={"n": 1})


def test_same_decision_is_planned_once(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    assert len(j.plan([plan()], 1.0)) == 1
    assert j.plan([plan()], 2.0) == []
    assert len(Journal(tmp_path / "j.db").plan([plan()], 3.0)) == 0
    assert j.backlog() == 1


def test_keys_differ_by_event_and_target() -> None:
    keys = {plan().key, plan(event="resolved").key, plan(target="log").key,
            plan(incident="INC-000002").key}
    assert len(keys) == 4


def test_running_row_is_due_again_after_restart(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    p = plan()
    j.plan([p], 1.0)
    j.start(p.key, 2.0)
    j.close()  # the process dies here, mid-send
    again = Journal(tmp_path / "j.db")
    due = again.due(10.0)
    assert [d.key for d in due] == [p.key]
    assert due[0].attempts == 1
    assert due[0].payload == {"n": 1}


def test_finished_rows_are_not_due(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    p = plan()
    j.plan([p], 1.0)
    j.start(p.key, 2.0)
    j.finish(p.key, "succeeded", 3.0, status_code=200)
    assert j.due(100.0) == []
    row = j.get(p.key)
    assert row is not None and row.state == "succeeded" and row.status_code == 200


def test_retry_waits_until_its_time(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    p = plan()
    j.plan([p], 1.0)
    j.retry_at(p.key, 50.0, 2.0, error="HTTP 503")
    assert j.due(49.0) == []
    assert [d.key for d in j.due(50.0)] == [p.key]
    assert j.next_due_at() == 50.0


def test_not_before_is_the_first_due_time(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    held, now = replace(plan(), not_before=100.0), replace(plan(target="log"), not_before=5.0)
    j.plan([held, now], 10.0)
    assert [p.key for p in j.due(99.0)] == [now.key]  # a past not_before: due at once
    assert j.next_due_at() == 10.0
    assert {p.key for p in j.due(100.0)} == {held.key, now.key}


def test_postpone_is_not_an_attempt_and_only_from_running(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    p = plan()
    j.plan([p], 1.0)
    with pytest.raises(ActionStateConflict):
        j.postpone(p.key, 50.0, 2.0, reason="hold-down")  # nothing ran: not "not yet"
    j.start(p.key, 2.0)
    j.postpone(p.key, 50.0, 2.0, reason="hold-down")
    row = j.get(p.key)
    assert row is not None
    assert (row.state, row.attempts, row.next_at, row.last_error) == (
        "planned", 0, 50.0, "hold-down")
    assert j.due(49.0) == [] and [d.attempts for d in j.due(50.0)] == [0]
