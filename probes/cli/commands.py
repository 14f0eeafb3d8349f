"""The commands the CLI probe may send: a fixed allowlist per platform.

Every string sent to a device is a constant in this module. Nothing from configuration,
inventory or a device reply is ever interpolated into a command, and no shell is
involved anywhere (netmiko writes the text to the SSH channel of an interactive session).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

Platform = Literal["cisco_ios", "cisco_xr", "juniper_junos", "huawei", "huawei_smartax"]
CommandSet = Literal["interfaces", "optics", "bgp", "ont"]

PLATFORMS: Final[tuple[Platform, ...]] = get_args(Platform)
COMMAND_SETS: Final[tuple[CommandSet, ...]] = get_args(CommandSet)


@dataclass(frozen=True, slots=True)
class Command:
    """One allowed command: the exact text sent and the set it belongs to."""

    platform: Platform
    command_set: CommandSet
    text: str


def _table(
    rows: Mapping[Platform, Mapping[CommandSet, str]],
) -> Mapping[Platform, Mapping[CommandSet, Command]]:
    return MappingProxyType(
        {
            platform: MappingProxyType(
                {cs: Command(platform, cs, text) for cs, text in sets.items()}
            )
            for platform, sets in rows.items()
        }
    )


COMMANDS: Final = _table(
    {
        "cisco_ios": {
            "interfaces": "show interfaces",
            "optics": "show interfaces transceiver",
            "bgp": "show ip bgp summary",
        },
        "cisco_xr": {
            "interfaces": "show interfaces brief",
            "bgp": "show bgp summary",
        },
        "juniper_junos": {
            "interfaces": "show interfaces terse",
            "optics": "show interfaces diagnostics optics",
            "bgp": "show bgp summary",
        },
        "huawei": {
            "interfaces": "display interface brief",
            "bgp": "display bgp peer",
        },
        # Frame 0, every board and PON port: run state, last down cause and the ONT's
        # optical levels in one table (``display ont info 0 all`` has no down cause).
        "huawei_smartax": {
            "ont": "display ont info summary 0",
        },
    }
)
"""Platform -> command set -> the one command that reads it."""

NETMIKO_DEVICE_TYPE: Final[Mapping[Platform, str]] = MappingProxyType(
    {
        "cisco_ios": "cisco_ios",
        "cisco_xr": "cisco_xr",
        "juniper_junos": "juniper_junos",
        "huawei": "huawei",
        "huawei_smartax": "huawei_smartax",
    }
)

NEEDS_ENABLE: Final[frozenset[Platform]] = frozenset({"huawei_smartax"})
"""Platforms whose read commands need privileged mode (``enable``, no password)."""


def available(platform: Platform) -> tuple[CommandSet, ...]:
    """The command sets ``platform`` has, in a stable order."""
    return tuple(cs for cs in COMMAND_SETS if cs in COMMANDS[platform])


def commands_for(platform: Platform, sets: Iterable[CommandSet] | None) -> tuple[Command, ...]:
    """The commands to run, in a stable order; ``None`` means every set the platform has.

    Raises ``ValueError`` naming the sets the platform does not have.
    """
    table = COMMANDS[platform]
    wanted = available(platform) if sets is None else tuple(dict.fromkeys(sets))
    missing = [cs for cs in wanted if cs not in table]
    if missing:
        raise ValueError(
            f"{platform} has no {', '.join(missing)} command set "
            f"(available: {', '.join(available(platform))})"
        )
    return tuple(table[cs] for cs in COMMAND_SETS if cs in wanted)
