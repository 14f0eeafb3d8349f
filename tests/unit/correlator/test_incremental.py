"""The correlator's incremental topology analysis equals the full one, step after step."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from correlator.engine import Correlator
from correlator.incidents import compute_impact
from correlator.inventory import Device, Inventory, ParentLink, Subscriber
from correlator.store import IncidentStore
from correlator.topology import (
    Analyser,
    Analysis,
    analyse,
    device_root,
    link_root,
    subscribers_behind,
)
from tests.unit.correlator.support import Clock, oper, reach, sub

PORTS = ["p1", "p2", "p3"]
TIERS = [("residential", 29.99), ("business", 120.1), ("enterprise", 3000.0)]


@st.composite
def networks(draw: st.DrawFn, max_devices: int = 12) -> Inventory:
    """A DAG (parents among earlier nodes), some links through named ports at either end,
    some passive elements, subscribers on random ports."""
    n = draw(st.integers(min_value=1, max_value=max_devices))
    names = [f"n{i}" for i in range(n)]
    devices = {}
    for i, name in enumerate(names):
        k = draw(st.integers(min_value=0, max_value=min(i, 3))) if i else 0
        parents = draw(st.lists(st.sampled_from(names[:i]), min_size=k, max_size=k,
                                unique=True)) if i else []
        links = tuple(
            ParentLink(device=p, port=draw(st.sampled_from([None, *PORTS])),
                       local_port=draw(st.sampled_from([None, None, "up1", "up2"])))
            for p in parents
        )
        role = draw(st.sampled_from(["access", "access", "aggregation", "passive", "cpe"]))
        devices[name] = Device(name, role, None, links, None)
    subs = []
    for j in range(draw(st.integers(min_value=0, max_value=30))):
        tier, revenue = draw(st.sampled_from(TIERS))
        subs.append(Subscriber(f"s{j:02d}", None, None, draw(st.sampled_from(names)),
                               draw(st.sampled_from(PORTS)), None, None, None, revenue, tier,
                               None, 0.0, None, None, False, False))
    return Inventory(devices, subs)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Inventory, list[tuple[str, str, str]]]:
    inv = draw(networks(max_devices=8))
    names = sorted(inv.devices)
    # mostly ports on links (they cut devices off), some customer ports; mostly devices
    # with children (their coming back revives what is below them)
    ports = sorted(inv.edge_ports) * 4 + [(d, p) for d in names for p in PORTS]
    devices = sorted(inv.children) * 3 + names
    steps = draw(st.lists(st.one_of(
        st.sampled_from(devices).map(lambda d: ("device", d, "")),
        st.sampled_from(ports).map(lambda k: ("port", k[0], k[1])),
        st.just(("open", "", "")),
        st.just(("nothing", "", "")),
    ), max_size=40))
    return inv, steps


def same(a: Analysis, b: Analysis) -> bool:
    return (a.symptoms == b.symptoms and a.affected_devices == b.affected_devices
            and a.cut_off == b.cut_off)


@settings(max_examples=300, deadline=None)
@given(scenarios())
@example((Inventory({"a": Device("a", "access", None, (), None),
                     "b": Device("b", "access", None, (ParentLink(device="a", port="p1"),),
                                 None)}, []),
          [("port", "a", "p1"), ("device", "a", ""), ("device", "a", "")]))
def test_incremental_analysis_and_impacts_equal_the_full_ones(
    scenario: tuple[Inventory, list[tuple[str, str, str]]],
) -> None:
    inv, steps = scenario
    an = Analyser(inv)
    down: set[str] = set()
    down_ports: set[tuple[str, str]] = set()
    opened_at: dict[str, float] = {}
    for t, (kind, device, port) in enumerate(steps):
        if kind == "device":
            down ^= {device}
        elif kind == "port":
            down_ports ^= {(device, port)}
        elif kind == "open":  # the roots of the last analysis open, in some order
            full = analyse(inv, down, down_ports, opened_at)
            for i, root in enumerate(sorted(full.symptoms, reverse=t % 2 == 0)):
                opened_at.setdefault(root, float(t + i))
        opened_at = {r: v for r, v in opened_at.items() if t % 3 or r.endswith("1")}
        got = an.analyse(down, down_ports, opened_at)
        want = analyse(inv, down, down_ports, opened_at)
        assert same(got, want), (kind, device, port)
        for root, devices in want.affected_devices.items():
            expected = compute_impact(inv, subscribers_behind(inv, root, devices), devices)
            assert an.impact(root, devices) == expected
            assert an.impact(root, devices) is an.impact(root, set(devices))  # cached


@settings(max_examples=200, deadline=None)
@given(networks(), st.data())
def test_passive_elements_are_never_down_themselves(inv: Inventory, data: st.DataObject) -> None:
    names = sorted(inv.devices)
    down = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    passive = {d for d in names if inv.devices[d].passive}
    a = analyse(inv, down, set())
    assert a.symptoms == analyse(inv, down - passive, set()).symptoms
    assert not {device_root(d) for d in passive} & set(a.symptoms)
    roots_and_symptoms = set(a.symptoms) | {s for ss in a.symptoms.values() for s in ss}
    assert not {device_root(d) for d in passive} & roots_and_symptoms
    # a passive element is cut off exactly when every path above it is
    assert a.cut_off == analyse(inv, down - passive, set()).cut_off


def pon() -> Inventory:
    """agg1 → olt1; PON port pon1 feeds splitter spl1 (passive), which feeds ont1, ont2."""
    def dev(name: str, role: str, *links: ParentLink) -> Device:
        return Device(name, role, None, links, None)

    return Inventory(
        {
            "agg1": dev("agg1", "aggregation"),
            "olt1": dev("olt1", "access", ParentLink(device="agg1")),
            "spl1": dev("spl1", "passive", ParentLink(device="olt1", port="pon1")),
            "ont1": dev("ont1", "cpe", ParentLink(device="spl1", port="o1")),
            "ont2": dev("ont2", "cpe", ParentLink(device="spl1", port="o2")),
        },
        [sub("s1", "spl1", "o1"), sub("s2", "spl1", "o2"), sub("s3", "olt1", "pon2"),
         sub("s4", "ont1", "eth1", 120, "business")],
    )


def test_pon_port_down_is_one_incident_for_the_tree_behind_it(tmp_path: object) -> None:
    clock = Clock()
    corr = Correlator(pon(), IncidentStore(":memory:"), clock=clock)
    for dev in ("agg1", "olt1", "ont1", "ont2"):
        corr.observe([reach(dev, True)])
    corr.observe([oper("olt1", "pon1", 1), oper("olt1", "pon2", 1)])
    # a passive element never polled; if something says it is unreachable, no incident
    assert corr.observe([reach("spl1", False)]) == []
    events = corr.observe([oper("olt1", "pon1", 2), reach("ont1", False), reach("ont2", False)])
    (opened,) = [e for e in events if e.type == "opened"]
    inc = opened.incident
    assert inc.root == link_root("olt1", "pon1")
    assert inc.impact.devices == ("ont1", "ont2", "spl1")
    assert inc.impact.subscribers == ("s1", "s2", "s4")
    assert inc.symptoms == (device_root("ont1"), device_root("ont2"))
    assert inc.severity == "major"


def test_a_new_inventory_swapped_in_is_used_from_the_next_change() -> None:
    clock = Clock()
    corr = Correlator(pon(), IncidentStore(":memory:"), clock=clock)
    corr.observe([oper("olt1", "pon2", 1)])
    (e,) = corr.observe([oper("olt1", "pon2", 2)])
    assert e.incident.impact.subscribers == ("s3",)
    inv = pon()
    bigger = Inventory(inv.devices, [*(inv.subscribers[s] for s in inv.subscribers),
                                     sub("s5", "olt1", "pon2")])
    corr.inventory = bigger  # what collector.reload does
    corr.observe([oper("olt1", "pon1", 1)])
    events = {e.incident.root: e for e in corr.observe([oper("olt1", "pon1", 2)])}
    assert events[link_root("olt1", "pon1")].type == "opened"
    assert events[link_root("olt1", "pon1")].incident.impact.subscribers == ("s1", "s2", "s4")
    # the open incident's impact is recomputed with the new inventory at the next change
    assert events[link_root("olt1", "pon2")].type == "updated"
    assert events[link_root("olt1", "pon2")].incident.impact.subscribers == ("s3", "s5")
    assert corr._analyser.inventory is bigger
    (e,) = corr.observe([oper("olt1", "pon2", 1)])
    assert e.type == "resolved"
