"""Rules can tell planned incidents (inside maintenance) from the others."""

from __future__ import annotations

from dataclasses import replace

import pytest

from actions.policy import Policy, decide, evaluate, explain, matches
from correlator.incidents import Impact, Incident, IncidentEvent

INC = Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
               port="p1", role="access", site="north", severity="minor", state="open",
               opened_at=0, updated_at=0,
               impact=Impact(subscribers=("s1",), revenue_by_tier={"residential": 30.0},
                             subscribers_by_tier={"residential": 1}))


@pytest.mark.parametrize(
    ("when", "planned", "expected"),
    [
        ({}, True, True),
        ({}, False, True),
        ({"planned": True}, True, True),
        ({"planned": True}, False, False),
        ({"planned": False}, False, True),
        ({"planned": False}, True, False),
    ],
)
def test_planned(when: dict[str, object], planned: bool, expected: bool) -> None:
    policy = Policy.model_validate({
        "targets": {"log": {"kind": "log"}},
        "rules": [{"name": "r", "when": when, "do": [{"target": "log"}]}],
    })
    event = IncidentEvent("opened", replace(INC, planned=planned), 0.0)
    rule = policy.rules[0]
    assert matches(rule, event) is expected
    assert (explain(rule, event) == []) is expected
    assert bool(decide(policy, event)) is expected
    assert evaluate(policy, event)[0].fired is expected
    if not expected:
        assert explain(rule, event) == [
            f"planned is {str(planned).lower()}, the rule wants planned {str(not planned).lower()}"
        ]
