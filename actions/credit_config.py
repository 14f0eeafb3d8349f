"""What an SLA credit schedule pays (pure, no I/O), and how schedules are checked
against the inventory.

An outage earns the percentage of the highest step its minutes reach (maintenance left
out), capped at ``cap_percent`` per outage, of the subscriber's monthly fee; amounts are
rounded half up to cents. With ``monthly_cap_percent`` a contract earns no more than that
share of its fee in one calendar month (UTC), counting what the ledger already holds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from actions.policy import Policy
from actions.targets import CreditStep, SlaCreditTarget
from correlator.inventory import Inventory
from probes.source import Problem, load_yaml

CENT = Decimal("0.01")


def money(value: float) -> float:
    """``value`` rounded half up to cents (12.345 -> 12.35, not 12.34)."""
    return float(Decimal(repr(value)).quantize(CENT, rounding=ROUND_HALF_UP))


def step_percent(steps: Sequence[CreditStep], minutes: float) -> float:
    """The percent of the highest step ``minutes`` reaches; 0 below the first."""
    pct = 0.0
    for step in steps:
        if minutes >= step.minutes:
            pct = step.percent
    return pct


@dataclass(frozen=True, slots=True)
class CreditTerms:
    """One contract's credit for one outage. ``percent``: what was applied (after the
    per-outage cap); ``capped``: the per-outage or the monthly cap made it smaller."""

    minutes: float
    percent: float
    amount: float
    capped: bool


def credit_terms(target: SlaCreditTarget, tier: str, minutes: float, monthly_fee: float,
                 *, credited_this_month: float = 0.0) -> CreditTerms | None:
    """What ``target``'s schedule pays a ``tier`` contract for an outage of ``minutes``;
    None when the tier has no schedule."""
    steps = target.schedule.get(tier)
    if steps is None:
        return None
    minutes = max(0.0, minutes)
    earned = step_percent(steps, minutes) if minutes > 0 else 0.0
    percent = min(earned, target.cap_percent)
    amount = money(monthly_fee * percent / 100.0)
    capped = percent < earned
    if target.monthly_cap_percent is not None:
        room = money(max(0.0, monthly_fee * target.monthly_cap_percent / 100.0
                         - credited_this_month))
        if amount > room:
            amount, capped = room, True
    return CreditTerms(round(minutes, 2), percent, amount, capped)


def tier_warnings(policy_path: str | os.PathLike[str], policy: Policy,
                  inventory: Inventory) -> list[Problem]:
    """A schedule for a tier no subscriber has never pays: say so, with the line (a
    warning, not an error -- the tier may be for subscribers not loaded yet)."""
    credits = {name: t for name, t in policy.targets.items() if isinstance(t, SlaCreditTarget)}
    if not credits:
        return []
    tiers = inventory.sla_tiers
    src = load_yaml(policy_path)
    out: list[Problem] = []
    for name, target in credits.items():
        for tier in target.schedule:
            if tier not in tiers:
                out.append(src.problem(
                    ("targets", name, "schedule", tier),
                    f"warning: no subscriber in the inventory has this SLA tier (tiers: "
                    f"{', '.join(sorted(tiers)) or 'none'}); its credits never apply", tier))
    return out
