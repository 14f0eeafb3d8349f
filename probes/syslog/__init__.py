"""Syslog probe: a receiver for RFC 3164 / 5424 over UDP and TCP, and rules that turn
device messages (link, BGP, restart) into Observations."""

from probes.syslog.config import (
    BUILTIN_RULES,
    Rule,
    RuleFile,
    SyslogConfig,
    configured_rules,
    load_rule_file,
)
from probes.syslog.match import (
    BGP_ESTABLISHED,
    BGP_IDLE,
    CISCO_IOS_SHORT,
    Matcher,
    cisco_ios_ifname,
)
from probes.syslog.parse import SyslogMessage, SyslogParseError, TcpFramer, parse_message
from probes.syslog.receiver import STAT_KEYS, SyslogReceiver
from probes.types import BGP_PEER_STATE

__all__ = [
    "BGP_ESTABLISHED",
    "BGP_IDLE",
    "BGP_PEER_STATE",
    "BUILTIN_RULES",
    "CISCO_IOS_SHORT",
    "STAT_KEYS",
    "Matcher",
    "Rule",
    "RuleFile",
    "SyslogConfig",
    "SyslogMessage",
    "SyslogParseError",
    "SyslogReceiver",
    "TcpFramer",
    "cisco_ios_ifname",
    "configured_rules",
    "load_rule_file",
    "parse_message",
]
