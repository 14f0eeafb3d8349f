"""Traffic on a port of a scripted snmpd (tests/support/snmpd.py): a thread that grows
one interface's octet counter at a rate a test can change while it runs."""

from __future__ import annotations

import threading
import time
from typing import Literal

from tests.support.snmpd import SnmpdAgent


class Traffic(threading.Thread):
    """Grows ``counter`` (``in_octets``: towards the device, ``out_octets``: from it, i.e.
    downstream on an access port) of interface ``if_index`` at ``mbps``, every 20 ms.
    Set ``mbps`` to change the rate; ``stop.set()`` and ``join()`` when done."""

    def __init__(self, agent: SnmpdAgent, *, if_index: int = 1, mbps: float = 10.0,
                 counter: Literal["in_octets", "out_octets"] = "in_octets") -> None:
        super().__init__(daemon=True, name=f"traffic-{if_index}-{counter}")
        self.agent, self.if_index, self.counter = agent, if_index, counter
        self.mbps, self.stop = mbps, threading.Event()

    def run(self) -> None:
        octets = 0.0
        last = time.monotonic()
        while not self.stop.wait(0.02):
            now = time.monotonic()
            octets += self.mbps * 1e6 / 8 * (now - last)
            last = now
            self.agent.update(self.if_index, **{self.counter: int(octets)})
