"""NetBox JSON → inventory data: link orientation, bindings, and problems (no I/O)."""

from __future__ import annotations

from typing import Any

from correlator.netbox_map import NetboxMapping, map_netbox

ROLES = {"core": 1, "aggregation": 2, "access": 3, "cpe": 4, "splitter": 5, "patch-panel": 6}


def device(did: int, name: str | None, role: str, *, tenant: int | None = None,
           legacy: bool = False) -> dict[str, Any]:
    ref = {"id": ROLES.get(role, 99), "name": role, "slug": role, "display": role}
    return {"id": did, "name": name, "display": name or f"device {did}",
            "device_role" if legacy else "role": ref,
            "site": {"id": 1, "slug": "pop", "name": "Pop"},
            "status": {"value": "active", "label": "Active"},
            "tenant": {"id": tenant, "slug": f"t{tenant}", "name": f"T{tenant}"}
            if tenant else None, "primary_ip": None}


def cable(cid: int, a: tuple[int, str, str], b: tuple[int, str, str]) -> dict[str, Any]:
    def end(did: int, name: str, port: str) -> list[dict[str, Any]]:
        return [{"object_type": "dcim.interface", "object_id": cid * 10 + did,
                 "object": {"id": cid * 10 + did, "name": port,
                            "device": {"id": did, "name": name}}}]
    return {"id": cid, "label": "", "status": {"value": "connected", "label": "Connected"},
            "a_terminations": end(*a), "b_terminations": end(*b)}


def tenant(tid: int, **custom: Any) -> dict[str, Any]:
    return {"id": tid, "name": f"T{tid}", "slug": f"t{tid}",
            "custom_fields": {"monthly_revenue": 10, **custom}}


def parents(mapped: Any, name: str) -> list[tuple[str, str, str]]:
    return [(p["device"], p["port"], p["local_port"])
            for p in mapped.devices[name].get("parents", [])]


def test_patch_panel_between_core_and_aggregation_and_netbox_3_role_key() -> None:
    devices = [device(1, "core1", "core"), device(2, "pp1", "patch-panel", legacy=True),
               device(3, "agg1", "aggregation")]
    cables = [cable(1, (2, "pp1", "r1"), (1, "core1", "xe-0")),
              cable(2, (3, "agg1", "xe-9"), (2, "pp1", "f1"))]
    m = map_netbox(devices, cables, [], NetboxMapping())
    assert m.problems == []
    assert parents(m, "pp1") == [("core1", "xe-0", "r1")]
    assert parents(m, "agg1") == [("pp1", "f1", "xe-9")]
    assert m.devices["pp1"]["role"] == "passive" and m.links == 2


def test_a_cpe_is_never_a_parent_even_under_an_unconnected_splitter() -> None:
    devices = [device(1, "spl", "splitter"), device(2, "ont-a", "cpe", tenant=7),
               device(3, "ont-b", "cpe", tenant=8)]
    cables = [cable(1, (2, "ont-a", "pon"), (1, "spl", "o1")),
              cable(2, (1, "spl", "o2"), (3, "ont-b", "pon"))]
    m = map_netbox(devices, cables, [tenant(7), tenant(8)], NetboxMapping())
    assert parents(m, "ont-a") == [("spl", "o1", "pon")]
    assert parents(m, "spl") == []
    assert m.subscribers == []
    assert [str(s) for s in m.skipped] == [
        "tenancy.tenant #7 'T7': its CPE ont-a is not cabled to the network",
        "tenancy.tenant #8 'T8': its CPE ont-b is not cabled to the network"]


def test_a_tenant_with_two_cpes_is_two_subscribers_sharing_its_revenue() -> None:
    devices = [device(1, "olt", "access"), device(2, "ont-1", "cpe", tenant=5),
               device(3, "ont-2", "cpe", tenant=5)]
    cables = [cable(1, (1, "olt", "pon1"), (2, "ont-1", "pon")),
              cable(2, (1, "olt", "pon2"), (3, "ont-2", "pon"))]
    m = map_netbox(devices, cables, [tenant(5, monthly_revenue="100", subscriber_id="S-5")],
                   NetboxMapping())
    assert [(s["id"], s["account"], s["port"], s["monthly_revenue"]) for s in m.subscribers] \
        == [("S-5/ont-1", "t5", "pon1", 50.0), ("S-5/ont-2", "t5", "pon2", 50.0)]


def test_renamed_custom_fields_and_a_duplicate_subscriber_id() -> None:
    mapping = NetboxMapping.model_validate(
        {"custom_fields": {"monthly_revenue": "mrr", "id": "crm_id"}})
    devices = [device(1, "sw", "access"), device(2, "cpe-1", "cpe", tenant=1),
               device(3, "cpe-2", "cpe", tenant=2)]
    cables = [cable(1, (1, "sw", "ge1"), (2, "cpe-1", "wan")),
              cable(2, (1, "sw", "ge2"), (3, "cpe-2", "wan"))]
    tenants = [{"id": 1, "name": "A", "slug": "a", "custom_fields": {"mrr": 20, "crm_id": "C1"}},
               {"id": 2, "name": "B", "slug": "b", "custom_fields": {"mrr": 30, "crm_id": "C1"}}]
    m = map_netbox(devices, cables, tenants, mapping)
    assert [(s["id"], s["monthly_revenue"]) for s in m.subscribers] == [("C1", 20.0)]
    assert [str(p) for p in m.problems] == [
        "tenancy.tenant #2 'B': subscriber id 'C1' (custom field crm_id, or the slug) is also "
        "tenant #1's; make it unique"]


def test_missing_revenue_and_unnamed_device_are_problems() -> None:
    devices = [device(1, "sw", "access"), device(2, None, "access"),
               device(3, "cpe-1", "cpe", tenant=1)]
    cables = [cable(1, (1, "sw", "ge1"), (3, "cpe-1", "wan"))]
    tenants = [{"id": 1, "name": "A", "slug": "a", "custom_fields": {"monthly_revenue": None}}]
    m = map_netbox(devices, cables, tenants, NetboxMapping())
    assert [str(p) for p in m.problems] == [
        "dcim.device #2 'device 2': has no name; name it in NetBox (netreflex knows devices "
        "by name)",
        "tenancy.tenant #1 'A': custom field monthly_revenue: empty; set it on the tenant "
        "(0 if it pays nothing)"]


def test_a_bad_consent_names_its_custom_field_and_an_unbound_second_cpe_is_skipped() -> None:
    devices = [device(1, "sw", "access"), device(2, "cpe-1", "cpe", tenant=1),
               device(3, "cpe-2", "cpe", tenant=1), device(4, "cpe-3", "cpe", tenant=2)]
    cables = [cable(1, (1, "sw", "ge1"), (2, "cpe-1", "wan")),
              cable(2, (1, "sw", "ge3"), (4, "cpe-3", "wan"))]
    tenants = [tenant(1), tenant(2, consent_sms="maybe")]
    m = map_netbox(devices, cables, tenants, NetboxMapping())
    assert [(s["id"], s["monthly_revenue"]) for s in m.subscribers] == [("t1", 10.0)]
    assert [str(s) for s in m.skipped] == [
        "dcim.device #3 'cpe-2': CPE of tenant T1 is not cabled to the network (its other "
        "CPEs are bound)"]
    assert [str(p) for p in m.problems] == [
        "tenancy.tenant #2 'T2': custom field consent_sms: Input should be a valid boolean, "
        "unable to interpret input (got 'maybe')"]
