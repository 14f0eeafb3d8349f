"""Prometheus metrics: self-metrics and device metrics, in one registry per daemon.

Device metrics come from an in-memory snapshot (the last poll of each device) read at
scrape time; no I/O happens during a scrape. Labels are bounded by the inventory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from probes.types import EventSource, InterfaceCounters

POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeviceSnapshot(Collector):
    """Per-device interface metrics from the latest poll of each device."""

    def __init__(self) -> None:
        self.counters: dict[str, InterfaceCounters] = {}
        self.reachable: dict[str, bool] = {}

    def update(self, device: str, counters: InterfaceCounters | None, reachable: bool) -> None:
        self.reachable[device] = reachable
        if counters is not None:
            self.counters[device] = counters

    def forget(self, device: str) -> None:
        self.counters.pop(device, None)
        self.reachable.pop(device, None)

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(self._families())

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["device", "interface"]
        return [
            GaugeMetricFamily("netreflex_device_up",
                              "1 when the device answered its last poll, else 0",
                              labels=["device"]),
            GaugeMetricFamily("netreflex_interface_oper_status",
                              "IF-MIB ifOperStatus (1 up, 2 down, 7 lowerLayerDown, ...)",
                              labels=labels),
            GaugeMetricFamily("netreflex_interface_speed_mbps",
                              "IF-MIB ifHighSpeed in Mbit/s", labels=labels),
            CounterMetricFamily("netreflex_interface_in_octets",
                                "IF-MIB ifHCInOctets as read from the device", labels=labels),
            CounterMetricFamily("netreflex_interface_out_octets",
                                "IF-MIB ifHCOutOctets as read from the device", labels=labels),
            CounterMetricFamily("netreflex_interface_in_errors",
                                "IF-MIB ifInErrors as read from the device", labels=labels),
            CounterMetricFamily("netreflex_interface_out_errors",
                                "IF-MIB ifOutErrors as read from the device", labels=labels),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up, oper, speed, i_oct, o_oct, i_err, o_err = self._families()
        for device, ok in list(self.reachable.items()):
            up.add_metric([device], 1.0 if ok else 0.0)
        for device, c in list(self.counters.items()):
            rows = zip(c.name, c.oper_status, c.speed_mbps, c.in_octets, c.out_octets,
                       c.in_errors, c.out_errors, strict=False)
            for name, st, sp, io, oo, ie, oe in rows:
                lv = [device, name]
                oper.add_metric(lv, float(st))
                if sp is not None:
                    speed.add_metric(lv, float(sp))
                if io is not None:
                    i_oct.add_metric(lv, float(io))
                if oo is not None:
                    o_oct.add_metric(lv, float(oo))
                if ie is not None:
                    i_err.add_metric(lv, float(ie))
                if oe is not None:
                    o_err.add_metric(lv, float(oe))
        yield from (up, oper, speed, i_oct, o_oct, i_err, o_err)


class _Callback(Collector):
    """A gauge whose value is read from the daemon's state at scrape time."""

    def __init__(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        self.name, self.doc, self.fn = name, doc, fn

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.doc)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.doc, value=float(self.fn()))


class SourceStats(Collector):
    """Event sources' own counters (received, unmatched, malformed, ...), read at scrape."""

    def __init__(self, sources: Sequence[EventSource]) -> None:
        self.sources = list(sources)

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("netreflex_source_events",
                                  "Messages handled by event sources, by outcome",
                                  labels=["source", "outcome"])

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily("netreflex_source_events",
                                  "Messages handled by event sources, by outcome",
                                  labels=["source", "outcome"])
        for src in self.sources:
            for outcome, value in sorted(src.stats.items()):
                fam.add_metric([src.name, outcome], float(value))
        yield fam


class LabelledCounts(Collector):
    """A counter family read at scrape time from a ``{label values: count}`` mapping that
    some component keeps (the correlator's detections, the dispatcher's guardrail trips)."""

    def __init__(self, name: str, doc: str, labels: Sequence[str],
                 counts: Callable[[], Mapping[Any, int]]) -> None:
        """``counts()``: label values (a tuple, in ``labels`` order) -> count."""
        self.name, self.doc, self.labels, self.counts = name, doc, list(labels), counts

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.doc, labels=self.labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for values, value in sorted(dict(self.counts()).items()):
            fam.add_metric(list(values), float(value))
        yield fam


class Metrics:
    """All of one daemon's metrics. Pass it explicitly; there is no global registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build = Info("netreflex_build", "netreflex version", registry=r)
        self.poll_duration = Histogram(
            "netreflex_poll_duration_seconds", "Time to poll one device, retries included",
            ["probe"], buckets=POLL_BUCKETS, registry=r,
        )
        self.polls = Counter("netreflex_polls", "Device polls by outcome", ["probe", "outcome"],
                             registry=r)
        self.poll_errors = Counter("netreflex_poll_errors", "Failed polls by reason",
                                   ["probe", "reason"], registry=r)
        self.poll_skipped = Counter(
            "netreflex_poll_overruns",
            "Polls not started on time because the previous poll of the device was running",
            ["probe"], registry=r,
        )
        self.varbinds = Counter("netreflex_snmp_varbinds", "SNMP varbinds received", registry=r)
        self.observations = Counter("netreflex_observations", "Observations by source",
                                    ["source"], registry=r)
        self.unknown_device_observations = Counter(
            "netreflex_observations_unknown_device",
            "Observations about devices not in the inventory (ignored)", registry=r)
        self.incident_events = Counter("netreflex_incident_events", "Incident lifecycle events",
                                       ["event"], registry=r)
        self.actions = Counter("netreflex_actions", "Action attempts by executor and outcome",
                               ["executor", "outcome"], registry=r)
        self.internal_errors = Counter(
            "netreflex_internal_errors", "Bugs caught at a component boundary (see the log)",
            ["component"], registry=r)
        self.reloads = Counter("netreflex_config_reloads", "Config reloads (SIGHUP) by result",
                               ["result"], registry=r)
        self.reload_ok = Gauge("netreflex_config_last_reload_successful",
                               "1 if the last reload was applied, 0 if it was rejected",
                               registry=r)
        self.reload_ok.set(1)
        self.reload_time = Gauge("netreflex_config_last_reload_success_timestamp_seconds",
                                 "When the configuration was last loaded successfully",
                                 registry=r)
        self.reload_time.set_to_current_time()
        self.devices = DeviceSnapshot()
        r.register(self.devices)

    def register_sources(self, sources: Sequence[EventSource]) -> None:
        if sources:
            self.registry.register(SourceStats(sources))

    def register_detections(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self.registry.register(LabelledCounts(
            "netreflex_detections", "Conditions found, by kind and state (raised, cleared)",
            ["kind", "state"], counts))

    def register_guardrail_trips(
        self, counts: Callable[[], Mapping[tuple[str, str], int]]
    ) -> None:
        self.registry.register(LabelledCounts(
            "netreflex_guardrail_trips", "Attempts a guardrail stopped, by guardrail and "
            "outcome (waiting = held for approval, deferred, blocked); dry runs excluded",
            ["guardrail", "outcome"], counts))

    def gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        self.registry.register(_Callback(name, doc, fn))


__all__ = ["DeviceSnapshot", "Gauge", "LabelledCounts", "Metrics"]
