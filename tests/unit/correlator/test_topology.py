"""Root cause and suppression over small, hand-drawn topologies."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.inventory import Device, Inventory, ParentLink, Subscriber
from correlator.topology import analyse, device_root, link_root, subscribers_behind


def dev(name: str, *parents: str | ParentLink, role: str = "access") -> Device:
    links = tuple(p if isinstance(p, ParentLink) else ParentLink(device=p) for p in parents)
    return Device(name, role, None, links, None)


def sub(sid: str, device: str, port: str, revenue: float = 30.0, tier: str = "residential") -> Subscriber:
    return Subscriber(sid, None, None, device, port, None, None, None, revenue, tier, None, 0.0,
                      None, None, False, False)


def isp() -> Inventory:
    """core1 → agg1, agg2; olt1 single-homed on agg1; olt2 dual-homed; sw3 on agg2 via a port."""
    return Inventory(
        {
            "core1": dev("core1", role="core"),
            "agg1": dev("agg1", ParentLink(device="core1", port="xe-0/0/1"), role="aggregation"),
            "agg2": dev("agg2", ParentLink(device="core1", port="xe-0/0/2"), role="aggregation"),
            "olt1": dev("olt1", "agg1"),
            "olt2": dev("olt2", "agg1", "agg2"),
            "sw3": dev("sw3", ParentLink(device="agg2", port="ge-1/0/7")),
        },
        [sub("a", "olt1", "p1"), sub("b", "olt1", "p2"), sub("c", "olt2", "p1"),
         sub("d", "sw3", "g1", 3000, "enterprise")],
    )


def test_aggregation_down_suppresses_single_homed_children_only() -> None:
    inv = isp()
    a = analyse(inv, {"agg1", "olt1"}, set())
    assert set(a.symptoms) == {device_root("agg1")}
    assert a.symptoms[device_root("agg1")] == {device_root("olt1")}
    # olt2 still has agg2: not affected
    assert a.affected_devices[device_root("agg1")] == {"olt1"}
    assert "olt2" not in a.cut_off


def test_child_fault_alone_is_its_own_root() -> None:
    a = analyse(isp(), {"olt1"}, set())
    assert set(a.symptoms) == {device_root("olt1")}
    assert a.affected_devices[device_root("olt1")] == set()


def test_dual_homed_node_is_affected_only_when_both_parents_are_down() -> None:
    inv = isp()
    a = analyse(inv, {"agg1", "agg2", "olt2"}, set(), {device_root("agg2"): 1.0,
                                                       device_root("agg1"): 2.0})
    assert set(a.symptoms) == {device_root("agg1"), device_root("agg2")}
    # olt2 is attributed to the earlier incident (agg2 opened first)
    assert device_root("olt2") in a.symptoms[device_root("agg2")]
    assert "olt2" in a.affected_devices[device_root("agg2")]


def test_uplink_port_down_cuts_off_the_device_behind_it() -> None:
    inv = isp()
    a = analyse(inv, {"sw3"}, {("agg2", "ge-1/0/7")})
    # the device that stopped answering is the root; the port facing it is a symptom
    assert set(a.symptoms) == {device_root("sw3")}
    assert link_root("agg2", "ge-1/0/7") in a.symptoms[device_root("sw3")]


def test_uplink_port_down_while_device_still_answers_is_a_link_root() -> None:
    a = analyse(isp(), set(), {("agg2", "ge-1/0/7")})
    root = link_root("agg2", "ge-1/0/7")
    assert set(a.symptoms) == {root}
    assert a.affected_devices[root] == {"sw3"}
    assert sorted(subscribers_behind(isp(), root, a.affected_devices[root])) == ["d"]


def test_customer_port_down_affects_only_that_port() -> None:
    inv = isp()
    a = analyse(inv, set(), {("olt1", "p1")})
    root = link_root("olt1", "p1")
    assert set(a.symptoms) == {root}
    assert subscribers_behind(inv, root, a.affected_devices[root]) == ["a"]


def test_ports_down_on_a_dead_device_are_its_symptoms() -> None:
    a = analyse(isp(), {"agg1", "olt1"}, {("olt1", "p1")})
    assert a.symptoms[device_root("agg1")] == {device_root("olt1"), link_root("olt1", "p1")}


# --- property: the affected set is exactly the nodes with no surviving path -------------


@st.composite
def graphs(draw: st.DrawFn, passive: bool = False) -> tuple[Inventory, set[str]]:
    n = draw(st.integers(min_value=1, max_value=14))
    names = [f"n{i}" for i in range(n)]
    devices = {}
    for i, name in enumerate(names):
        # parents only among earlier nodes: a DAG, like a real access network
        k = draw(st.integers(min_value=0, max_value=min(i, 3))) if i else 0
        parents = draw(st.lists(st.sampled_from(names[:i]), min_size=k, max_size=k,
                                unique=True)) if i else []
        role = "passive" if passive and draw(st.booleans()) else "access"
        devices[name] = dev(name, *parents, role=role)
    down = set(draw(st.lists(st.sampled_from(names), unique=True)))
    return Inventory(devices, []), down


def _no_surviving_path(inv: Inventory, down: set[str]) -> set[str]:
    alive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for d in inv.devices.values():
            if d.id in alive or d.id in down:
                continue
            if not d.parents or any(p.device in alive for p in d.parents):
                alive.add(d.id)
                changed = True
    return set(inv.devices) - alive


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_cut_off_set_equals_nodes_without_a_surviving_path(g: tuple[Inventory, set[str]]) -> None:
    inv, down = g
    a = analyse(inv, down, set())
    assert a.cut_off == _no_surviving_path(inv, down)
    # every cut-off device is a root or explained by exactly one root
    explained = [d for devs in a.affected_devices.values() for d in devs]
    assert len(explained) == len(set(explained))
    roots = {k.split(":", 1)[1] for k in a.symptoms}
    assert a.cut_off == roots | set(explained)
    # every unreachable device is either a root or a symptom of one
    symptoms = {s for ss in a.symptoms.values() for s in ss}
    for d in down:
        assert device_root(d) in a.symptoms or device_root(d) in symptoms


@settings(max_examples=300, deadline=None)
@given(graphs(passive=True))
def test_with_passive_elements_cut_off_is_still_nodes_without_a_surviving_path(
    g: tuple[Inventory, set[str]],
) -> None:
    inv, down = g  # ``down`` may name passive elements: they are never down themselves
    passive = {d for d, x in inv.devices.items() if x.role == "passive"}
    a = analyse(inv, down, set())
    assert a.cut_off == _no_surviving_path(inv, down - passive)
    explained = [d for devs in a.affected_devices.values() for d in devs]
    assert len(explained) == len(set(explained))
    roots = {k.split(":", 1)[1] for k in a.symptoms}
    assert not roots & passive
    assert a.cut_off == roots | set(explained)
    symptoms = {s for ss in a.symptoms.values() for s in ss}
    for d in down - passive:
        assert device_root(d) in a.symptoms or device_root(d) in symptoms
    for d in passive:
        assert device_root(d) not in symptoms


def test_attribution_does_not_depend_on_set_order() -> None:
    inv = isp()
    down = ["agg1", "olt1", "agg2", "olt2", "sw3"]
    first = analyse(inv, down, set())
    for seed in range(5):
        random.Random(seed).shuffle(down)
        again = analyse(inv, down, set())
        assert again.symptoms == first.symptoms
        assert again.affected_devices == first.affected_devices


def test_dual_homed_uplink_facing_a_dead_parent_is_its_symptom() -> None:
    inv = Inventory(
        {
            "core1": dev("core1", role="core"),
            "agg1": dev("agg1", "core1", role="aggregation"),
            "agg2": dev("agg2", "core1", role="aggregation"),
            "olt3": dev("olt3", ParentLink(device="agg1", local_port="up1"),
                        ParentLink(device="agg2", local_port="up2")),
        },
        [],
    )
    a = analyse(inv, {"agg1"}, {("olt3", "up1")})
    assert set(a.symptoms) == {device_root("agg1")}
    assert a.symptoms[device_root("agg1")] == {link_root("olt3", "up1")}
    assert "olt3" not in a.cut_off


# --- passive elements (splitters, patch panels) -----------------------------------------


def pon_tree() -> Inventory:
    """olt1 pon0/1 → spl1 (passive) → ont1, ont2; olt1 pon0/2 → ont3 directly."""
    return Inventory(
        {
            "olt1": dev("olt1"),
            "spl1": dev("spl1", ParentLink(device="olt1", port="pon0/1"), role="passive"),
            "ont1": dev("ont1", ParentLink(device="spl1", port="o1"), role="cpe"),
            "ont2": dev("ont2", ParentLink(device="spl1", port="o2"), role="cpe"),
            "ont3": dev("ont3", ParentLink(device="olt1", port="pon0/2"), role="cpe"),
        },
        [sub("a", "spl1", "o1"), sub("b", "spl1", "o2"), sub("c", "ont3", "eth1")],
    )


def test_a_passive_element_is_down_only_with_the_path_above_it() -> None:
    inv = pon_tree()
    # even if something said so, a splitter is not unreachable itself
    assert analyse(inv, {"spl1"}, set()).symptoms == {}
    a = analyse(inv, {"ont1", "ont2"}, {("olt1", "pon0/1")})
    root = link_root("olt1", "pon0/1")
    assert set(a.symptoms) == {root}
    assert a.affected_devices[root] == {"spl1", "ont1", "ont2"}
    assert a.symptoms[root] == {device_root("ont1"), device_root("ont2")}
    assert sorted(subscribers_behind(inv, root, a.affected_devices[root])) == ["a", "b"]


def test_onts_down_behind_a_live_splitter_are_their_own_roots() -> None:
    a = analyse(pon_tree(), {"ont1", "spl1"}, set())
    assert set(a.symptoms) == {device_root("ont1")}
    assert "spl1" not in a.cut_off
