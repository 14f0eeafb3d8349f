"""CLI probe: SSH scraping (netmiko) of an allowlisted set of show commands per platform."""

from probes.cli.commands import COMMANDS, Command, CommandSet, Platform
from probes.cli.config import CliProbeConfig
from probes.cli.poller import CliPoller
from probes.types import ONT_RX_DBM, ONT_STATE

__all__ = [
    "COMMANDS",
    "ONT_RX_DBM",
    "ONT_STATE",
    "CliPoller",
    "CliProbeConfig",
    "Command",
    "CommandSet",
    "Platform",
]
