"""Message templates: only listed variables, no attribute access, no spec injection, and
errors at policy load that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from actions.dispatcher import build_payload
from actions.executors.mqtt import topic_level
from actions.policy import load_policy
from actions.targets import priority_label
from actions.templates import (
    INCIDENT_VARIABLES,
    IncidentTemplate,
    TemplateError,
    check,
    incident_variables,
    render,
)
from correlator.incidents import Impact, Incident, IncidentEvent
from probes.source import SourceError


class Holder(BaseModel):
    t: IncidentTemplate


def variables() -> dict[str, object]:
    inc = Incident(
        id="INC-7", root="link:olt1:p1", kind="link_down", device="olt1", port="p1",
        role="access", site=None, severity="minor", state="open", opened_at=0.0,
        updated_at=0.0, priority=12.5,
        impact=Impact(subscribers=("a", "b", "c"), devices=("olt1",),
                      revenue_by_tier={"residential": 75.0, "business": 1234.5},
                      subscribers_by_tier={"residential": 2, "business": 1}),
    )
    return incident_variables(build_payload(IncidentEvent("opened", inc, 60.0), "r1", "k"))


def test_renders_the_listed_variables_with_plain_format_specs() -> None:
    v = variables()
    out = render("{incident.title} [{incident.severity:>6}] {impact.subscriber_count} subs, "
                 "{impact.revenue_at_risk:,.2f} at risk ({impact.revenue_by_tier}); "
                 "site '{incident.site}' {event.time} {rule}", v)
    assert out == ("link down on olt1 p1 [ minor] 3 subs, 1,309.50 at risk "
                   "(business 1234.50, residential 75.00); site '' "
                   "1970-01-01T00:01:00.000Z r1")


def test_every_variable_is_produced_with_the_type_of_its_sample() -> None:
    v = variables()
    assert set(v) == set(INCIDENT_VARIABLES)
    for name, sample in INCIDENT_VARIABLES.items():
        assert type(v[name]) is type(sample), name


def test_values_are_not_templates_themselves() -> None:
    assert render("{incident.title}", {"incident.title": "{incident.__class__} {0}"}) == \
        "{incident.__class__} {0}"


def test_double_braces_are_literal_braces() -> None:
    assert check("{{not a field}} {incident.id}", INCIDENT_VARIABLES)


def test_unknown_variable_is_named_with_a_suggestion() -> None:
    with pytest.raises(TemplateError, match=r"unknown variable \{incident\.titel\}; did you "
                                            r"mean incident\.title\?"):
        check("{incident.titel}", INCIDENT_VARIABLES)
    with pytest.raises(ValidationError, match=r"unknown variable \{impact\.mrr\} "
                                              r"\(variables: impact\.subscriber_count, "):
        Holder(t="{impact.mrr}")


@pytest.mark.parametrize("template", [
    "{incident.__class__}",
    "{incident.title.__class__.__mro__}",
    "{0.__globals__}",
    "{0}",
    "{}",
    "{incident.title[0]}",
    "{incident[title]}",
    "{__import__}",
    "{incident.title!r}",
    "{incident.title!s}",
    "{impact.revenue_at_risk:{incident.site}}",
    "{impact.revenue_at_risk:{0}}",
    "{incident.title:99999999}",
    "{incident.title:.999}",
    "{incident.title",
    "incident.title}",
])
def test_injection_attempts_are_rejected(template: str) -> None:
    with pytest.raises(TemplateError):
        check(template, INCIDENT_VARIABLES)


def test_render_alone_refuses_what_check_refuses() -> None:
    # defence in depth: even an unchecked template cannot reach attributes or use a
    # value as a format spec
    v = variables()
    for template in ("{incident.title.__class__}", "{0.__globals__}",
                     "{impact.revenue_at_risk:{incident.title}}", "{incident.title!r}"):
        with pytest.raises(TemplateError):
            render(template, v)


def test_a_spec_that_does_not_fit_the_type_is_rejected_at_load() -> None:
    with pytest.raises(TemplateError, match="does not fit"):
        check("{incident.title:.2f}", INCIDENT_VARIABLES)
    with pytest.raises(TemplateError, match="does not fit"):
        check("{impact.revenue_at_risk:d}", INCIDENT_VARIABLES)


def test_policy_load_reports_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(
        "targets:\n"
        "  pd:\n"
        "    kind: pagerduty\n"
        "    routing_key: abc\n"
        "    summary: '{incident.title} at {incident.sitee}'\n"
        "  bus:\n"
        "    kind: mqtt\n"
        "    host: 127.0.0.1\n"
        "    topic: 'noc/+/{incident.id}'\n"
        "rules: []\n"
    )
    with pytest.raises(SourceError) as exc:
        load_policy(p)
    lines = str(exc.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{p}:5: targets.pd.summary: unknown variable "
                               "{incident.sitee}; did you mean incident.site?")
    assert lines[1].startswith(f"{p}:9: targets.bus.topic: a topic to publish to")


def test_topic_levels_are_made_safe() -> None:
    assert render("n/{incident.site}/{incident.id}",
                  {"incident.site": "a/b+#", "incident.id": ""}, topic_level) == "n/a_b__/none"


@pytest.mark.parametrize(("score", "label"), [(0, "4"), (19.9, "4"), (20, "3"), (150, "2"),
                                              (10_000, "1")])
def test_priority_levels(score: float, label: str) -> None:
    assert priority_label({"1": 500, "2": 100, "3": 20, "4": 0}, score) == label


def test_every_default_template_of_every_target_kind_is_valid() -> None:
    import typing

    from pydantic import AfterValidator

    from actions.targets import Target

    checked = 0
    for model in typing.get_args(typing.get_args(Target)[0]):
        for name, field in model.model_fields.items():
            for meta in field.metadata:
                if isinstance(meta, AfterValidator) and isinstance(field.default, str):
                    assert meta.func(field.default) == field.default, (model.__name__, name)
                    checked += 1
    assert checked >= 15
