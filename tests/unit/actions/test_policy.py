"""Policy matching and policy-file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from actions.policy import Policy, decide, load_policy, matches
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.source import SourceError


def incident(kind: str = "link_down", severity: str = "minor", role: str = "access",
             tiers: dict[str, float] | None = None, subs: int = 2) -> Incident:
    tiers = tiers if tiers is not None else {"residential": 75.0}
    impact = Impact(subscribers=tuple(f"s{i}" for i in range(subs)), devices=(),
                    revenue_by_tier=tiers, subscribers_by_tier=dict.fromkeys(tiers, 1))
    return Incident(id="INC-000001", root="link:olt1:p1", kind=kind, device="olt1", port="p1",
                    role=role, site="north", severity=severity, state="open", opened_at=0,
                    updated_at=0, impact=impact)


def policy(rules: list[dict[str, object]]) -> Policy:
    return Policy.model_validate({
        "targets": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:1/x"},
                    "log": {"kind": "log"}},
        "rules": rules,
    })


@pytest.mark.parametrize(
    ("when", "inc", "event", "expected"),
    [
        ({}, incident(), "opened", True),
        ({}, incident(), "updated", False),  # default events: opened, resolved
        ({"events": ["updated"]}, incident(), "updated", True),
        ({"kind": ["device_unreachable"]}, incident(), "opened", False),
        ({"severity": ["minor"]}, incident(), "opened", True),
        ({"role": ["core"]}, incident(), "opened", False),
        ({"site": ["north"]}, incident(), "opened", True),
        ({"min_subscribers": 3}, incident(subs=2), "opened", False),
        ({"min_subscribers": 2}, incident(subs=2), "opened", True),
        ({"min_revenue": 100}, incident(), "opened", False),
        ({"min_revenue": 100}, incident(tiers={"business": 120.0}), "opened", True),
        ({"sla_tier": ["business"]}, incident(), "opened", False),
        ({"sla_tier": ["business"]}, incident(tiers={"business": 1.0, "residential": 1.0}),
         "opened", True),
    ],
)
def test_matching(when: dict[str, object], inc: Incident, event: str, expected: bool) -> None:
    p = policy([{"name": "r", "when": when, "do": [{"target": "log"}]}])
    assert matches(p.rules[0], IncidentEvent(event, inc, 0.0)) is expected  # type: ignore[arg-type]


def test_rules_accumulate_until_stop() -> None:
    p = policy([
        {"name": "a", "do": [{"target": "hook"}]},
        {"name": "b", "do": [{"target": "log"}], "stop": True},
        {"name": "c", "do": [{"target": "hook"}]},
    ])
    got = decide(p, IncidentEvent("opened", incident(), 0.0))
    assert [(r.name, a.target) for r, a in got] == [("a", "hook"), ("b", "log")]


def test_policy_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text(
        "targets:\n"
        "  hook: {kind: webhook, url: 'not a url'}\n"
        "  log: {kind: log}\n"
        "rules:\n"
        "  - name: r1\n"
        "    when: {severty: [major]}\n"
        "    do: [{target: log}]\n"
    )
    with pytest.raises(SourceError) as err:
        load_policy(f)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{f}:2: targets.hook.url: ")
    assert lines[1] == f"{f}:6: rules[0].when.severty: unknown key (check the spelling; see the example in etc/)"


def test_unknown_target_is_reported_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("targets:\n  log: {kind: log}\nrules:\n  - name: r1\n    do:\n      - target: pager\n")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    assert str(err.value) == f"{f}:6: rules[0].do[0].target: unknown target (targets: log) (got 'pager')"


def test_duplicate_rule_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="used twice"):
        policy([{"name": "a", "do": [{"target": "log"}]}, {"name": "a", "do": [{"target": "log"}]}])
