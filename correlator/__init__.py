"""Inventory and topology, detection, root cause, impact and incidents.

Imports probe types only.
"""

from correlator.engine import Correlator
from correlator.errors import CorrelationError, StateStoreError
from correlator.incidents import Impact, Incident, IncidentEvent, TimelineEntry, compute_impact
from correlator.inventory import Device, Inventory, Subscriber, load_inventory
from correlator.store import IncidentStore
from correlator.topology import Analysis, analyse, device_root, link_root

__all__ = [
    "Analysis",
    "CorrelationError",
    "Correlator",
    "Device",
    "Impact",
    "Incident",
    "IncidentEvent",
    "IncidentStore",
    "Inventory",
    "StateStoreError",
    "Subscriber",
    "TimelineEntry",
    "analyse",
    "compute_impact",
    "device_root",
    "link_root",
    "load_inventory",
]
