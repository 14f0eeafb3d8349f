"""`netreflex check`: every problem as file:line: path: message (got …), exit 78."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from collector.cli import main
from collector.config import load_config
from probes.source import SourceError

ETC = Path(__file__).resolve().parents[3] / "etc"


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    shutil.copytree(ETC, tmp_path / "etc")
    return tmp_path / "etc"


def test_shipped_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ETC / "netreflex.yaml")]) == 0
    out = capsys.readouterr().out
    rules = len(yaml.safe_load((ETC / "policy.yaml").read_text())["rules"])
    assert f"ok (6 polled device(s), 6 inventory device(s), 8 subscriber(s), {rules} rule(s))" \
        in out


def test_secrets_are_read_from_files_relative_to_the_config(etc: Path) -> None:
    s = load_config(etc / "netreflex.yaml")
    cred = s.config.credentials["core-v3"]
    assert cred.version == "3"
    assert cred.auth_key.get_secret_value() == "change-me-core-auth"
    assert "change-me" not in repr(s.config)  # secrets never in reprs (and so not in logs)


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["check", str(path)]) == 78
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("netreflex: ") and "nothing was started" in err[-1]
    return err[:-1]


def test_unknown_key_wrong_type_and_bad_address(etc: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = etc / "netreflex.yaml"
    text = cfg.read_text()
    text = text.replace("  log_level: info", "  log_levl: info")
    text = text.replace("  interval: 60 ", "  interval: soon ")
    text = text.replace("address: 192.0.2.11", "address: 192.0.2.300")
    cfg.write_text(text)
    lines = check(cfg, capsys)
    ln = {name: i + 1 for i, line in enumerate(text.splitlines())
          for name in ("log_levl", "interval: soon", "192.0.2.300") if name in line}
    assert lines == [
        f"{cfg}:{ln['log_levl']}: daemon.log_levl: unknown key (check the spelling; see the "
        "example in etc/)",
        f"{cfg}:{ln['interval: soon']}: polling.interval: Input should be a valid number, "
        "unable to parse string as a number (got 'soon')",
        f"{cfg}:{ln['192.0.2.300']}: devices.agg1.address: expected an IPv4 or IPv6 address "
        "(got '192.0.2.300')",
    ]


def test_dangling_references_across_files(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = etc / "netreflex.yaml"
    cfg.write_text(cfg.read_text().replace("credentials: access-v2c, timeout: 3",
                                           "credentials: acess-v2c, timeout: 3", 1))
    inv = etc / "inventory.yaml"
    inv.write_text(inv.read_text().replace("parents: [agg1, agg2]", "parents: [agg1, agg3]"))
    csv = etc / "subscribers.csv"
    csv.write_text(csv.read_text().replace("S-2001,A-2001,L. Novak,olt2,pon0/1",
                                           "S-2001,A-2001,L. Novak,olt2,pon9/9"))
    lines = check(cfg, capsys)
    assert any(l.startswith(f"{cfg}:") and "devices.olt1.probes[0].credentials: unknown "
               "credentials (defined: access-v2c, core-v3) (got 'acess-v2c')" in l for l in lines)
    assert any(l.startswith(f"{inv}:") and "devices.olt2.parents[1]: unknown parent device"
               in l and "'agg3'" in l for l in lines)
    assert any(l.startswith(f"{csv}:6: subscriber S-2001.port: device olt2 has no such port")
               for l in lines)


def test_polled_device_must_be_in_the_inventory(etc: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = etc / "netreflex.yaml"
    text = cfg.read_text().replace("  sw3:\n    address", "  sw9:\n    address")
    cfg.write_text(text)
    line = next(i + 1 for i, l in enumerate(text.splitlines()) if l == "  sw9:")
    assert check(cfg, capsys) == [
        f"{cfg}:{line}: devices.sw9: device is not in the inventory; add it there (with its "
        "parents) or fix the name"
    ]


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("daemon:\n  state_dir: /tmp\n  state_dir: /var\n")
    assert check(bad, capsys) == [
        f"{bad}:3: daemon.state_dir: duplicate key (the first one is on line 2); "
        "remove one of them"
    ]
    bad.write_text("daemon: [unclosed\n")
    (line,) = check(bad, capsys)
    assert line.startswith(f"{bad}:2: YAML syntax error")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(tmp_path / "nope.yaml", capsys) == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_missing_secret_file_names_the_field_not_the_secret(
    etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (etc / "secrets" / "snmp-core-priv.key").unlink()
    (line,) = check(etc / "netreflex.yaml", capsys)
    assert "credentials.core-v3.priv_key: cannot read secret file" in line
    assert "change-me" not in line


def test_inventory_cycle_and_duplicate_subscriber(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "devices:\n"
        "  a: {parents: [c]}\n"
        "  b: {parents: [a]}\n"
        "  c: {parents: [b]}\n"
        "subscribers:\n"
        "  - {id: s1, device: a, port: p1, monthly_revenue: 10}\n"
        "  - {id: s1, device: b, port: p1, monthly_revenue: -5}\n"
    )
    from correlator.inventory import load_inventory

    with pytest.raises(SourceError) as err:
        load_inventory([inv])
    text = str(err.value)
    assert f"{inv}:7: subscribers[1].monthly_revenue: Input should be greater than or equal to 0 (got -5)" in text
    with pytest.raises(SourceError) as err:
        inv.write_text(inv.read_text().replace("monthly_revenue: -5", "monthly_revenue: 5"))
        load_inventory([inv])
    text = str(err.value)
    assert "parent links form a cycle: " in text
    assert f"{inv}:7: subscriber s1: duplicate subscriber id (first at {inv}:6)" in text


def test_model_level_errors_never_echo_the_section(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import model_validator

    from probes.source import Secret, Strict, parse_yaml, validate

    class Creds(Strict):
        user: str
        password: Secret

        @model_validator(mode="after")
        def _no_admin(self) -> Creds:
            raise ValueError("user admin is not allowed")

    src = parse_yaml("creds:\n  user: admin\n  password: hunter2-secret\n", "c.yaml")

    class Root(Strict):
        creds: Creds

    with pytest.raises(SourceError) as err:
        validate(Root, src)
    assert str(err.value) == "c.yaml:1: creds: user admin is not allowed"
    assert "hunter2" not in str(err.value)
