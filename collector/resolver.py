"""Which inventory device an event came from, and what its interfaces are called."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from collector.metrics import DeviceSnapshot


class ConfigResolver:
    """Maps a sender address (or a syslog HOSTNAME that is a device id) to a device, and an
    ifIndex to the interface name the poller last read from that device.

    An address shared by several configured devices is ambiguous and resolves to none:
    the event is counted as from an unknown sender rather than pinned on a guess.
    """

    def __init__(self, addresses: Mapping[str, str], snapshot: DeviceSnapshot) -> None:
        self._snapshot = snapshot
        self.update(addresses)

    def update(self, addresses: Mapping[str, str]) -> None:
        """Swap in a new device → address map (config reload); atomic for readers."""
        by_addr: dict[str, list[str]] = defaultdict(list)
        for device, address in addresses.items():
            by_addr[address].append(device)
        self._by_addr = {a: ds[0] for a, ds in by_addr.items() if len(ds) == 1}
        self._devices = frozenset(addresses)

    def device_for_address(self, address: str) -> str | None:
        if address.startswith("::ffff:"):
            address = address[len("::ffff:"):]
        found = self._by_addr.get(address)
        if found is None and address in self._devices:
            return address  # a syslog HOSTNAME that names the device
        return found

    def interface_name(self, device: str, if_index: int) -> str | None:
        table = self._snapshot.counters.get(device)
        if table is None:
            return None
        try:
            return table.name[table.if_index.index(if_index)]
        except ValueError:
            return None
