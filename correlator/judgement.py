"""Judgement about one incident: is it planned, who is hit again and again, how urgent.

Called by the engine only when an incident opens, changes scope or closes -- never per
observation -- and its cost is proportional to the subscribers *that incident* hurts.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Collection
from dataclasses import replace
from functools import reduce
from itertools import compress, repeat

from correlator.config import ChurnConfig, PriorityConfig
from correlator.incidents import Impact, Incident, TimelineEntry
from correlator.inventory import Inventory
from correlator.maintenance import target_of
from correlator.priority import PriorityInputs, effective_churn, score
from correlator.silences import Coverage, Maintenance
from correlator.store import IncidentStore

# kinds that are not a failure the subscribers lived through: the history's own verdict,
# and traffic that is merely higher (a usage change, a subscriber using their whole plan)
_NOT_FAILURES = frozenset({"repeated_failures", "usage_change", "plan_saturation"})


def counts_as_failure(inc: Incident) -> bool:
    """Whether an incident goes into its subscribers' incident history (churn): not the
    kinds above, nor an ONT that said it lost power (dying gasp: switched off at the
    customer's)."""
    if inc.kind in _NOT_FAILURES:
        return False
    return not (inc.kind == "ont_down" and inc.evidence.get("cause") == "dying-gasp")


class Judge:
    def __init__(
        self,
        inventory: Inventory,
        store: IncidentStore,
        maintenance: Maintenance,
        *,
        priority: PriorityConfig,
        churn: ChurnConfig,
    ) -> None:
        self.inventory = inventory
        self.store = store
        self.maintenance = maintenance
        self.priority = priority
        self.churn = churn

    # --- planned -------------------------------------------------------------------------

    def coverage(self, inc: Incident, now: float) -> Coverage:
        return self.maintenance.covering(target_of(self.inventory, inc), now)

    def plan(self, inc: Incident, now: float) -> Incident:
        """A new incident inside a maintenance window or silence is planned."""
        cov = self.coverage(inc, now)
        if not cov.ids:
            return inc
        note = TimelineEntry(now, f"planned: inside {', '.join(cov.ids)}")
        return replace(inc, planned=True, planned_by=cov.ids, planned_until=cov.until,
                       timeline=(*inc.timeline, note))

    def keep_plan(self, inc: Incident, now: float) -> tuple[Incident, bool]:
        """A planned incident stays planned while a window or silence still covers it
        (its scope may have grown past it, or the window ended); returns the incident and
        whether it is no longer planned. An incident never *becomes* planned after it
        opened: its customers were not told in advance."""
        cov = self.coverage(inc, now)
        if cov.ids:
            return replace(inc, planned_by=cov.ids, planned_until=cov.until), False
        why = ("its maintenance ended while it is still open"
               if inc.planned_until is not None and now >= inc.planned_until
               else "it now reaches beyond its maintenance")
        note = TimelineEntry(now, f"no longer planned: {why} ({', '.join(inc.planned_by)})")
        return replace(inc, planned=False, planned_by=(), planned_until=None,
                       timeline=(*inc.timeline, note)), True

    # --- churn history and priority ------------------------------------------------------

    def assess(
        self, inc: Incident, now: float, *, previous: Impact | None,
        exclude: Collection[str] = (),
    ) -> Incident:
        """Record the subscribers newly hit (not those of ``previous``), then recompute
        contracts near renewal, repeat subscribers and the priority. ``exclude``: ids of
        incidents about to merge into this one, so one outage is not counted twice."""
        imp = inc.impact
        subs = imp.subscribers
        if (self.churn.count_planned or not inc.planned) and counts_as_failure(inc):
            before = set(previous.subscribers) if previous is not None else set()
            self.store.record_hits(inc.id, [s for s in subs if s not in before], now)
        hits = self.store.hit_counts(subs, since=now - self.churn.window_days * 86_400.0,
                                     exclude=tuple(exclude)) if subs else {}
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        last = today + dt.timedelta(days=self.priority.renewal_window_days)
        # column by column (an outage can hit a hundred thousand subscribers); those gone
        # from a reloaded inventory are left out
        known = self.inventory.churn_inputs(subs)
        counts = list(map(hits.get, known.ids, repeat(0)))
        threshold = self.churn.repeat_threshold
        again = list(map(operator.le, repeat(threshold), counts))  # hit threshold times
        risks = known.churn_risk  # effective_churn is the risk itself below the threshold
        for i in compress(range(len(counts)), again):
            risks[i] = effective_churn(risks[i], counts[i], threshold=threshold,
                                       step=self.churn.step)
        churn = reduce(operator.add, risks, 0.0)  # in order, as a loop adds
        first, end = today.toordinal(), last.toordinal()  # contract ends are ordinals
        near = tuple(compress(known.ids, [first <= e <= end for e in known.contract_end]))
        imp = replace(imp, contracts_near_renewal=near,
                      repeat_subscribers=tuple(compress(known.ids, again)))
        p = score(PriorityInputs(
            severity=inc.severity, revenue_at_risk=imp.revenue_at_risk,
            subscribers_by_tier=imp.subscribers_by_tier, churn_risk=churn,
            near_renewal=len(near), minutes_open=(now - inc.opened_at) / 60.0,
        ), self.priority)
        return replace(inc, impact=imp, priority=p.score, priority_breakdown=p.breakdown)
