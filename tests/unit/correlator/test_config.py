"""Correlation settings: defaults, and the mistakes they refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from correlator.config import CorrelationConfig


def test_defaults() -> None:
    cfg = CorrelationConfig()
    assert cfg.priority.sla_tier == {"residential": 1.0, "business": 3.0, "enterprise": 10.0}
    assert (cfg.churn.window_days, cfg.churn.repeat_threshold, cfg.churn.step) == (30, 3, 0.1)
    d = cfg.damping
    assert (d.penalty, d.half_life, d.suppress, d.reuse, d.stable_for) == (
        1000, 300, 2000, 750, 300)
    assert cfg.maintenance_file is None and cfg.max_silence == 7 * 86_400
    assert cfg.state_hold_down is None and cfg.condition_recheck == 3600
    assert cfg.churn.repeat_incidents == 20 and cfg.detection.enabled


def test_a_full_section_validates() -> None:
    cfg = CorrelationConfig.model_validate({
        "unreachable_hold_down": 5,
        "maintenance_file": "maintenance.yaml",
        "priority": {"revenue": 0.2, "sla_tier": {"wholesale": 20},
                     "severity": {"critical": 80}, "renewal_window_days": 60},
        "churn": {"window_days": 14, "repeat_threshold": 2, "step": 0.15},
        "damping": {"half_life": 120, "suppress": 3000, "reuse": 1000, "port_hold_down": 10},
    })
    assert cfg.priority.severity.critical == 80 and cfg.priority.severity.minor == 5
    assert cfg.damping.port_hold_down == 10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"damping": {"reuse": 2000, "suppress": 2000}}, r"reuse \(2000\) must be below suppress \(2000\)"),
        ({"priority": {"revenue": -1}}, "greater than or equal to 0"),
        ({"priority": {"sla_tier": {"business": -3}}}, "greater than or equal to 0"),
        ({"priority": {"severity": {"catastrophic": 9}}}, "Extra inputs"),
        ({"churn": {"step": 2}}, "less than or equal to 1"),
        ({"damping": {"halflife": 60}}, "Extra inputs"),
        ({"state_hold_down": -1}, "greater than or equal to 0"),
        ({"condition_recheck": 0}, "greater than 0"),
        ({"churn": {"repeat_incidents": -1}}, "greater than or equal to 0"),
        ({"detection": {"congestion": {"high_pct": 80, "low_pct": 90}}},
         r"low_pct \(90\) must be below high_pct \(80\)"),
        ({"detection": {"congestoin": {}}}, "Extra inputs"),
    ],
)
def test_mistakes_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CorrelationConfig.model_validate(data)
