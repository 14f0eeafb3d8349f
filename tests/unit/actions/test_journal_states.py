"""The journal's state machine: every allowed move, refused moves, approvals, expiry, the
recipient in the key, and journals written by the previous release."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from actions.errors import ActionNotFound, ActionStateConflict
from actions.journal import FINAL, MOVES, STATES, Journal
from actions.types import ActionPlan, idempotency_key


def plan(n: int = 1, recipient: str | None = None) -> ActionPlan:
    key = idempotency_key(f"INC-{n:06d}", "opened", "rule", "hook", recipient)
    return ActionPlan(key=key, incident_id=f"INC-{n:06d}", event="opened", rule="rule",
                      target="hook", executor="webhook", payload={"n": n},
                      recipient=recipient, inputs={"role": "core"})


@pytest.fixture
def j(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.db")


def state(j: Journal, key: str) -> str:
    row = j.get(key)
    assert row is not None
    return row.state


# how to put a fresh row into each state, and each move by name
def into(j: Journal, key: str, target: str) -> None:
    if target == "planned":
        return
    if target == "waiting_approval":
        j.hold(key, 100.0, 2.0, [])
    elif target == "blocked":
        j.block(key, 2.0, "no")
    else:
        j.start(key, 2.0)
        if target != "running":
            j.finish(key, target, 3.0)


MOVE: dict[str, Callable[[Journal, str], None]] = {
    "running": lambda j, k: j.start(k, 5.0),
    "planned": lambda j, k: j.defer(k, 50.0, 5.0, []),
    "waiting_approval": lambda j, k: j.hold(k, 99.0, 5.0, []),
    "succeeded": lambda j, k: j.finish(k, "succeeded", 5.0),
    "failed": lambda j, k: j.finish(k, "failed", 5.0, error="x"),
    "blocked": lambda j, k: j.block(k, 5.0, "no"),
    "dry_run": lambda j, k: j.finish(k, "dry_run", 5.0),
}


@pytest.mark.parametrize("src", STATES)
@pytest.mark.parametrize("dst", STATES)
def test_every_move_is_allowed_or_refused_as_the_table_says(j: Journal, src: str,
                                                             dst: str) -> None:
    p = plan()
    j.plan([p], 1.0)
    into(j, p.key, src)
    assert state(j, p.key) == src
    ok = src in MOVES[dst]
    if dst == "planned" and src == "waiting_approval":
        ok = False  # only approve() leaves waiting_approval for planned (defer does not)
    if ok:
        MOVE[dst](j, p.key)
        assert state(j, p.key) == dst
    else:
        with pytest.raises(ActionStateConflict) as err:
            MOVE[dst](j, p.key)
        assert err.value.state == src and state(j, p.key) == src


def test_final_states_never_move_again(j: Journal) -> None:
    for dst, sources in MOVES.items():
        assert not set(sources) & set(FINAL), dst


def test_unknown_keys_are_not_found(j: Journal) -> None:
    with pytest.raises(ActionNotFound):
        j.start("nrx-nope", 1.0)
    with pytest.raises(ActionNotFound):
        j.approve("nrx-nope", by="a", reason=None, now=1.0)


def test_waiting_rows_are_not_due_until_approved(j: Journal) -> None:
    p = plan()
    j.plan([p], 1.0)
    j.hold(p.key, 500.0, 2.0, [{"guardrail": "approval", "outcome": "waiting",
                                "reason": "rule rule requires approval", "until": 500.0}])
    assert j.due(1000.0) == []
    assert j.next_due_at() == 500.0  # the expiry wakes the dispatcher
    row = j.approve(p.key, by="alice", reason="looks right", now=10.0)
    assert row.state == "planned" and row.expires_at is None
    assert row.approval == {"decision": "approved", "by": "alice", "at": 10.0,
                            "reason": "looks right"}
    (due,) = j.due(10.0)
    assert due.approved_by == "alice" and due.inputs == {"role": "core"}
    assert row.verdicts[0]["guardrail"] == "approval"  # what it waited for stays visible
    with pytest.raises(ActionStateConflict):
        j.approve(p.key, by="alice", reason=None, now=11.0)


def test_deny_blocks_with_who_and_why(j: Journal) -> None:
    p = plan()
    j.plan([p], 1.0)
    j.hold(p.key, 500.0, 2.0, [])
    row = j.deny(p.key, by="bob", reason="core change freeze", now=3.0)
    assert row.state == "blocked"
    assert row.last_error == "denied by bob: core change freeze"
    assert row.approval is not None and row.approval["decision"] == "denied"
    with pytest.raises(ActionStateConflict):
        j.deny(p.key, by="bob", reason="again", now=4.0)


def test_unanswered_approvals_expire_into_blocked(j: Journal) -> None:
    a, b = plan(1), plan(2)
    j.plan([a, b], 1.0)
    j.hold(a.key, 100.0, 10.0, [])
    j.hold(b.key, 200.0, 10.0, [])
    assert j.expire(99.0) == []
    (row,) = j.expire(100.0)
    assert row.key == a.key and row.state == "blocked"
    assert row.last_error == "approval expired: nobody approved or denied it within 90s"
    assert row.approval is not None and row.approval["decision"] == "expired"
    assert state(j, b.key) == "waiting_approval"


def test_start_counts_attempts_and_keeps_the_first_start(j: Journal) -> None:
    p = plan()
    j.plan([p], 1.0)
    j.start(p.key, 2.0, [{"guardrail": "approval", "outcome": "allowed", "reason": "-",
                          "until": None}])
    j.retry_at(p.key, 9.0, 3.0, error="HTTP 503")
    j.start(p.key, 9.0)
    row = j.get(p.key)
    assert row is not None and row.attempts == 2 and row.started_at == 2.0
    assert row.verdicts[0]["outcome"] == "allowed"


def test_recipient_is_part_of_the_key_and_kept(j: Journal) -> None:
    # the key without a recipient is what it always was: journals from before still match
    assert idempotency_key("INC-000001", "opened", "r", "t") == \
        "nrx-" + __import__("hashlib").sha256(b"INC-000001\x1fopened\x1fr\x1ft").hexdigest()[:32]
    a, b, c = plan(1, "S-1"), plan(1, "S-2"), plan(1)
    assert len({a.key, b.key, c.key}) == 3
    assert len(j.plan([a, b, c, plan(1, "S-1")], 1.0)) == 3
    assert {d.recipient for d in j.due(1.0)} == {"S-1", "S-2", None}


def test_messages_since_counts_started_real_actions_per_recipient(j: Journal) -> None:
    ps = [plan(n, "S-1") for n in range(3)]
    j.plan(ps, 1.0)
    j.start(ps[0].key, 10.0)
    j.start(ps[1].key, 20.0)
    assert j.messages_since("S-1", ["webhook"], 0.0, exclude="x") == 2
    assert j.messages_since("S-1", ["webhook"], 15.0, exclude="x") == 1
    assert j.messages_since("S-1", ["webhook"], 0.0, exclude=ps[0].key) == 1
    assert j.messages_since("S-1", ["log"], 0.0, exclude="x") == 0
    assert j.messages_since("S-2", ["webhook"], 0.0, exclude="x") == 0


def test_messages_refused_or_failed_for_good_do_not_count_against_the_cap(j: Journal) -> None:
    ps = [plan(n, "S-1") for n in range(5)]
    j.plan(ps, 1.0)
    for p in ps:
        j.start(p.key, 10.0)
    j.block(ps[0].key, 11.0, "resolved within the hold-down: no message for a flap")
    j.finish(ps[1].key, "failed", 11.0, error="550 mailbox unknown")
    j.finish(ps[2].key, "succeeded", 11.0)
    j.retry_at(ps[3].key, 30.0, 11.0, error="451 try later")  # may have reached them
    # ps[4] is still running: it may be reaching them right now
    assert j.messages_since("S-1", ["webhook"], 0.0, exclude="x") == 3
    j.postpone(ps[4].key, 40.0, 12.0, reason="hold-down")  # a 'wait': not an attempt
    assert j.messages_since("S-1", ["webhook"], 0.0, exclude="x") == 2


def test_a_journal_from_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE actions (key TEXT PRIMARY KEY, incident_id TEXT NOT NULL,
              event TEXT NOT NULL, rule TEXT NOT NULL, target TEXT NOT NULL,
              executor TEXT NOT NULL, state TEXT NOT NULL, dry_run INTEGER NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
              created_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT,
              status_code INTEGER, payload TEXT NOT NULL);
            INSERT INTO actions VALUES ('nrx-old', 'INC-000001', 'opened', 'r', 'hook',
              'webhook', 'running', 0, 1, 5.0, 1.0, 2.0, NULL, NULL, '{"a": 1}');
        """)
    j = Journal(path)
    (due,) = j.due(10.0)
    assert due.key == "nrx-old" and due.inputs == {} and due.recipient is None
    row = j.get("nrx-old")
    assert row is not None and row.verdicts == () and row.approval is None
    j.finish("nrx-old", "succeeded", 11.0)
    assert state(j, "nrx-old") == "succeeded"
