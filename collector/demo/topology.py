"""The demo's simulated ISP: devices, ports and ~200 subscribers with revenue data.

Every device has its own loopback address (127.0.0.11, .12, ...), so that the daemon's
trap receiver can tell who sent a trap. All devices are polled over SNMP and send
linkDown/linkUp traps, except the core router, which streams its interface states over
gNMI instead of sending traps (and is polled over SNMP too).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.demo.agents import DeviceSpec, InterfaceSpec

ACCESS_PORTS = 8
GNMI_DEVICE = "core1"  # streams telemetry over gNMI, sends no traps
GNMI_USERNAME = "netreflex"
GNMI_PASSWORD = "demo-gnmi"  # a throwaway lab credential
TRAP_COMMUNITY = "demo-traps"


@dataclass
class Node:
    name: str
    role: str
    site: str
    parents: list[dict[str, str]] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)


def nodes() -> list[Node]:
    pon = [f"pon0/{i}" for i in range(1, ACCESS_PORTS + 1)]
    ge = [f"ge-0/0/{i}" for i in range(1, ACCESS_PORTS + 1)]
    return [
        Node("core1", "core", "pop-central", ports=["xe-0/0/1", "xe-0/0/2"]),
        Node(
            "agg1",
            "aggregation",
            "pop-north",
            [{"device": "core1", "port": "xe-0/0/1"}],
            ["uplink", "xe-1/0/1", "xe-1/0/2", "xe-1/0/3"],
        ),
        Node(
            "agg2",
            "aggregation",
            "pop-south",
            [{"device": "core1", "port": "xe-0/0/2"}],
            ["uplink", "xe-1/0/1", "xe-1/0/2"],
        ),
        Node(
            "olt1",
            "access",
            "cabinet-n1",
            [{"device": "agg1", "port": "xe-1/0/1", "local_port": "uplink1"}],
            ["uplink1", *pon],
        ),
        Node(
            "olt2",
            "access",
            "cabinet-n2",
            [{"device": "agg1", "port": "xe-1/0/2", "local_port": "uplink1"}],
            ["uplink1", *pon],
        ),
        Node(
            "olt3",
            "access",
            "cabinet-ring",  # dual-homed: survives one aggregation switch
            [
                {"device": "agg1", "port": "xe-1/0/3", "local_port": "uplink1"},
                {"device": "agg2", "port": "xe-1/0/1", "local_port": "uplink2"},
            ],
            ["uplink1", "uplink2", *pon],
        ),
        Node(
            "sw4",
            "access",
            "business-park",
            [{"device": "agg2", "port": "xe-1/0/2", "local_port": "uplink1"}],
            ["uplink1", *ge],
        ),
    ]


def address(number: int) -> str:
    """The loopback address of the ``number``-th device (from 0)."""
    return f"127.0.0.{11 + number}"


def fleet_specs() -> list[DeviceSpec]:
    specs = []
    for number, n in enumerate(nodes()):
        ifaces = [
            InterfaceSpec(
                if_index=i,
                name=port,
                alias=_alias(n, port),
                speed_mbps=10_000 if port.startswith(("xe", "uplink")) else 2_500,
            )
            for i, port in enumerate(n.ports, start=1)
        ]
        specs.append(
            DeviceSpec(
                name=n.name,
                community=f"demo-{n.name}",
                sys_descr=f"netreflex demo {n.role} {n.name}",
                interfaces=ifaces,
                address=address(number),
                traps=n.name != GNMI_DEVICE,
            )
        )
    return specs


def _alias(n: Node, port: str) -> str:
    for p in n.parents:
        if p.get("local_port") == port:
            return f"to {p['device']}"
    return "" if port.startswith(("pon", "ge")) else "link"


FIRST = ["Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jia", "Kai", "Lea"]
LAST = ["Silva", "Okafor", "Novak", "Chen", "Garcia", "Ito", "Khan", "Muller", "Rossi", "Berg"]
BUSINESS = [
    "Corner Bakery",
    "Dental Clinic",
    "Print Shop",
    "Law Office",
    "Cafe Nord",
    "Auto Repair",
    "Yoga Studio",
    "Pharmacy",
]


@dataclass(frozen=True)
class Sub:
    id: str
    device: str
    port: str
    name: str
    revenue: float
    tier: str
    churn: float
    email: str
    consent_email: bool
    consent_sms: bool


def subscribers(seed: int = 7) -> list[Sub]:
    """About 200 subscribers: households on the OLTs, businesses on the switch."""
    rng = random.Random(seed)
    out: list[Sub] = []
    n = 0
    for olt in ("olt1", "olt2", "olt3"):
        for port in range(1, ACCESS_PORTS + 1):
            for _ in range(rng.randint(6, 9)):
                n += 1
                biz = rng.random() < 0.06
                name = rng.choice(BUSINESS) if biz else f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                revenue = (
                    rng.choice([89.0, 149.0, 249.0])
                    if biz
                    else rng.choice([30.0, 30.0, 45.0, 55.0, 70.0])
                )
                out.append(
                    Sub(
                        f"S-{n:04d}",
                        olt,
                        f"pon0/{port}",
                        name,
                        revenue,
                        "business" if biz else "residential",
                        round(rng.random() * 0.5, 2),
                        f"sub{n}@mail.example",
                        rng.random() < 0.8,
                        rng.random() < 0.5,
                    )
                )
    for port in range(1, ACCESS_PORTS + 1):
        n += 1
        enterprise = port == 1
        out.append(
            Sub(
                f"S-{n:04d}",
                "sw4",
                f"ge-0/0/{port}",
                "Acme Logistics HQ" if enterprise else BUSINESS[port - 1],
                3000.0 if enterprise else rng.choice([149.0, 249.0, 399.0]),
                "enterprise" if enterprise else "business",
                0.3,
                f"it{n}@biz.example",
                True,
                True,
            )
        )
    return out


def write_files(
    base: Path,
    *,
    ports: dict[str, int],
    webhook_url: str,
    addresses: dict[str, str] | None = None,
    gnmi_ports: dict[str, int] | None = None,
    trap_port: int | None = None,
) -> Path:
    """Write config, inventory, subscribers and policy for the daemon; return the config.

    ``ports``: each device's SNMP port, at ``addresses`` (127.0.0.1 when absent);
    ``gnmi_ports``: devices that also stream over gNMI (plaintext, on their address);
    ``trap_port``: the daemon listens for traps on 127.0.0.1 at this port."""
    addresses = addresses or {}
    gnmi_ports = gnmi_ports or {}
    base.mkdir(parents=True, exist_ok=True)
    devices: dict[str, Any] = {}
    inv = {"devices": devices, "subscriber_files": ["subscribers.csv"]}
    for n in nodes():
        devices[n.name] = {
            "role": n.role,
            "site": n.site,
            "parents": n.parents,
            "ports": n.ports,
        }
    (base / "inventory.yaml").write_text(yaml.safe_dump(inv, sort_keys=False))
    with (base / "subscribers.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "id",
                "name",
                "device",
                "port",
                "monthly_revenue",
                "sla_tier",
                "churn_risk",
                "email",
                "consent_email",
                "consent_sms",
            ]
        )
        for s in subscribers():
            w.writerow(
                [
                    s.id,
                    s.name,
                    s.device,
                    s.port,
                    f"{s.revenue:.2f}",
                    s.tier,
                    s.churn,
                    s.email,
                    str(s.consent_email).lower(),
                    str(s.consent_sms).lower(),
                ]
            )
    policy = {
        "targets": {
            "noc-webhook": {
                "kind": "webhook",
                "url": webhook_url,
                "timeout": 3,
                "max_attempts": 5,
                "backoff_max": 2,
            },
            "action-log": {"kind": "log", "path": str(base / "actions.jsonl")},
        },
        "rules": [
            {
                "name": "noc-all-outages",
                "when": {"events": ["opened", "resolved"]},
                "do": [{"target": "noc-webhook"}, {"target": "action-log"}],
            },
            {
                "name": "business-impact-updates",
                "when": {"events": ["updated"], "sla_tier": ["business", "enterprise"]},
                "do": [{"target": "noc-webhook"}],
            },
        ],
    }
    (base / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    config = {
        "daemon": {
            "state_dir": str(base / "state"),
            "metrics_listen": "127.0.0.1:0",
            "log_level": "info",
            "shutdown_timeout": 5,
        },
        "polling": {
            "interval": 1.0,
            "jitter": 0.1,
            "timeout": 0.3,
            "retries": 1,
            "concurrency": 16,
        },
        "correlation": {"unreachable_hold_down": 2.0},
        "credentials": {f"demo-{n}": {"version": "2c", "community": f"demo-{n}"} for n in ports},
        "devices": {
            n: {
                "address": addresses.get(n, "127.0.0.1"),
                "probes": [
                    {"kind": "snmp", "credentials": f"demo-{n}", "port": p},
                    *([_gnmi_probe(gnmi_ports[n])] if n in gnmi_ports else []),
                ],
            }
            for n, p in ports.items()
        },
        "inventory": ["inventory.yaml"],
        "policy": "policy.yaml",
    }
    if trap_port is not None:
        config["traps"] = {
            "listen": f"127.0.0.1:{trap_port}",
            "communities": [TRAP_COMMUNITY],
            "receive_buffer": 256 * 1024,
        }
    path = base / "netreflex.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _gnmi_probe(port: int) -> dict[str, Any]:
    """Interface states streamed ON_CHANGE, restated every 2 s (heartbeat)."""
    return {
        "kind": "gnmi",
        "port": port,
        "insecure": True,
        "username": GNMI_USERNAME,
        "password": GNMI_PASSWORD,
        "sample_interval": 2.0,
        "heartbeat_interval": 2.0,
        "silence_deadline": 10.0,
        "connect_timeout": 5.0,
        "backoff": {"initial": 0.5, "maximum": 2.0},
        "paths": [
            {"path": "/interfaces/interface/state/oper-status", "mode": "on_change"},
            {"path": "/interfaces/interface/state/admin-status", "mode": "on_change"},
        ],
    }
