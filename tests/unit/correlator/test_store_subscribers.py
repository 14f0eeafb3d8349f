"""An incident's subscriber list is stored on its own: written when it changes, not on
every save of the incident; read back with the incident whatever version wrote it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from correlator.incidents import Impact, Incident, TimelineEntry
from correlator.store import IncidentStore


def incident(subscribers: tuple[str, ...]) -> Incident:
    return Incident("INC-000001", "device:agg1", "device_down", "agg1", None, "aggregation",
                    "pop-north", "critical", "open", 100.0, 100.0,
                    impact=Impact(subscribers=subscribers,
                                  subscribers_by_tier={"residential": len(subscribers)}))


def test_the_list_is_written_when_it_changes_and_read_back_everywhere(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    subs = tuple(f"S-{i:06d}" for i in range(2_000))
    inc = incident(subs)
    changes = store._db.total_changes
    store.save(inc)
    assert store._db.total_changes - changes == 2  # the incident and its list
    later = replace(inc, updated_at=160.0, timeline=(TimelineEntry(160.0, "note"),))
    changes = store._db.total_changes
    store.save(later)
    assert store._db.total_changes - changes == 1  # the incident only
    assert store.get(inc.id) == later
    assert store.open_incidents() == [later]
    assert store.recent() == [later]
    assert store.query(states=("open",), device="agg1") == [later]

    smaller = replace(later, impact=replace(later.impact, subscribers=subs[:10]), revision=2)
    changes = store._db.total_changes
    store.save(smaller)
    assert store._db.total_changes - changes == 2
    assert store.get(inc.id) == smaller

    # another store on the same file (a restart) writes the list once more, then not
    store.close()
    store = IncidentStore(tmp_path / "incidents.db")
    assert store.open_incidents() == [smaller]
    changes = store._db.total_changes
    store.save(smaller)
    store.save(replace(smaller, updated_at=170.0))
    assert store._db.total_changes - changes == 3

    closed = replace(smaller, state="resolved", resolved_at=200.0, updated_at=200.0)
    store.save(closed)
    assert store.closed_since(150.0) == [closed] and store.open_incidents() == []
    assert store._written == {}
    store.close()


def test_incidents_written_with_their_list_inside_are_read(tmp_path: Path) -> None:
    """As versions before the separate list wrote them."""
    path = tmp_path / "incidents.db"
    IncidentStore(path).close()
    inc = incident(("S-1", "S-2"))
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO incidents(id, root, state, opened_at, resolved_at, data) "
                   "VALUES(?,?,?,?,?,?)", (inc.id, inc.root, inc.state, inc.opened_at,
                                           inc.resolved_at, inc.to_json()))
    store = IncidentStore(path)
    assert store.get(inc.id) == inc and store.open_incidents() == [inc]
    moved = replace(inc, updated_at=130.0)
    store.save(moved)  # from now on, with the list on its own
    assert store.get(inc.id) == moved
    (data,) = store._db.execute("SELECT data FROM incidents").fetchone()
    assert "S-1" not in data
    store.close()
