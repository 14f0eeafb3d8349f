"""A small ISP, a fake clock and observation builders shared by the judgement tests."""

from __future__ import annotations

import datetime as dt

from correlator.inventory import Device, Inventory, ParentLink, Subscriber
from probes.types import IF_OPER_STATUS, REACHABLE, Observation

# Tuesday 2026-03-10 12:00 UTC
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sub(sid: str, device: str, port: str, revenue: float = 30.0, tier: str = "residential",
        *, churn: float = 0.1, contract_end: dt.date | None = None) -> Subscriber:
    return Subscriber(sid, None, None, device, port, None, None, None, revenue, tier,
                      contract_end, churn, None, None, True, False)


def isp() -> Inventory:
    """core1 → agg1 (xe-0/0/1) → olt1, olt2; customers on olt1 p1/p2 and olt2 p1."""
    return Inventory(
        {
            "core1": Device("core1", "core", "pop-central", (), None),
            "agg1": Device("agg1", "aggregation", "pop-north",
                           (ParentLink(device="core1", port="xe-0/0/1"),), None),
            "olt1": Device("olt1", "access", "cabinet-n1", (ParentLink(device="agg1"),), None),
            "olt2": Device("olt2", "access", "cabinet-n2", (ParentLink(device="agg1"),), None),
        },
        [
            sub("s1", "olt1", "p1", 30, churn=0.1, contract_end=dt.date(2026, 4, 30)),
            sub("s2", "olt1", "p1", 45, churn=0.2),
            sub("s3", "olt1", "p2", 120, "business", churn=0.4,
                contract_end=dt.date(2027, 1, 31)),
            sub("s4", "olt2", "p1", 3000, "enterprise", churn=0.35,
                contract_end=dt.date(2026, 3, 31)),
        ],
    )


def oper(device: str, port: str, status: int, admin: str = "up") -> Observation:
    return Observation(device, "snmp", IF_OPER_STATUS, port, status, 0.0, {"admin": admin})


def reach(device: str, up: bool) -> Observation:
    return Observation(device, "snmp", REACHABLE, "", int(up), 0.0, {"reason": "timeout"})
