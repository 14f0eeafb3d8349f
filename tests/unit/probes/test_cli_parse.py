"""probes.cli: parsers against recorded outputs of real devices, what-changed, naming,
the command allowlist and the config model. No sockets."""

from __future__ import annotations

import collections
import io
import re
from importlib import resources
from pathlib import Path

import pytest
import textfsm  # type: ignore[import-untyped]
from pydantic import SecretStr, ValidationError

from probes.cli import COMMANDS, ONT_RX_DBM, ONT_STATE, CliProbeConfig, parse
from probes.cli import commands as cmds
from probes.cli.parse import Fact, OutputError
from probes.source import SourceError, parse_yaml, validate
from probes.types import (
    BGP_PEER_STATE,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_OPER_STATUS,
    OPTICAL_RX_DBM,
    REACHABLE,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cli"


def facts(platform: cmds.Platform, command_set: cmds.CommandSet, fixture: str) -> list[Fact]:
    text = (FIXTURES / platform / fixture).read_text(encoding="utf-8")
    return parse.parse(COMMANDS[platform][command_set], text)


def ports(found: list[Fact]) -> dict[str, tuple[int | float, str]]:
    return {f.instance: (f.value, f.labels["admin"]) for f in found if f.name == IF_OPER_STATUS}


def values(found: list[Fact], name: str) -> dict[str, int | float]:
    return {f.instance: f.value for f in found if f.name == name}


# --- golden: Cisco IOS --------------------------------------------------------------


def test_ios_show_interfaces_down_and_admin_down() -> None:
    found = facts("cisco_ios", "interfaces", "show_interfaces_1.raw")
    assert ports(found) == {
        "Te0/1": (2, "up"),
        "Gi0/0/0": (2, "down"),  # "administratively down"
        "Te0/0/13": (2, "up"),
    }
    assert values(found, IF_IN_ERRORS) == {"Te0/1": 0, "Gi0/0/0": 0, "Te0/0/13": 0}


def test_ios_show_interfaces_up_with_errors_and_descriptions() -> None:
    found = facts("cisco_ios", "interfaces", "show_interfaces_2.raw")
    opers = [f for f in found if f.name == IF_OPER_STATUS]
    assert [(f.instance, f.value, dict(f.labels)) for f in opers] == [
        ("Po1", 1, {"admin": "up", "alias": "Interface"}),
        ("Po1.13", 1, {"admin": "up", "alias": "SubInt"}),
    ]
    # The subinterface's block has no counters: none are made up for it.
    assert values(found, IF_IN_ERRORS) == {"Po1": 179928}
    assert values(found, IF_IN_FCS_ERRORS) == {"Po1": 21419}


def test_ios_show_ip_bgp_summary() -> None:
    found = facts("cisco_ios", "bgp", "show_ip_bgp_summary.raw")
    assert all(f.name == BGP_PEER_STATE for f in found)
    states = {f.instance: (f.value, f.labels["state"], f.labels["admin"]) for f in found}
    assert len(states) == 10
    assert states["10.0.0.1"] == (6, "established", "up")  # prefix count = Established
    assert states["10.0.0.3"] == (6, "established", "up")  # 0 prefixes is still Established
    assert states["10.0.0.10"] == (1, "idle", "down")  # "Idle (Admin)"
    assert sum(v == 6 for v, _, _ in states.values()) == 9
    assert next(f for f in found if f.instance == "10.0.0.5").labels["remote_as"] == "65004"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("show_interfaces_transceiver_1.raw",
         {"Te1/49": -3.0, "Te1/50": -2.6, "Te1/51": -2.1, "Te1/52": -2.8}),
        ("show_interfaces_transceiver_2.raw",
         {"Te1/1/1": -1.2, "Te1/1/2": -2.0, "Te1/1/3": -1.2, "Te2/1/1": -2.0, "Te2/1/2": -1.2}),
    ],
)
def test_ios_show_interfaces_transceiver(fixture: str, expected: dict[str, float]) -> None:
    found = facts("cisco_ios", "optics", fixture)
    assert values(found, OPTICAL_RX_DBM) == expected
    assert len(found) == len(expected)


# --- golden: Cisco IOS-XR -----------------------------------------------------------


def test_xr_show_interfaces_brief_uses_ifname_spelling() -> None:
    found = facts("cisco_xr", "interfaces", "show_interfaces_brief.raw")
    table = ports(found)
    assert len(table) == 102
    assert table["FortyGigE0/7/0/0"] == (2, "up")  # down/down: a fault
    assert table["MgmtEth0/RSP0/CPU0/1"] == (2, "down")  # admin-down: not one
    assert table["TenGigE0/3/0/11"] == (1, "up")
    assert table["tunnel-te419"] == (1, "up")
    assert table["Loopback5"] == (1, "up")
    assert collections.Counter(table.values()) == {(1, "up"): 55, (2, "down"): 46, (2, "up"): 1}


def test_xr_show_bgp_summary() -> None:
    found = facts("cisco_xr", "bgp", "show_bgp_summary.raw")
    assert {f.instance: (f.value, f.labels["state"]) for f in found} == {
        "10.10.17.161": (1, "idle"),
        "10.10.128.240": (3, "active"),
        "10.10.132.240": (6, "established"),
        "10.10.140.240": (6, "established"),
    }


# --- golden: Juniper Junos ----------------------------------------------------------


def test_junos_show_interfaces_terse_physical_and_logical() -> None:
    found = facts("juniper_junos", "interfaces", "show_interfaces_terse.raw")
    table = ports(found)
    assert len(table) == 19  # address continuation lines and the echoed prompt skipped
    assert table["ge-0/0/2"] == (2, "up")
    assert table["ge-0/0/1.0"] == (1, "up")
    assert table["lo0.16385"] == (1, "up")
    assert [name for name, state in table.items() if state != (1, "up")] == ["ge-0/0/2"]


def test_junos_show_bgp_summary_keeps_the_last_of_a_repeated_peer() -> None:
    found = facts("juniper_junos", "bgp", "show_bgp_summary.raw")
    assert len(found) == 6  # the recording names 203.0.113.0 twice
    assert {f.value for f in found} == {6}
    state, reported = parse.changes(None, found)
    assert len(state) == len(reported) == 5
    assert {f.labels["remote_as"] for f in found} == {"64496"}


def test_junos_optics_sfp_module_level() -> None:
    found = facts("juniper_junos", "optics", "show_interfaces_diagnostics_optics_1.raw")
    # Not the "Laser rx power ... threshold" lines that follow.
    assert [(f.instance, f.value, dict(f.labels)) for f in found] == [("xe-0/1/7", -2.32, {})]


def test_junos_optics_qsfp_per_lane() -> None:
    found = facts("juniper_junos", "optics", "show_interfaces_diagnostics_optics_2.raw")
    assert [(f.instance, f.value, dict(f.labels)) for f in found] == [
        ("et-0/0/0", 1.03, {"channel": "0"}),
        ("et-0/0/0", 0.72, {"channel": "1"}),
        ("et-0/0/0", 0.97, {"channel": "2"}),
        ("et-0/0/0", 1.36, {"channel": "3"}),
    ]
    assert len(parse.changes(None, found)[0]) == 4  # lanes are distinct facts


def test_junos_no_light_is_a_floor_value() -> None:
    text = (
        "Physical interface: xe-0/0/3\n"
        "    Receiver signal average optical power     :  0.0000 mW / - Inf dBm\n"
    )
    found = parse.parse(COMMANDS["juniper_junos"]["optics"], text)
    assert [(f.instance, f.value) for f in found] == [("xe-0/0/3", parse.NO_LIGHT_DBM)]


# --- golden: Huawei VRP -------------------------------------------------------------


def test_huawei_display_interface_brief() -> None:
    found = facts("huawei", "interfaces", "display_interface_brief.raw")
    table = ports(found)
    assert len(table) == 18
    assert table["Eth-Trunk4"] == (2, "up")  # PHY up, protocol down
    assert table["GigabitEthernet16/0/1"] == (1, "up")  # "(10G)" suffix dropped
    assert "GigabitEthernet16/0/1(10G)" not in table
    assert [n for n, s in table.items() if s != (1, "up")] == ["Aux0/0/1", "Eth-Trunk4", "Eth-Trunk5"]
    errors = {k: v for k, v in values(found, IF_IN_ERRORS).items() if v}
    assert errors == {"Eth-Trunk4": 4625, "GigabitEthernet16/0/1": 4625}


def test_huawei_interface_brief_admin_down_standby_and_unknown_legend() -> None:
    text = (
        "PHY: Physical\n*down: administratively down\n(ms): MACsec down\n"
        "Interface                   PHY   Protocol  InUti OutUti   inErrors  outErrors\n"
        "GigabitEthernet0/0/1        *down down         0%     0%          0          0\n"
        "GigabitEthernet0/0/2        ^down down         0%     0%          0          0\n"
        "Vlanif10                    up    up(s)        0%     0%          0          0\n"
    )
    table = ports(parse.parse(COMMANDS["huawei"]["interfaces"], text))
    assert table == {
        "GigabitEthernet0/0/1": (2, "down"),
        "GigabitEthernet0/0/2": (5, "up"),  # standby: dormant
        "Vlanif10": (1, "up"),
    }


@pytest.mark.parametrize(
    ("fixture", "established"),
    [("display_bgp_peer_1.raw", "10.2.2.2"), ("display_bgp_peer_2.raw", "10.2.5.6")],
)
def test_huawei_display_bgp_peer(fixture: str, established: str) -> None:
    found = facts("huawei", "bgp", fixture)
    assert {f.instance: f.value for f in found} == {"10.1.1.1": 1, established: 6}
    assert {f.labels["remote_as"] for f in found} == {"100", "200"}


# --- golden: Huawei SmartAX OLT -----------------------------------------------------


def test_smartax_ont_summary_offline_los_and_rx_power() -> None:
    found = facts("huawei_smartax", "ont", "display_ont_info_summary_1.raw")
    assert [(f.name, f.instance, f.value, dict(f.labels)) for f in found] == [
        (ONT_STATE, "0/1/0/0", 1, {}),
        (ONT_STATE, "0/1/0/1", 2, {"last_down_cause": "LOS"}),  # "LOSi/LOBi": the fibre
        (ONT_RX_DBM, "0/1/0/0", -22.84, {}),  # the offline ONT has "-/-": nothing
    ]


def test_smartax_ont_summary_several_ports() -> None:
    found = facts("huawei_smartax", "ont", "display_ont_info_summary_2.raw")
    assert values(found, ONT_STATE) == {"0/2/11/0": 1, "0/2/12/0": 1}
    assert values(found, ONT_RX_DBM) == {"0/2/11/0": -7.92, "0/2/12/0": -7.92}


def test_smartax_ont_summary_dying_gasp_history() -> None:
    found = facts("huawei_smartax", "ont", "display_ont_info_summary_3.raw")
    states = [f for f in found if f.name == ONT_STATE]
    assert len(states) == 37
    offline = [f for f in states if f.value == parse.ONT_OFFLINE]
    assert [(f.instance, dict(f.labels)) for f in offline] == [("0/1/0/27", {})]
    assert {f.labels.get("last_down_cause") for f in states if f.value == 1} == {"dying-gasp"}
    assert len(values(found, ONT_RX_DBM)) == 36


@pytest.mark.parametrize("n", [1, 2, 3])
def test_smartax_run_states_agree_with_the_ntc_template(n: int) -> None:
    text = (FIXTURES / "huawei_smartax" / f"display_ont_info_summary_{n}.raw").read_text()
    template = resources.files("ntc_templates") / "templates" / (
        "huawei_smartax_display_ont_info_summary_ont.textfsm"
    )
    rows = textfsm.TextFSM(io.StringIO(template.read_text())).ParseTextToDicts(text)
    theirs = {f"{r['PORT']}/{r['ONT_ID']}": r["RUN_STATE"] for r in rows}
    ours = {
        f.instance: "online" if f.value == parse.ONT_ONLINE else "offline"
        for f in parse.parse(COMMANDS["huawei_smartax"]["ont"], text)
        if f.name == ONT_STATE
    }
    assert ours == theirs


def test_smartax_ont_without_description_is_still_read() -> None:
    # ntc-templates' template stops (Error) on this row; ours does not.
    text = (FIXTURES / "huawei_smartax" / "display_ont_info_summary_1.raw").read_text()
    text = text.replace("-22.84/2.12  P612E                ", "-22.84/2.12")
    assert values(parse.parse(COMMANDS["huawei_smartax"]["ont"], text), ONT_RX_DBM) == {
        "0/1/0/0": -22.84
    }


@pytest.mark.parametrize(
    ("text", "label"),
    [("dying-gasp", "dying-gasp"), ("LOSi/LOBi", "LOS"), ("LOS", "LOS"), ("-", ""),
     ("", ""), ("ONT is reset by ONT comma", "ONT is reset by ONT comma")],
)
def test_down_cause_labels(text: str, label: str) -> None:
    assert parse.down_cause(text) == label


# --- output we cannot use -----------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "command_set", "text"),
    [
        ("cisco_ios", "optics", "                ^\n% Invalid input detected at '^' marker.\n"),
        ("cisco_xr", "bgp", "% Invalid input detected at '^' marker."),
        ("juniper_junos", "optics", "syntax error, expecting <command>."),
        ("huawei", "bgp", "Error: Unrecognized command found at '^' position."),
        ("huawei_smartax", "ont", "% Unknown command, the error locates at '^'"),
    ],
)
def test_refused_commands_are_rejected(
    platform: cmds.Platform, command_set: cmds.CommandSet, text: str
) -> None:
    with pytest.raises(OutputError) as caught:
        parse.parse(COMMANDS[platform][command_set], text)
    assert caught.value.reason == "rejected"
    assert COMMANDS[platform][command_set].text in caught.value.detail


@pytest.mark.parametrize(
    ("platform", "text"),
    [("cisco_ios", "% BGP not active\n"), ("juniper_junos", "BGP is not running\n"),
     ("huawei", "Info: BGP is not configured.\n")],
)
def test_no_bgp_is_no_peers(platform: cmds.Platform, text: str) -> None:
    assert parse.parse(COMMANDS[platform]["bgp"], text) == []


def test_empty_optics_is_no_optics_but_empty_interfaces_is_unparsed() -> None:
    assert parse.parse(COMMANDS["cisco_ios"]["optics"], "") == []
    with pytest.raises(OutputError) as caught:
        parse.parse(COMMANDS["cisco_ios"]["interfaces"], "\n")
    assert caught.value.reason == "unparsed"


@pytest.mark.parametrize(
    ("platform", "command_set"),
    [("cisco_ios", "interfaces"), ("juniper_junos", "interfaces"), ("huawei_smartax", "ont")],
)
def test_unrecognised_output_is_unparsed(
    platform: cmds.Platform, command_set: cmds.CommandSet
) -> None:
    with pytest.raises(OutputError) as caught:
        parse.parse(COMMANDS[platform][command_set], "Building configuration...\nhostname r1\n")
    assert caught.value.reason == "unparsed"
    assert "no row recognised" in caught.value.detail


def test_a_template_error_state_is_unparsed_not_a_crash() -> None:
    # The XR BGP template ends in Error on a neighbor line it does not expect (IPv6).
    text = (FIXTURES / "cisco_xr" / "show_bgp_summary.raw").read_text()
    broken = text + "\n2001:db8::1       0 64999   12345   12345    94623    0    0     7w2d         10"
    with pytest.raises(OutputError) as caught:
        parse.parse(COMMANDS["cisco_xr"]["bgp"], broken)
    assert caught.value.reason == "unparsed"
    assert "cisco_xr_show_ip_bgp_summary.textfsm" in caught.value.detail


# --- what changed -------------------------------------------------------------------


def port(name: str, oper: int, admin: str = "up") -> Fact:
    return Fact(IF_OPER_STATUS, name, oper, {"admin": admin})


def test_first_read_is_a_baseline_then_only_changes() -> None:
    first = [port("Gi0/1", 1), port("Gi0/2", 1), Fact(IF_IN_ERRORS, "Gi0/1", 5)]
    state, reported = parse.changes(None, first)
    assert reported == first
    state, reported = parse.changes(state, first)
    assert reported == []
    state, reported = parse.changes(
        state, [port("Gi0/1", 1), port("Gi0/2", 2), Fact(IF_IN_ERRORS, "Gi0/1", 9)]
    )
    assert reported == [port("Gi0/2", 2), Fact(IF_IN_ERRORS, "Gi0/1", 9)]


def test_label_changes_are_changes_and_new_instances_are_reported() -> None:
    state, _ = parse.changes(None, [port("Gi0/1", 2)])
    _, reported = parse.changes(state, [port("Gi0/1", 2, admin="down"), port("Gi0/9", 1)])
    assert reported == [port("Gi0/1", 2, admin="down"), port("Gi0/9", 1)]


def test_vanished_instances_are_dropped_quietly() -> None:
    state, _ = parse.changes(None, [port("Gi0/1", 1), port("Gi0/2", 1)])
    state, reported = parse.changes(state, [port("Gi0/1", 1)])
    assert reported == []
    assert list(state) == [(IF_OPER_STATUS, "Gi0/1", "")]
    _, back = parse.changes(state, [port("Gi0/1", 1), port("Gi0/2", 1)])
    assert back == [port("Gi0/2", 1)]


def test_optical_levels_have_a_deadband_against_the_last_reported_value() -> None:
    rx = [Fact(OPTICAL_RX_DBM, "Te1/1", -3.0)]
    state, _ = parse.changes(None, rx)
    state, reported = parse.changes(state, [Fact(OPTICAL_RX_DBM, "Te1/1", -3.3)])
    assert reported == []
    assert state[(OPTICAL_RX_DBM, "Te1/1", "")].value == -3.0  # the reported one is kept
    state, reported = parse.changes(state, [Fact(OPTICAL_RX_DBM, "Te1/1", -3.6)])
    assert reported == [Fact(OPTICAL_RX_DBM, "Te1/1", -3.6)]  # drifted 0.6 from -3.0
    # Counters and states have no deadband.
    state, _ = parse.changes(None, [Fact(IF_IN_FCS_ERRORS, "Te1/1", 1)])
    assert parse.changes(state, [Fact(IF_IN_FCS_ERRORS, "Te1/1", 2)])[1] != []


def test_observations_are_stamped_with_device_time_and_source() -> None:
    obs = parse.observation("r1", 12.5, port("Gi0/1", 2))
    assert (obs.device, obs.source, obs.name, obs.instance, obs.value, obs.ts) == (
        "r1", "cli", IF_OPER_STATUS, "Gi0/1", 2, 12.5,
    )
    assert dict(obs.labels) == {"admin": "up"}
    up = parse.reachable("r1", 1.0, answered=False, reason="timeout")
    assert (up.name, up.value, dict(up.labels)) == (REACHABLE, 0, {"reason": "timeout"})


# --- interface names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "name", "expected"),
    [
        ("cisco_ios", "GigabitEthernet0/0/0", "Gi0/0/0"),
        ("cisco_ios", "TenGigabitEthernet1/49", "Te1/49"),
        ("cisco_ios", "Port-channel1.13", "Po1.13"),
        ("cisco_ios", "Te1/49", "Te1/49"),  # already short
        ("cisco_ios", "Embedded-Service-Engine0/0", "Embedded-Service-Engine0/0"),  # unknown
        ("cisco_xr", "Te0/3/0/11", "TenGigE0/3/0/11"),
        ("cisco_xr", "BE100", "Bundle-Ether100"),
        ("cisco_xr", "Mg0/RSP0/CPU0/0", "MgmtEth0/RSP0/CPU0/0"),
        ("cisco_xr", "GigabitEthernet0/0/0/0", "GigabitEthernet0/0/0/0"),  # already long
        ("huawei", "GigabitEthernet15/1/0(10G)", "GigabitEthernet15/1/0"),
        ("juniper_junos", "ge-0/0/1.0", "ge-0/0/1.0"),
    ],
)
def test_interface_names_follow_snmp_ifname(
    platform: cmds.Platform, name: str, expected: str
) -> None:
    assert parse.canonical_interface(platform, name) == expected


# --- the command allowlist -----------------------------------------------------------


def test_every_allowed_command_is_a_fixed_string_with_a_parser() -> None:
    for platform, sets in COMMANDS.items():
        for command_set, command in sets.items():
            assert (command.platform, command.command_set) == (platform, command_set)
            assert re.fullmatch(r"(show|display) [a-z0-9 -]+", command.text), command.text
            assert (platform, command_set) in parse._PARSERS
    assert set(cmds.PLATFORMS) == set(COMMANDS) == set(cmds.NETMIKO_DEVICE_TYPE)


@pytest.mark.parametrize("platform", cmds.PLATFORMS)
def test_installed_ntc_templates_have_what_we_use(platform: cmds.Platform) -> None:
    assert parse.check_templates(platform) == []


def test_commands_for_defaults_to_everything_and_refuses_what_a_platform_lacks() -> None:
    assert [c.text for c in cmds.commands_for("cisco_ios", None)] == [
        "show interfaces", "show interfaces transceiver", "show ip bgp summary",
    ]
    assert [c.command_set for c in cmds.commands_for("juniper_junos", ["bgp", "interfaces"])] == [
        "interfaces", "bgp",
    ]
    with pytest.raises(ValueError, match=r"cisco_xr has no optics command set \(available: "
                       r"interfaces, bgp\)"):
        cmds.commands_for("cisco_xr", ["optics"])


# --- config --------------------------------------------------------------------------


def test_config_defaults_and_secret() -> None:
    config = CliProbeConfig(platform="cisco_ios", username="u", password=SecretStr("pw-x"))
    assert (config.kind, config.port, config.timeout, config.commands) == ("cli", 22, 30.0, None)
    assert "pw-x" not in repr(config)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give password or key_file"),
        ({"password": "p", "commands": ["ont"]}, "cisco_ios has no ont command set"),
        ({"password": "p", "commands": []}, "at least one command set"),
        ({"password": "p", "key_passphrase": "x"}, "key_passphrase is set but key_file is not"),
        ({"password": "p", "key_file": "/nonexistent/id_ed25519"}, "file not found"),
        ({"password": "p", "commmands": ["bgp"]}, "Extra inputs are not permitted"),
        ({"password": "p", "timeout": 0}, "greater than 0"),
    ],
)
def test_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CliProbeConfig.model_validate({"platform": "cisco_ios", "username": "u", **fields})


def test_config_from_yaml_resolves_the_key_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "noc_ed25519").write_text("not really a key")
    src = parse_yaml(
        "platform: juniper_junos\nusername: noc\nkey_file: keys/noc_ed25519\n"
        "commands: [interfaces, bgp]\n",
        str(tmp_path / "devices.yaml"),
    )
    config = validate(CliProbeConfig, src)
    assert config.key_file == str(tmp_path / "keys" / "noc_ed25519")
    assert config.commands == ("interfaces", "bgp")
    bad = parse_yaml("platform: huawei\nusername: noc\npassword: p\ncommands: [optics]\n",
                     str(tmp_path / "devices.yaml"))
    with pytest.raises(SourceError, match=r"devices.yaml:4: commands: huawei has no optics command set"):
        validate(CliProbeConfig, bad)
    secret = parse_yaml("platform: huawei\nusername: noc\npassword: Pw-0a1b\nkey_passphrase: Kp-9z8y\n",
                        str(tmp_path / "devices.yaml"))
    with pytest.raises(SourceError) as caught:
        validate(CliProbeConfig, secret)
    assert "key_passphrase is set but key_file is not" in str(caught.value)
    assert "Kp-9z8y" not in str(caught.value) and "Pw-0a1b" not in str(caught.value)
