"""The priority score: table-driven cases, the breakdown, and monotonicity in subscribers."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.config import ChurnConfig, PriorityConfig, SeverityWeights
from correlator.incidents import Incident, compute_impact
from correlator.inventory import Inventory, Subscriber
from correlator.judgement import Judge
from correlator.priority import PriorityInputs, effective_churn, score
from correlator.silences import Maintenance
from correlator.store import IncidentStore
from tests.unit.correlator.support import T0, Clock, isp

DEFAULT = PriorityConfig()
ONLY_TIERS = PriorityConfig(revenue=0, churn=0, duration=0, renewal=0,
                            severity=SeverityWeights(critical=0, major=0, minor=0))


@pytest.mark.parametrize(
    ("inputs", "weights", "expected"),
    [
        # minor + 75 x 0.1 + 2 residential + 0.3 churn x 20
        (PriorityInputs("minor", 75.0, {"residential": 2}, 0.3, 0, 0.0), DEFAULT, 20.5),
        # major + 300 revenue + 10 enterprise + 7 churn + 10 min x 0.5 + 1 renewal x 5
        (PriorityInputs("major", 3000.0, {"enterprise": 1}, 0.35, 1, 10.0), DEFAULT, 347.0),
        # critical, 10 h open is capped at 240 min: 120 points
        (PriorityInputs("critical", 3195.0, {"business": 1, "enterprise": 1, "residential": 2},
                        1.05, 2, 600.0), DEFAULT, 535.5),
        # a tier the weights do not name counts as other_tier (1)
        (PriorityInputs("minor", 0.0, {"wholesale": 3}, 0.0, 0, 0.0), DEFAULT, 8.0),
        # an unknown severity is weighted 0, not an error
        (PriorityInputs("cosmic", 0.0, {}, 0.0, 0, 0.0), DEFAULT, 0.0),
        (PriorityInputs("critical", 9999.0, {"business": 2, "enterprise": 1}, 0.9, 3, 60.0),
         ONLY_TIERS, 16.0),
        (PriorityInputs("minor", 10.0, {"residential": 1}, 0.0, 0, 0.0),
         PriorityConfig(sla_tier={"residential": 2.5}, revenue=1), 5 + 10 + 2.5),
    ],
)
def test_score_table(inputs: PriorityInputs, weights: PriorityConfig, expected: float) -> None:
    p = score(inputs, weights)
    assert p.score == pytest.approx(expected)
    # the breakdown adds up to the score, and each line is input x weight
    assert sum(c.contribution for c in p.breakdown) == pytest.approx(p.score)
    for c in p.breakdown:
        if not isinstance(c.input, str):
            assert c.contribution == pytest.approx(round(c.input * c.weight, 2))


def test_breakdown_names_every_component_with_its_input_and_weight() -> None:
    p = score(PriorityInputs("major", 3120.0, {"business": 1, "enterprise": 1}, 0.75, 1, 600.0),
              DEFAULT)
    lines = {c.name: c for c in p.breakdown}
    assert list(lines) == ["severity", "revenue_at_risk", "sla_tier:business",
                           "sla_tier:enterprise", "churn_risk", "duration",
                           "contracts_near_renewal"]
    assert (lines["severity"].input, lines["severity"].contribution) == ("major", 20.0)
    assert (lines["sla_tier:enterprise"].input, lines["sla_tier:enterprise"].weight) == (1, 10.0)
    assert lines["duration"].input == 240.0 and "capped" in lines["duration"].detail
    assert lines["revenue_at_risk"].contribution == 312.0


def test_other_tier_is_explained_in_the_breakdown() -> None:
    p = score(PriorityInputs("minor", 0.0, {"wholesale": 3}, 0.0, 0, 0.0), DEFAULT)
    line = next(c for c in p.breakdown if c.name == "sla_tier:wholesale")
    assert line.weight == DEFAULT.other_tier and "other_tier" in line.detail


@pytest.mark.parametrize(
    ("base", "hits", "threshold", "step", "expected"),
    [
        (0.1, 0, 3, 0.1, 0.1),
        (0.1, 2, 3, 0.1, 0.1),  # below the threshold: unchanged
        (0.1, 3, 3, 0.1, 0.2),  # reaching it: one step
        (0.1, 5, 3, 0.1, 0.4),  # and one more for each hit after it
        (0.95, 4, 3, 0.1, 1.0),  # capped at 1.0
        (0.3, 1, 1, 0.25, 0.55),
        (0.3, 9, 3, 0.0, 0.3),  # step 0 switches it off
    ],
)
def test_effective_churn(base: float, hits: int, threshold: int, step: float,
                         expected: float) -> None:
    assert effective_churn(base, hits, threshold=threshold, step=step) == pytest.approx(expected)


# --- property: one more affected subscriber never lowers the score ------------------------

TIERS = ["residential", "business", "enterprise", "wholesale"]
weights_st = st.builds(
    PriorityConfig,
    revenue=st.floats(0, 10), other_tier=st.floats(0, 20), churn=st.floats(0, 100),
    duration=st.floats(0, 5), renewal=st.floats(0, 50),
    sla_tier=st.dictionaries(st.sampled_from(TIERS[:3]), st.floats(0, 50)),
    severity=st.builds(SeverityWeights, critical=st.floats(0, 100), major=st.floats(0, 100),
                       minor=st.floats(0, 100)),
)
subscriber_st = st.tuples(
    st.integers(0, 1_000_000).map(lambda c: c / 100),  # monthly revenue
    st.sampled_from(TIERS),
    st.floats(0, 1),  # churn risk
    st.one_of(st.none(), st.integers(-30, 400).map(
        lambda d: dt.date(2026, 3, 10) + dt.timedelta(days=d))),
    st.integers(0, 5),  # earlier incidents that hit this subscriber
)


def _assess(inv: Inventory, affected: list[str], history: dict[str, int],
            weights: PriorityConfig, churn: ChurnConfig, severity: str) -> float:
    store = IncidentStore(":memory:")
    for sid, n in history.items():
        for k in range(n):
            store.record_hits(f"INC-OLD{k}", [sid], T0 - 3600.0 * (k + 1))
    judge = Judge(inv, store, Maintenance(inv, store, clock=Clock()), priority=weights,
                  churn=churn)
    inc = Incident(id="INC-000001", root="link:olt1:p1", kind="link_down", device="olt1",
                   port="p1", role="access", site=None, severity=severity, state="open",
                   opened_at=T0 - 600, updated_at=T0, impact=compute_impact(inv, affected, ()))
    p = judge.assess(inc, T0, previous=None).priority
    store.close()
    return p


@settings(max_examples=150, deadline=None)
@given(
    subs=st.lists(subscriber_st, min_size=2, max_size=10),
    data=st.data(),
    weights=weights_st,
    threshold=st.integers(1, 4),
    step=st.floats(0, 0.5),
    severity=st.sampled_from(["critical", "major", "minor"]),
)
def test_adding_an_affected_subscriber_never_lowers_the_score(
    subs: list[tuple[float, str, float, dt.date | None, int]], data: st.DataObject,
    weights: PriorityConfig, threshold: int, step: float, severity: str,
) -> None:
    base = isp()
    people = [Subscriber(f"x{i}", None, None, "olt1", "p1", None, None, None, revenue, tier,
                         end, churn, None, None, False, False)
              for i, (revenue, tier, churn, end, _) in enumerate(subs)]
    inv = Inventory(base.devices, people)
    history = {f"x{i}": s[4] for i, s in enumerate(subs)}
    ids = [p.id for p in people]
    affected = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids) - 1))
    extra = data.draw(st.sampled_from([i for i in ids if i not in affected]))
    cfg = ChurnConfig(repeat_threshold=threshold, step=step)
    before = _assess(inv, affected, history, weights, cfg, severity)
    after = _assess(inv, [*affected, extra], history, weights, cfg, severity)
    assert after >= before
