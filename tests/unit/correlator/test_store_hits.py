"""The subscriber incident history in the store: many subscribers at once, odd ids."""

from __future__ import annotations

from pathlib import Path

from correlator.store import IncidentStore


def test_hits_of_many_subscribers_are_recorded_once_and_counted(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.db")
    many = [f"S-{i:06d}" for i in range(3_000)]
    odd = ['quo"te', "back\\slash", "ünï cödé", "tab\there", "[1,2]", "new\nline"]
    store.record_hits("INC-1", many + odd, 100.0)
    store.record_hits("INC-1", many[:10], 150.0)  # again: no-ops
    store.record_hits("INC-2", many[::2], 200.0)
    store.record_hits("INC-3", many[::3] + odd[:2], 300.0)
    store.record_hits("INC-4", [], 400.0)

    asked = many + odd + ["nobody", many[0]]  # an unknown id, one asked twice
    got = store.hit_counts(asked, since=0.0)
    want = {s: 1 + (i % 2 == 0) + (i % 3 == 0) for i, s in enumerate(many)}
    want.update({s: 1 + (s in odd[:2]) for s in odd})
    assert got == want
    assert store.hit_counts(asked, since=150.0) == {
        s: n - 1 for s, n in want.items() if n > 1}  # INC-1 at 100 is before
    assert store.hit_counts(many[:6], since=0.0, exclude=("INC-2", "INC-3")) == dict.fromkeys(
        many[:6], 1)
    assert store.hit_counts([], since=0.0) == {}
    assert store.incidents_hitting(odd[0], since=0.0) == ["INC-1", "INC-3"]
    assert store.incidents_hitting(many[0], since=0.0) == ["INC-1", "INC-2", "INC-3"]
    store.close()
