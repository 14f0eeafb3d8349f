"""`netreflex inventory import-netbox` against a stand-in for NetBox's REST API.

The server (tests/support/netbox_server.py) is a stand-in answering in the shapes NetBox
4.x documents (pagination, nested objects, cable terminations, token auth) -- it is not
NetBox. The importer goes through pynetbox over real HTTP on loopback, and its output is
loaded with netreflex's own inventory loader.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.cli import main
from correlator.inventory import load_inventory
from tests.support.netbox_server import FIXTURES, NetboxServer

pytestmark = pytest.mark.integration

TOKEN = "nb0123456789abcdef0123456789abcdef0123"  # a NetBox v1 token's shape
MAPPING = str(FIXTURES / "mapping.yaml")


@pytest.fixture
def server() -> Iterator[NetboxServer]:
    with NetboxServer(token=TOKEN) as srv:
        yield srv


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "netbox.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def run(url: str, token_file: Path, out: Path, *extra: str) -> int:
    return main(["inventory", "import-netbox", "--url", url, "--token-file", str(token_file),
                 "--out-dir", str(out), "--mapping", MAPPING, "--timeout", "10", *extra])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} \
        if directory.exists() else {}


def test_happy_path_writes_files_netreflex_loads(
        server: NetboxServer, token_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "netbox"
    assert run(server.url, token_file, out) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["inventory.yaml", "subscribers.csv"]

    inv = load_inventory([out / "inventory.yaml"])  # the daemon's loader
    assert sorted(inv.devices) == ["agg1", "agg2", "core1", "core2", "cpe-acme", "olt1",
                                   "ont-1001", "ont-1002", "spl1", "spl2", "sw3"]
    dev = inv.devices
    assert [d.id for d in dev.values() if d.passive] == ["spl1", "spl2"]
    assert dev["olt1"].role == "access" and dev["olt1"].site == "pop-north"

    def links(name: str) -> list[tuple[str, str | None, str | None]]:
        return [(p.device, p.port, p.local_port) for p in dev[name].parents]

    # cables are oriented toward the core whichever end NetBox calls A
    assert links("agg1") == [("core1", "xe-0/0/1", "xe-0/1/0")]
    assert links("olt1") == [("agg1", "ge-0/0/4", "uplink0")]       # cable 3: A is olt1
    assert links("spl1") == [("olt1", "pon0/1", "in")]              # rear port of a splitter
    assert links("spl2") == [("spl1", "out2", "in")]                # cascade of splitters
    assert links("ont-1002") == [("spl2", "out1", "pon")]           # cable 7: A is the ONT
    assert links("sw3") == [("agg2", "ge-1/0/7", "ge-0/0/48")]
    assert links("core1") == [] and links("core2") == []           # peer link: no direction

    # tenants bound through their CPE, up through the splitters to the OLT port
    assert inv.subscribers_on("olt1", "pon0/1") == ["S-1001", "S-1002"]
    assert inv.subscribers_on("sw3", "ge-0/0/1") == ["S-9001"]
    acme = inv.subscribers["S-9001"]
    assert (acme.account, acme.name, acme.sla_tier, acme.monthly_revenue) == \
        ("ACME-001", "Acme Logistics", "enterprise", 3000.0)
    assert str(acme.contract_end) == "2027-03-31" and acme.churn_risk == 0.35
    assert (acme.email, acme.phone, acme.consent_sms) == ("noc@acme.example", "+1 555 0100",
                                                          True)
    okafor = inv.subscribers["S-1002"]
    assert okafor.monthly_revenue == 45.0  # a decimal custom field sent as "45.00"
    assert inv.totals_on(["olt1"]).revenue_by_tier == {"residential": 75.0}

    assert stdout.splitlines()[0] == (
        f"NetBox {server.url}: 11 device(s) (2 passive), 9 link(s), 3 subscriber(s); "
        "8 object(s) skipped")
    for line in (
        "  skipped dcim.device #11 'ont-1003': status planned (not in device_statuses)",
        "  skipped dcim.device #13 'pdu1': role pdu is in skip_roles",
        "  skipped dcim.cable #10: links two core devices (core1, core2): equal rank, no "
        "direction toward the core",
        "  skipped dcim.cable #11: dcim.powerport is not a data port between devices",
        "  skipped dcim.cable #12: device ont-1003 is skipped",
        "  skipped dcim.cable #13: status planned",
        "  skipped tenancy.tenant #4 'M. Chen': no imported CPE device (role cpe) has this "
        "tenant (tenants are bound through their CPE)",
    ):
        assert line in stdout.splitlines()
    assert "`systemctl reload netreflex` loads them without a restart" in stdout


def test_every_page_is_read(server: NetboxServer, token_file: Path, tmp_path: Path) -> None:
    server.default_page, server.max_page_size = 2, 2
    assert run(server.url, token_file, tmp_path / "out") == 0
    pages = [int(r.query.get("offset", 0)) for r in server.snapshot()
             if r.path == "/api/dcim/devices/"]
    assert pages == [0, 2, 4, 6, 8, 10, 12]  # 13 devices, 2 a page
    assert all(r.status == 200 for r in server.snapshot())
    inv = load_inventory([tmp_path / "out" / "inventory.yaml"])
    assert len(inv.devices) == 11 and len(inv.subscribers) == 3


def test_requests_carry_the_token_and_nothing_prints_or_logs_it(
        server: NetboxServer, token_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 / requests / pynetbox, all of them
    assert run(server.url, token_file, tmp_path / "out") == 0
    server.data["tenants"][0]["custom_fields"]["monthly_revenue"] = "abc"
    assert run(server.url, token_file, tmp_path / "out", "--json") == 65
    out, err = capsys.readouterr()
    assert {r.headers.get("Authorization") for r in server.snapshot()} == {f"Token {TOKEN}"}
    assert caplog.records  # the HTTP libraries did log (at debug)
    for text in (out, err, caplog.text, *(p.read_text() for p in (tmp_path / "out").iterdir())):
        assert TOKEN not in text


def test_site_filter_and_skip_invalid(server: NetboxServer, token_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sites = ["--site", "pop-central", "--site", "pop-south"]
    assert run(server.url, token_file, out, *sites) == 65
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("dcim.cable #1: ends on device #2 'agg1', which is not imported "
                      "(another site, or a device with a problem above); include its site "
                      "or fix the cable")
    assert len(err) == 2 and "nothing was written" in err[1]
    assert not out.exists() or snapshot(out) == {}
    device_queries = {tuple(sorted(r.query.items())) for r in server.snapshot()
                      if r.path == "/api/dcim/devices/"}
    assert all(("site", "pop-central") in q for q in device_queries)

    assert run(server.url, token_file, out, *sites, "--skip-invalid", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["devices"], summary["links"], summary["subscribers"]) == (5, 3, 1)
    assert {(s["type"], s["id"]) for s in summary["skipped"]} == {
        ("dcim.cable", 1),  # the problem, now skipped: agg1 is in pop-north
        ("dcim.cable", 10), ("dcim.cable", 11), ("dcim.cable", 13), ("dcim.device", 13),
        ("tenancy.tenant", 1), ("tenancy.tenant", 2), ("tenancy.tenant", 4),
        ("tenancy.tenant", 5)}
    assert summary["problems"] == []
    assert summary["written"] == [str(out / "inventory.yaml"), str(out / "subscribers.csv")]
    inv = load_inventory([out / "inventory.yaml"])
    assert sorted(inv.devices) == ["agg2", "core1", "core2", "cpe-acme", "sw3"]
    assert inv.devices["agg2"].parents[0].device == "core1"
    assert list(inv.subscribers) == ["S-9001"]


# --- bad data from NetBox: one line naming the object, nothing written --------------------


def _cable_to_unknown_device(data: dict[str, Any]) -> None:
    cable = json.loads(json.dumps(data["cables"][0]))
    cable["id"] = 50
    cable["b_terminations"][0]["object"]["device"] = {
        "id": 99, "url": "http://netbox.example.net/api/dcim/devices/99/", "display": "agg9",
        "name": "agg9", "description": ""}
    data["cables"].append(cable)


def _duplicate_name(data: dict[str, Any]) -> None:
    dup = json.loads(json.dumps(data["devices"][3]))  # olt1
    dup["id"] = 40
    data["devices"].append(dup)


def _tenant_revenue(value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["tenants"][2]["custom_fields"]["monthly_revenue"] = value
    return change


def _unknown_role(data: dict[str, Any]) -> None:
    data["devices"][8]["role"] = {"id": 20, "url": "http://netbox.example.net/api/dcim/"
                                  "device-roles/20/", "display": "Firewall",
                                  "name": "Firewall", "slug": "firewall", "description": ""}


BAD = {
    "cable to a device not imported": (_cable_to_unknown_device, [
        "dcim.cable #50: ends on device #99 'agg9', which is not imported (another site, or "
        "a device with a problem above); include its site or fix the cable"]),
    "duplicate device names": (_duplicate_name, [
        "dcim.device #40 'olt1': duplicate name (also device #4); netreflex knows devices by "
        "name: rename one in NetBox"]),
    "revenue abc": (_tenant_revenue("abc"), [
        "tenancy.tenant #3 'Acme Logistics': custom field monthly_revenue: Input should be a "
        "valid number, unable to parse string as a number (got 'abc')"]),
    "negative revenue": (_tenant_revenue(-5), [
        "tenancy.tenant #3 'Acme Logistics': custom field monthly_revenue: Input should be "
        "greater than or equal to 0 (got -5)"]),
    "unknown role": (_unknown_role, [
        "dcim.device #9 'sw3': role 'firewall' has no netreflex role; map it in the mapping "
        "file (roles: {firewall: core|aggregation|access|cpe|passive|other}) or add it to "
        "skip_roles",
        # and so the cables to it point at a device that is not imported
        "dcim.cable #8: ends on device #9 'sw3', which is not imported (another site, or a "
        "device with a problem above); include its site or fix the cable",
        "dcim.cable #9: ends on device #9 'sw3', which is not imported (another site, or a "
        "device with a problem above); include its site or fix the cable"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_reported_per_object_and_old_files_stay(
        case: str, server: NetboxServer, token_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(server.url, token_file, out) == 0  # the files of a previous import
    before = snapshot(out)
    capsys.readouterr()
    change, expected = BAD[case]
    change(server.data)
    assert run(server.url, token_file, out) == 65
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == expected
    assert err[-1] == (f"netreflex: {len(expected)} problem(s) in NetBox's data (fix them in "
                       "NetBox, or --skip-invalid to leave those objects out); nothing was "
                       "written")
    assert snapshot(out) == before  # untouched, and no staging directory left behind


def test_a_second_import_replaces_both_files_and_keeps_their_mode(
        server: NetboxServer, token_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old_umask = os.umask(0o022)  # a permissive umask must not make contacts world-readable
    try:
        assert run(server.url, token_file, out) == 0
    finally:
        os.umask(old_umask)
    for name in ("subscribers.csv", "inventory.yaml"):
        assert (out / name).stat().st_mode & 0o777 == 0o640, name  # a new file: 0640
    (out / "subscribers.csv").chmod(0o600)  # the operator's choice is kept on replace
    server.data["tenants"][2]["custom_fields"]["monthly_revenue"] = 3500
    server.data["devices"][11]["name"] = "core9"  # core2 renamed
    assert run(server.url, token_file, out) == 0
    inv = load_inventory([out / "inventory.yaml"])
    assert inv.subscribers["S-9001"].monthly_revenue == 3500.0
    assert "core9" in inv.devices and "core2" not in inv.devices
    assert (out / "subscribers.csv").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["inventory.yaml", "subscribers.csv"]


def test_a_failed_rename_puts_the_old_files_back(
        server: NetboxServer, token_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(server.url, token_file, out) == 0
    before = snapshot(out)
    server.data["tenants"][0]["custom_fields"]["monthly_revenue"] = 31  # new content
    replace = os.replace

    def failing(src: Any, dst: Any) -> None:
        if Path(dst) == out / "inventory.yaml" and ".old" not in str(src):
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    capsys.readouterr()
    assert run(server.url, token_file, out) == 73
    assert capsys.readouterr().err.strip() == (
        f"netreflex: cannot replace the files in {out}: No space left on device; the old "
        "ones are unchanged")
    assert snapshot(out) == before  # subscribers.csv had been replaced: it is back


def test_dry_run_checks_and_writes_nothing(server: NetboxServer, token_file: Path,
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(server.url, token_file, out, "--dry-run") == 0
    stdout = capsys.readouterr().out
    assert "dry run: the files pass netreflex's inventory checks; nothing was written" in stdout
    assert not out.exists()


def test_refuses_to_replace_a_hand_written_inventory(
        server: NetboxServer, token_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "inventory.yaml").write_text("devices: {core1: {role: core}}\n")
    assert run(server.url, token_file, out) == 73
    assert "was not written by this importer" in capsys.readouterr().err
    assert (out / "inventory.yaml").read_text() == "devices: {core1: {role: core}}\n"
    assert server.snapshot() == []  # refused before asking NetBox


# --- NetBox cannot be asked -------------------------------------------------------------


def test_bad_token(server: NetboxServer, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("0000deadbeef0000deadbeef\n")
    assert run(server.url, wrong, tmp_path / "out") == 77
    out, err = capsys.readouterr()
    assert err.strip() == (
        f"netreflex: NetBox at {server.url} rejected the token read from {wrong} (HTTP 401: "
        "Invalid token); use an API token with read access to dcim and tenancy")
    assert "0000deadbeef" not in out + err
    assert not (tmp_path / "out" / "inventory.yaml").exists()


def test_unreadable_token_file(server: NetboxServer, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server.url, tmp_path / "missing.token", tmp_path / "out") == 77
    assert capsys.readouterr().err.strip() == (
        f"netreflex: cannot read the NetBox token from {tmp_path / 'missing.token'}: No such "
        "file or directory")
    assert server.snapshot() == []


def test_connection_refused(token_file: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(f"http://127.0.0.1:{port}", token_file, tmp_path / "out") == 69
    assert capsys.readouterr().err.strip() == (
        f"netreflex: cannot reach NetBox at http://127.0.0.1:{port}: Connection refused")


def test_url_that_is_not_http(token_file: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run("netbox.example.net", token_file, tmp_path / "out") == 64
    assert capsys.readouterr().err.strip() == (
        "netreflex: --url 'netbox.example.net': expected NetBox's base URL, e.g. "
        "https://netbox.example.net")


def test_not_netbox_404_on_api(token_file: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with NetboxServer(token=TOKEN, prefix="/netbox/api") as srv:  # /api/ is not there
        assert run(f"http://127.0.0.1:{srv.port}", token_file, tmp_path / "out") == 69
    assert capsys.readouterr().err.strip() == (
        f"netreflex: http://127.0.0.1:{srv.port}/api/status/ answered HTTP 404: is --url "
        "NetBox's base URL (e.g. https://netbox.example.net, without /api)?")


class HtmlServer(NetboxServer):
    """Something that answers 200 with a web page (a login page, a proxy's notice)."""

    async def _status(self, request: web.Request, _body: Any) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")


def test_not_netbox_html_answer(token_file: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with HtmlServer(token=TOKEN) as srv:
        assert run(srv.url, token_file, tmp_path / "out") == 69
    assert capsys.readouterr().err.strip() == (
        f"netreflex: {srv.url} answered something that is not JSON: is --url NetBox's base "
        "URL?")


def test_bad_mapping_file(server: NetboxServer, token_file: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("roles:\n  olt: acess\nskip_role: [pdu]\n")
    rc = main(["inventory", "import-netbox", "--url", server.url, "--token-file",
               str(token_file), "--out-dir", str(tmp_path / "out"), "--mapping", str(mapping)])
    assert rc == 78
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{mapping}:2: roles.olt: a netreflex role is one of core, "
                      "aggregation, access, cpe, passive, other (got 'acess')")
    assert err[1] == (f"{mapping}:3: skip_role: unknown key (check the spelling; see the "
                      "example in etc/)")
    assert server.snapshot() == []
