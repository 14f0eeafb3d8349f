"""What this process does, from ``cluster.role``: which devices it polls, whether it
correlates and acts, and which bus carries its Observations.

=======  ===========================  =====================  =========================
role     polls                        correlates and acts    bus
=======  ===========================  =====================  =========================
all      every configured device      yes                    InProcessBus
poller   its HRW share of the devices no                     MqttPublisher
core     nothing                      yes                    MqttSubscriber
=======  ===========================  =====================  =========================

Every bus has the InProcessBus surface (``publish``, ``consume``, ``depth``,
``drain_now``); :func:`close_bus` ends any of them at shutdown. SNMP interface tables go
to the correlator directly in one process; a poller ships them with
:func:`publish_counters` and the core hands them to the handler given to
:func:`deliver_counters`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.bus import Batch, CountersHandler, CounterTable, InProcessBus
from collector.cluster import ClusterConfig, Role, owner
from collector.mqtt_bus import MqttPublisher, MqttSubscriber

Handler = Callable[[Batch], None]


class Bus(Protocol):
    async def publish(self, batch: Batch) -> None: ...

    async def consume(self, handler: Handler, stopping: asyncio.Event) -> None: ...

    def depth(self) -> int: ...

    def drain_now(self, handler: Handler) -> int: ...


@dataclass(frozen=True, slots=True)
class RolePlan:
    role: Role
    correlates: bool  # run the correlator, the dispatcher and the correlation tick
    bus: Bus
    cluster: ClusterConfig

    def polls(self, device: str) -> bool:
        return polls(self.cluster, device)


def polls(cluster: ClusterConfig, device: str) -> bool:
    """Whether this process polls ``device``."""
    if cluster.role == "all":
        return True
    if cluster.role == "core":
        return False
    assert cluster.poller_id is not None  # ClusterConfig guarantees it for pollers
    return owner(device, cluster.members) == cluster.poller_id


def polled_devices(cluster: ClusterConfig, devices: Iterable[str]) -> list[str]:
    """The devices, in the given order, that this process polls."""
    return [d for d in devices if polls(cluster, d)]


def correlates(cluster: ClusterConfig) -> bool:
    return cluster.role != "poller"


def build_bus(cluster: ClusterConfig, *, maxsize: int = 10_000) -> Bus:
    if cluster.role == "all":
        return InProcessBus(maxsize)
    assert cluster.broker is not None  # ClusterConfig guarantees it outside role all
    if cluster.role == "poller":
        assert cluster.poller_id is not None
        return MqttPublisher(broker=cluster.broker, poller_id=cluster.poller_id,
                             client_id=cluster.client_id(),
                             buffer_batches=cluster.buffer_batches,
                             max_inflight=cluster.max_inflight,
                             flush_timeout=cluster.flush_timeout)
    return MqttSubscriber(broker=cluster.broker, client_id=cluster.client_id(),
                          local_maxsize=maxsize)


def plan(cluster: ClusterConfig) -> RolePlan:
    return RolePlan(role=cluster.role, correlates=correlates(cluster), bus=build_bus(cluster),
                    cluster=cluster)


async def close_bus(bus: Bus, handler: Handler, timeout: float) -> int:
    """At shutdown, after the last poll: hand over what the bus still holds (local batches
    to ``handler`` now; a poller's buffer to the broker within ``timeout``). Returns the
    batches left undelivered."""
    bus.drain_now(handler)
    if isinstance(bus, MqttPublisher | MqttSubscriber):
        return await bus.aclose(timeout)
    return 0


async def publish_counters(bus: Bus, table: CounterTable) -> bool:
    """A poller's interface table to the core; ``False`` when ``bus`` does not carry
    tables (the in-process bus: that process correlates them itself)."""
    if isinstance(bus, MqttPublisher):
        await bus.publish_counters(table)
        return True
    return False


def deliver_counters(bus: Bus, handler: CountersHandler) -> None:
    """Where the core's bus hands the interface tables that pollers sent."""
    if isinstance(bus, MqttSubscriber):
        bus.on_counters = handler


class BusMetrics(Collector):
    """The MQTT bus's counters and gauges, read at scrape time."""

    def __init__(self, bus: MqttPublisher | MqttSubscriber) -> None:
        self.bus = bus

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(self._families())

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily("netreflex_bus_connected",
                              "1 while connected to the MQTT broker, else 0"),
            CounterMetricFamily("netreflex_bus_batches",
                                "Observation batches on the MQTT bus by outcome "
                                "(poller: queued, delivered, dropped, unencodable; core: "
                                "received, handled, duplicates, malformed, "
                                "unsupported_version, missing, handler_errors)",
                                labels=["outcome"]),
            CounterMetricFamily("netreflex_bus_connections",
                                "MQTT connection events (connects, connect_failures, "
                                "disconnects)", labels=["event"]),
            CounterMetricFamily("netreflex_bus_interface_tables",
                                "SNMP interface counter tables on the MQTT bus by outcome "
                                "(poller: queued, delivered, dropped, unencodable; core: "
                                "handled, malformed, ignored, handler_errors)",
                                labels=["outcome"]),
        ]
        if isinstance(self.bus, MqttPublisher):
            families += [
                CounterMetricFamily("netreflex_bus_dropped_observations",
                                    "Observations dropped because the poller's buffer was "
                                    "full"),
                GaugeMetricFamily("netreflex_bus_buffered_batches",
                                  "Batches this poller holds that the broker has not "
                                  "acknowledged"),
                GaugeMetricFamily("netreflex_bus_oldest_buffered_age_seconds",
                                  "Age of the oldest batch this poller holds unacknowledged"),
            ]
        return families

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        families = self._families()
        connected, batches, connections, tables = families[:4]
        stats = dict(self.bus.stats)
        connected.add_metric([], 1.0 if self.bus.connected else 0.0)
        for event in ("connects", "connect_failures", "disconnects"):
            connections.add_metric([event], float(stats.pop(event, 0)))
        dropped_obs = float(stats.pop("dropped_observations", 0))
        for outcome, value in sorted(stats.items()):
            batches.add_metric([outcome], float(value))
        for outcome, value in sorted(self.bus.tables.items()):
            tables.add_metric([outcome], float(value))
        if isinstance(self.bus, MqttPublisher):
            dropped, buffered, age = families[4:]
            dropped.add_metric([], dropped_obs)
            buffered.add_metric([], float(self.bus.buffered()))
            age.add_metric([], self.bus.oldest_age())
        yield from families


def register_metrics(bus: Bus, registry: CollectorRegistry) -> None:
    """Export the MQTT bus's metrics (the in-process bus has ``netreflex_bus_depth``)."""
    if isinstance(bus, MqttPublisher | MqttSubscriber):
        registry.register(BusMetrics(bus))


__all__ = ["Bus", "BusMetrics", "RolePlan", "build_bus", "close_bus", "correlates",
           "deliver_counters", "plan", "polled_devices", "polls", "publish_counters",
           "register_metrics"]
