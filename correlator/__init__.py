"""Inventory and topology, detection, root cause, impact and incidents; the judgement
about them (priority, repeat hits, flap damping, maintenance windows and silences).

Imports probe types only.
"""

from correlator.engine import Correlator
from correlator.errors import (
    CorrelationError,
    MaintenanceError,
    StateStoreError,
    UnknownSilence,
)
from correlator.incidents import (
    FlapInfo,
    Impact,
    Incident,
    IncidentEvent,
    TimelineEntry,
    compute_impact,
)
from correlator.inventory import Device, Inventory, Subscriber, load_inventory
from correlator.maintenance import MaintenanceWindow, MatchSpec, Occurrence, load_maintenance
from correlator.priority import PriorityComponent
from correlator.silences import Maintenance, MaintenanceEvent, Silence
from correlator.store import IncidentStore
from correlator.topology import Analysis, analyse, device_root, link_root

__all__ = [
    "Analysis",
    "CorrelationError",
    "Correlator",
    "Device",
    "FlapInfo",
    "Impact",
    "Incident",
    "IncidentEvent",
    "IncidentStore",
    "Inventory",
    "Maintenance",
    "MaintenanceError",
    "MaintenanceEvent",
    "MaintenanceWindow",
    "MatchSpec",
    "Occurrence",
    "PriorityComponent",
    "Silence",
    "StateStoreError",
    "Subscriber",
    "TimelineEntry",
    "UnknownSilence",
    "analyse",
    "compute_impact",
    "device_root",
    "link_root",
    "load_inventory",
    "load_maintenance",
]
