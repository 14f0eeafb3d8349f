"""probes.syslog parsing, framing and rules against recorded lines of real devices."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.source import SourceError, parse_yaml, validate
from probes.syslog import (
    BGP_PEER_STATE,
    BUILTIN_RULES,
    Matcher,
    Rule,
    SyslogConfig,
    SyslogParseError,
    TcpFramer,
    cisco_ios_ifname,
    configured_rules,
    load_rule_file,
    parse_message,
)
from probes.syslog.match import literal_prefix
from probes.types import DEVICE_RESTARTED, IF_OPER_STATUS, Observation
from tests.unit.probes.snmp_fakes import load_snmprec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "syslog"
TS = 1_700_000_000.0
BUILTIN = Matcher(load_rule_file(BUILTIN_RULES))
HEADER_FIELDS = ("facility", "severity", "version", "timestamp", "hostname", "app_name",
                 "procid", "msgid", "structured_data", "msg")


def golden_cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for i, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            cases.append(pytest.param(case, id=f"{path.stem}[{i}]"))
    return cases


GOLDEN = golden_cases()


def test_the_golden_files_cover_every_builtin_rule() -> None:
    fired = {c.values[0]["observation"]["labels"]["rule"] for c in GOLDEN
             if c.values[0]["observation"]}
    assert {r.name for r in BUILTIN.rules} - fired == set()
    assert len(GOLDEN) >= 50


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_line(case: dict[str, Any]) -> None:
    message = parse_message(case["line"].encode())
    assert {f: getattr(message, f) for f in HEADER_FIELDS} == case["parsed"]
    obs = BUILTIN.match(message, device="dev1", ts=TS)
    expected = case["observation"]
    if expected is None:
        assert obs is None
    else:
        assert obs == Observation("dev1", "syslog", expected["name"], expected["instance"],
                                  expected["value"], TS, expected["labels"])


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"<>x", b"<13", b"<1a>x", b"<192>x", b"<1234>x", b"<13>", b"<13>   \n",
     b"13> x", b"\x00\xff\xfe", "<\u00b2>x".encode(), b"<13>1 - - - - - -"],
)
def test_not_syslog_raises_parse_error(data: bytes) -> None:
    with pytest.raises(SyslogParseError):
        parse_message(data)


def test_pri_is_split_into_facility_and_severity() -> None:
    assert (parse_message(b"<0>x").facility, parse_message(b"<0>x").severity) == (0, 0)
    m = parse_message(b"<191>x")
    assert (m.facility, m.severity, m.msg) == (23, 7, "x")


def test_bad_utf8_is_replaced_not_fatal() -> None:
    assert parse_message(b"<13>Jan  1 00:00:00 h t: caf\xe9").msg == "caf\ufffd"


def test_rfc5424_bom_nil_fields_and_escaped_structured_data() -> None:
    m = parse_message('<165>1 2003-10-11T22:14:15.003Z - - - ID47 '
                      '[x@1 a="q\\"]" b="\\\\"][y@2] \ufeffmsg'.encode())
    assert (m.version, m.hostname, m.app_name, m.procid, m.msgid) == (1, None, None, None,
                                                                      "ID47")
    assert m.structured_data == '[x@1 a="q\\"]" b="\\\\"][y@2]'
    assert m.msg == "msg"


def test_rfc5424_that_does_not_parse_falls_back_to_the_whole_text() -> None:
    m = parse_message(b"<13>1 not a header")
    assert (m.version, m.msg) == (0, "1 not a header")


def test_udp_message_keeps_embedded_newlines() -> None:
    m = parse_message(b"<189>5: *Mar  1 00:00:01.123: %SYS-5-RESTART: System restarted --\n"
                      b"Cisco IOS Software, C3560 Software\n")
    assert m.msg == "%SYS-5-RESTART: System restarted --\nCisco IOS Software, C3560 Software"
    assert BUILTIN.match(m, device="d", ts=TS) is not None


# --- fuzz -----------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_only_ever_raise_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SyslogParseError:
        return
    assert 0 <= message.facility <= 23 and 0 <= message.severity <= 7
    BUILTIN.match(message, device="d", ts=TS)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text_only_ever_raises_parse_error(text: str) -> None:
    try:
        message = parse_message(text.encode("utf-8", "surrogatepass"))
    except SyslogParseError:
        return
    assert text.startswith("<") and message.msg in text


_ALPHABET = st.sampled_from(list("<>0123456789 :-[]=\"\\.*%/TZ+()\n\r\t\x00abcJanMay"))


@settings(max_examples=600, deadline=None)
@given(st.integers(0, 191), st.text(_ALPHABET, max_size=120), st.text(max_size=40))
def test_fuzz_headers_parse_and_keep_the_message(pri: int, head: str, tail: str) -> None:
    """With a valid PRI, any text parses; the message is a suffix of what was sent."""
    text = f"<{pri}>{head}{tail}"
    try:
        message = parse_message(text.encode())
    except SyslogParseError:
        assert not text.rstrip("\r\n\x00 ")[len(f"<{pri}>"):].strip()
        return
    assert (message.facility, message.severity) == divmod(pri, 8)
    assert text.rstrip("\r\n\x00 ").endswith(message.msg)
    BUILTIN.match(message, device="d", ts=TS)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(GOLDEN), st.integers(0, 400), st.binary(max_size=8))
def test_fuzz_mutated_golden_lines(case: Any, at: int, junk: bytes) -> None:
    """Junk inserted anywhere: a parse error only if it broke the PRI; else the message
    is still the tail of what was sent."""
    line = case.values[0]["line"].encode()
    at %= len(line) + 1
    mutated = line[:at] + junk + line[at:]
    try:
        message = parse_message(mutated)
    except SyslogParseError:
        assert at <= line.index(b">"), "junk after an intact <PRI> must still parse"
        return
    assert mutated.decode("utf-8", "replace").rstrip("\r\n\x00 ").endswith(message.msg)


def test_pathological_lines_take_linear_time() -> None:
    """No header or rule regex backtracks badly on long repetitive input. Lines are 64 KiB
    (the largest max_message_size): here each takes < 40 ms; a quadratic rule (Junos'
    BGP rule once had an unbounded ``\\([^)]*\\)``) took 750 ms on one of them."""
    units = [b"1: ", b"Jan  1 ", b"a: ", b"A/B/C/D:", b"x", b'[a a="\\\\', b"ether1 ",
             b"%BGP-5-ADJCHANGE: ", b"BGP peer 1.1.1.1 (", b"%ADJCHANGE: neighbor 1.1.1.1(",
             b"ifIndex 1, ifAdminStatus up(1), ", b"neighbor 1.1.1.1 ",
             b"The status of the peer 1.1.1.1 changed from "]
    size = 65536
    lines = [b"<13>" + (u * (size // len(u)))[:size - 4] for u in units]
    lines += [b"<13>1 - h a p m " + (u * (size // len(u)))[:size - 16] for u in units]
    slowest = 0.0
    for line in lines:
        start = time.perf_counter()
        BUILTIN.match(parse_message(line), device="d", ts=TS)
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 0.25


# --- TCP framing (RFC 6587) -----------------------------------------------------------


def octet(msg: bytes) -> bytes:
    return str(len(msg)).encode() + b" " + msg


def test_framing_octet_counting_and_lf_mixed() -> None:
    framer = TcpFramer(max_size=100)
    stream = octet(b"<13>one\nwith LF inside") + b"<13>two\n" + octet(b"<13>three")
    assert framer.feed(stream) == [b"<13>one\nwith LF inside", b"<13>two", b"<13>three"]
    assert framer.flush() == []


def test_framing_waits_for_the_rest_and_flushes_an_unterminated_line() -> None:
    framer = TcpFramer(max_size=100)
    assert framer.feed(b"10 <13>he") == []
    assert framer.feed(b"llo!<13>tail") == [b"<13>hello!"]
    assert framer.feed(b" end") == []
    assert framer.flush() == [b"<13>tail end"]


def test_framing_cuts_long_frames_and_resynchronises() -> None:
    framer = TcpFramer(max_size=10)
    long_lf = b"<13>" + b"x" * 30 + b"\n"
    out = framer.feed(long_lf + octet(b"<13>" + b"y" * 20) + b"<13>ok\n")
    assert out == [long_lf[:10], (b"<13>" + b"y" * 20)[:10], b"<13>ok"]
    assert framer.truncated == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.randoms(use_true_random=False))
def test_fuzz_framing_never_raises_and_stays_bounded(stream: bytes, rnd: random.Random) -> None:
    framer = TcpFramer(max_size=64)
    pos = 0
    while pos < len(stream):
        step = rnd.randint(1, 200)
        frames = framer.feed(stream[pos:pos + step])
        pos += step
        assert all(len(f) <= 64 for f in frames)
        assert framer.buffered <= 64 + 11
    assert all(len(f) <= 64 for f in framer.flush())
    assert framer.buffered == 0


def test_framing_digits_that_are_not_a_length_are_a_line() -> None:
    framer = TcpFramer(max_size=100)
    assert framer.feed(b"2024-01-01 not counted\n12345678901 x\n") == [
        b"2024-01-01 not counted", b"12345678901 x"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=60)), max_size=12),
    st.randoms(use_true_random=False),
)
def test_framing_is_independent_of_how_tcp_splits_the_stream(
    frames: list[tuple[bool, bytes]], rnd: random.Random
) -> None:
    messages = []
    stream = b""
    for counted, body in frames:
        if counted:
            messages.append(body)
            stream += octet(body)
        else:  # LF framing: a body without LF (a syslog line starts with "<")
            body = b"<" + body.replace(b"\n", b"")
            messages.append(body)
            stream += body + b"\n"
    framer = TcpFramer(max_size=1000)
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rnd.randint(1, 7)
        out += framer.feed(stream[pos:pos + step])
        pos += step
    out += framer.flush()
    assert out == messages


# --- interface names --------------------------------------------------------------------


def test_cisco_ios_ifname_matches_ifdescr_to_ifname_of_a_real_3560() -> None:
    rows = load_snmprec("cisco-c3560.snmprec")
    descr = {oid.rsplit(".", 1)[1]: v for oid, v in rows.items()
             if oid.startswith("1.3.6.1.2.1.2.2.1.2.")}
    name = {oid.rsplit(".", 1)[1]: v for oid, v in rows.items()
            if oid.startswith("1.3.6.1.2.1.31.1.1.1.1.")}
    pairs = [(bytes(descr[i]).decode(), bytes(name[i]).decode())  # type: ignore[arg-type]
             for i in descr]
    assert len(pairs) == 57
    assert [(d, cisco_ios_ifname(d)) for d, _ in pairs] == pairs


@pytest.mark.parametrize(("long", "short"), [
    ("GigabitEthernet1/0/1", "Gi1/0/1"), ("TenGigabitEthernet1/1/4", "Te1/1/4"),
    ("FastEthernet0/1", "Fa0/1"), ("Port-channel10", "Po10"), ("Vlan100", "Vl100"),
    ("Loopback0", "Lo0"), ("HundredGigE1/0/49", "Hu1/0/49"), ("Tunnel7", "Tu7"),
    ("GigabitEthernet0/0.100", "Gi0/0.100"), ("Serial0/0/0:1", "Se0/0/0:1"),
    ("gigabitethernet0/1", "Gi0/1"),
    ("Gi0/1", "Gi0/1"), ("ge-0/0/1", "ge-0/0/1"), ("Ethernet", "Ethernet"),
    ("Bundle-Ether1", "Bundle-Ether1"), ("", ""),
])
def test_cisco_ios_ifname(long: str, short: str) -> None:
    assert cisco_ios_ifname(long) == short


# --- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("%LINK-\\d-UPDOWN", "%LINK-"), ("ifIndex (?P<i>\\d+)", "ifIndex "), ("a|b", ""),
    ("abc(d|e)|f", ""), ("x[|]y", "x"), ("[]|]a", ""), ("ab*c", "a"), ("ab?", "a"),
    ("ab{2}", "a"), ("a\\.b\\%", "a.b%"), ("\\d+x", ""), ("\\bword", ""), ("(?i)abc", ""),
    ("^abc", ""), ("abc$", "abc"), ("ab(?i:c)", "ab"), ("a\\x41", "a"), ("", ""),
])
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def test_every_builtin_match_starts_with_its_rules_literal_prefix() -> None:
    by_name = {r.name: r.regex for r in BUILTIN.rules}
    for case in GOLDEN:
        expected = case.values[0]["observation"]
        if expected:
            regex = by_name[expected["labels"]["rule"]]
            found = regex.search(case.values[0]["parsed"]["msg"])
            assert found is not None
            assert found.group(0).startswith(literal_prefix(regex.pattern))


def rule(**kw: Any) -> Rule:
    return Rule.model_validate({"name": "r", "kind": "link_down", "interface": "{i}",
                                "match": r"(?P<i>\S+) down", **kw})


def test_program_and_facility_filters() -> None:
    matcher = Matcher([rule(program="Ebra", facility="local4")])
    line = "<165>Feb  6 09:42:36 veos01 {} et1 down"
    assert matcher.match(parse_message(line.format("Ebra:").encode()), device="d", ts=TS)
    assert not matcher.match(parse_message(line.format("Other:").encode()), device="d", ts=TS)
    assert not matcher.match(parse_message(b"<13>Feb  6 09:42:36 v Ebra: et1 down"),
                             device="d", ts=TS)


def test_if_index_is_resolved_when_no_name_is_given() -> None:
    matcher = Matcher([rule(match=r"ifIndex (?P<x>\d+) down", interface=None, if_index="{x}")])
    asked: list[tuple[str, int]] = []

    def names(device: str, index: int) -> str | None:
        asked.append((device, index))
        return {527: "ge-0/0/1"}.get(index)

    msg = parse_message(b"<28>ifIndex 527 down")
    obs = matcher.match(msg, device="mx1", ts=TS, interface_name=names)
    assert obs is not None and obs.instance == "ge-0/0/1" and asked == [("mx1", 527)]
    assert matcher.match(parse_message(b"<28>ifIndex 9 down"), device="mx1", ts=TS,
                         interface_name=names) is None
    assert matcher.match(msg, device="mx1", ts=TS) is None  # no resolver: nothing to say
    huge = parse_message(b"<28>ifIndex " + b"9" * 5000 + b" down")  # int() would raise
    assert matcher.match(huge, device="mx1", ts=TS, interface_name=names) is None


def test_a_rule_whose_template_group_did_not_match_yields_to_the_next() -> None:
    first = rule(name="a", match=r"(?:port (?P<i>\S+) )?down", labels={"x": "y"})
    second = rule(name="b", match=r"(?P<i>\S+) down")
    obs = Matcher([first, second]).match(parse_message(b"<13>et9 down"), device="d", ts=TS)
    assert obs is not None and (obs.instance, obs.labels["rule"]) == ("et9", "b")


def test_templates_compose_and_unknown_admin_is_left_out() -> None:
    r = rule(match=r"(?P<slot>\d)/(?P<port>\d) (?P<adm>\w+) down", interface="ge-{slot}/0/{port}",
             labels={"admin": "{adm}"})
    obs = Matcher([r]).match(parse_message(b"<13>1/7 weird down"), device="d", ts=TS)
    assert obs is not None and obs.instance == "ge-1/0/7" and "admin" not in obs.labels
    obs = Matcher([r]).match(parse_message(b"<13>1/7 DOWN down"), device="d", ts=TS)
    assert obs is not None and obs.labels["admin"] == "down"


def test_kinds_produce_their_observations() -> None:
    kinds = [
        (rule(), b"<13>e1 down", (IF_OPER_STATUS, "e1", 2)),
        (rule(kind="link_up", match=r"(?P<i>\S+) up"), b"<13>e1 up", (IF_OPER_STATUS, "e1", 1)),
        (rule(kind="bgp_down", interface=None, peer="{p}", match=r"(?P<p>\S+) gone"),
         b"<13>10.0.0.1 gone", (BGP_PEER_STATE, "10.0.0.1", 1)),
        (rule(kind="bgp_up", interface=None, peer="{p}", match=r"(?P<p>\S+) back"),
         b"<13>10.0.0.1 back", (BGP_PEER_STATE, "10.0.0.1", 6)),
        (rule(kind="device_restarted", interface=None, match="booted"), b"<13>booted",
         (DEVICE_RESTARTED, "", 0)),
    ]
    for r, line, want in kinds:
        obs = Matcher([r]).match(parse_message(line), device="d", ts=TS)
        assert obs is not None and (obs.name, obs.instance, obs.value) == want
        assert (obs.device, obs.source, obs.ts) == ("d", "syslog", TS)


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SourceError) as info:
        load_rule_file(path)
    return str(info.value).splitlines()


def test_rule_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = write_rules(tmp_path, """\
rules:
  - name: ok
    match: '(?P<intf>\\S+) down'
    kind: link_down
    interface: '{intf}'
  - name: bad-regex
    match: '(?P<intf>\\S+ down'
    kind: link_down
    interface: '{intf}'
  - name: bad-group
    match: '(?P<intf>\\S+) down'
    kind: link_down
    interface: '{port}'
  - name: bad-kind
    match: 'x'
    kind: link_sideways
  - name: no-interface
    match: 'x'
    kind: link_up
  - name: typo
    match: 'x'
    kind: device_restarted
    interfce: '{x}'
    facility: local9
""")
    assert problems(path) == [
        f"{path}:7: rules[1].match: the regex does not compile: missing ), unterminated "
        "subpattern at position 0 (got '(?P<intf>\\\\S+ down')",
        f"{path}:13: rules[2].interface: {{port}} is not a named group of match (it has: "
        "intf) (got '{port}')",
        f"{path}:16: rules[3].kind: Input should be 'link_down', 'link_up', 'bgp_down', "
        "'bgp_up' or 'device_restarted' (got 'link_sideways')",
        f"{path}:17: rules[4]: a link_up rule needs interface (or if_index)",
        f"{path}:24: rules[5].facility: unknown facility; use one of kern, user, mail, daemon, "
        "auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, security, console, "
        "solaris-cron, local0, local1, local2, local3, local4, local5, local6, local7 (got "
        "'local9')",
        f"{path}:23: rules[5].interfce: unknown key (check the spelling; see the example in "
        "etc/)",
    ]


def test_rule_file_label_template_and_duplicate_names(tmp_path: Path) -> None:
    path = write_rules(tmp_path, """\
rules:
  - name: same
    match: 'neighbor (?P<peer>\\S+) Down'
    kind: bgp_down
    peer: '{peer}'
    labels: {vrf: '{vrf}'}
  - name: same
    match: 'neighbor (?P<peer>\\S+) Up'
    kind: bgp_up
    peer: '{peer:>5}'
""")
    assert problems(path) == [
        f"{path}:6: rules[0].labels: {{vrf}} is not a named group of match (it has: peer)",
        f"{path}:10: rules[1].peer: bad template field {{peer}}: only {{group}} with the name "
        "of a named group of match is allowed (got '{peer:>5}')",
    ]
    path.write_text(path.read_text().replace("labels: {vrf: '{vrf}'}", "labels: {}")
                    .replace("{peer:>5}", "{peer}"))
    assert problems(path) == [
        f"{path}:7: rules[1].name: duplicate rule name (the first one is on line 2); names "
        "must be unique (got 'same')",
    ]


def test_rule_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "- name: x\n")
    assert problems(path) == [f"{path}:1: expected a mapping with a rules: list"]
    assert problems(tmp_path / "missing.yaml") == [f"{tmp_path / 'missing.yaml'}: file not found"]


def test_site_rules_come_first_and_replace_builtins_by_name(tmp_path: Path) -> None:
    path = write_rules(tmp_path, """\
rules:
  - name: cisco-ios-link-down
    match: '%LINK-\\d-UPDOWN: Interface (?P<intf>[^,]+), changed state to down'
    kind: link_down
    interface: '{intf}'
  - name: site-special
    match: 'PORT (?P<p>\\S+) DEAD'
    kind: link_down
    interface: '{p}'
""")
    config = SyslogConfig(rules_file=str(path))
    rules = configured_rules(config)
    names = [r.name for r in rules]
    assert names[:2] == ["cisco-ios-link-down", "site-special"]
    assert names.count("cisco-ios-link-down") == 1
    assert len(rules) == len(BUILTIN.rules) + 1
    msg = parse_message(b"<187>45: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed "
                        b"state to down")
    obs = Matcher(rules).match(msg, device="d", ts=TS)
    assert obs is not None and obs.instance == "GigabitEthernet0/1"  # the site's: as sent
    assert configured_rules(SyslogConfig(rules_file=str(path), use_builtin_rules=False))[-1] \
        .name == "site-special"


# --- config ------------------------------------------------------------------------------


def config_problems(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        validate(SyslogConfig, parse_yaml(text, "netreflex.yaml"))
    return str(info.value).splitlines()


def test_config_defaults_and_relative_rules_file(tmp_path: Path) -> None:
    src = parse_yaml("tcp: '[::1]:6514'\nrules_file: site-rules.yaml\n",
                     str(tmp_path / "netreflex.yaml"))
    config = validate(SyslogConfig, src)
    assert (config.udp, config.tcp) == ("0.0.0.0:514", "[::1]:6514")
    assert config.rules_file == str(tmp_path / "site-rules.yaml")
    assert config.kind == "syslog" and config.use_builtin_rules


@pytest.mark.parametrize(("text", "message"), [
    ("udp: 514", "udp: Input should be a valid string"),
    ("udp: 'localhost:514'", "udp: Value error, 'localhost' is not an IP address to listen on"),
    ("udp: '::1:514'", "udp: Value error, write an IPv6 address in brackets, e.g. [::]:514"),
    ("udp: '0.0.0.0:70000'", "udp: Value error, the port must be a number from 0 to 65535"),
    ("udp: null", "set udp or tcp (or both): the receiver has nothing to listen on"),
    ("max_message_size: 100", "max_message_size: Input should be greater than or equal to 480"),
    ("tcp_idle_timout: 5", "tcp_idle_timout: unknown key"),
])
def test_config_errors(text: str, message: str) -> None:
    (line,) = config_problems(text + "\n")
    assert line.startswith("netreflex.yaml:1:")
    assert re.sub(r" \(got .*\)$", "", line).removeprefix("netreflex.yaml:1: ").startswith(
        message.replace("Value error, ", ""))
