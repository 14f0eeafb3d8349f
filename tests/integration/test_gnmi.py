"""GnmiProbe against a real gRPC gNMI target on loopback (collector/demo/gnmi.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from collector.demo.gnmi import GnmiTarget
from probes.errors import ProbeAuthError, ProbeConfigError
from probes.gnmi import (
    BGP_PEER_STATE,
    IF_IN_OCTETS,
    STAT_KEYS,
    GnmiProbe,
    GnmiProbeConfig,
)
from probes.source import SourceError, parse_yaml, validate
from probes.types import IF_OPER_STATUS, REACHABLE, STATUS_DOWN, STATUS_UP, Observation
from tests.support.pki import make_pki

pytestmark = pytest.mark.integration

USER, PASSWORD = "netreflex", "s3cret-Pa55"
ETH1 = "/interfaces/interface[name=Ethernet1]/state"
ETH2 = "/interfaces/interface[name=Ethernet2]/state"
PEER = ("/network-instances/network-instance[name=default]/protocols/"
        "protocol[identifier=BGP][name=BGP]/bgp/neighbors/neighbor[neighbor-address=192.0.2.1]"
        "/state/session-state")
FAST = {
    "sample_interval": 0.1,
    "heartbeat_interval": 0.2,
    "silence_deadline": 0.6,
    "connect_timeout": 2.0,
    "backoff": {"initial": 0.05, "maximum": 0.3, "jitter": 0.5},
}


class Bus:
    """What the probe published, with when each observation arrived."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.at: list[float] = []
        self.batches = 0

    async def publish(self, batch: Sequence[Observation]) -> None:
        self.batches += 1
        now = time.monotonic()
        self.observations.extend(batch)
        self.at.extend(now for _ in batch)

    def named(self, name: str, instance: str | None = None) -> list[Observation]:
        return [o for o in self.observations
                if o.name == name and (instance is None or o.instance == instance)]

    def reachable(self) -> list[tuple[int | float | str, str]]:
        return [(o.value, o.labels.get("reason", "")) for o in self.named(REACHABLE)]


async def wait_until(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s: {what}")
        await asyncio.sleep(0.005)


def device(target: GnmiTarget) -> None:
    """A small router: two ports, counters, one BGP peer."""
    for port, oper in ((ETH1, "UP"), (ETH2, "UP")):
        target.set(f"{port}/admin-status", "UP")
        target.set(f"{port}/oper-status", oper)
        target.set(f"{port}/counters/in-octets", 1000)
        target.set(f"{port}/counters/out-octets", 2000)
    target.set(PEER, "ESTABLISHED")


def config(**overrides: Any) -> GnmiProbeConfig:
    data: dict[str, Any] = {"insecure": True, "username": USER, "password": PASSWORD, **FAST}
    data.update(overrides)
    return GnmiProbeConfig.model_validate(data)


@contextlib.asynccontextmanager
async def running(probe: GnmiProbe, bus: Bus) -> AsyncIterator[asyncio.Task[None]]:
    stopping = asyncio.Event()
    task = asyncio.create_task(probe.run(bus.publish, stopping), name="gnmi-under-test")
    try:
        yield task
    finally:
        stopping.set()
        async with asyncio.timeout(5):
            await task


@pytest.fixture
async def target() -> AsyncIterator[GnmiTarget]:
    async with GnmiTarget(username=USER, password=PASSWORD) as t:
        device(t)
        yield t


def probe_for(target: GnmiTarget, **overrides: Any) -> GnmiProbe:
    return GnmiProbe(device="edge1", address="127.0.0.1",
                     config=config(port=target.port, **overrides))


async def test_initial_state_then_a_flip_within_a_second(target: GnmiTarget) -> None:
    bus = Bus()
    probe = probe_for(target)
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["syncs"] == 1, what="initial state")
        first = bus.observations[0]
        assert (first.name, first.value, first.labels["reason"]) == (REACHABLE, 1, "ok")
        oper = {o.instance: (o.value, dict(o.labels)) for o in bus.named(IF_OPER_STATUS)}
        assert oper == {"Ethernet1": (STATUS_UP, {"admin": "up"}),
                        "Ethernet2": (STATUS_UP, {"admin": "up"})}
        assert [o.value for o in bus.named(BGP_PEER_STATE, "192.0.2.1")] == [6]
        assert bus.named(IF_IN_OCTETS, "Ethernet1")[0].value == 1000
        # Get, then the stream's initial sync: published once, not twice
        assert len(bus.named(IF_OPER_STATUS, "Ethernet2")) == 1
        assert probe.stats["connects"] == 1 and probe.stats["syncs"] == 1
        assert probe.encoding == "json_ietf"
        assert "openconfig-interfaces@3.7.1" in probe.supported_models

        before = len(bus.named(IF_OPER_STATUS, "Ethernet2"))
        flipped = time.monotonic()
        target.set(f"{ETH2}/oper-status", "LOWER_LAYER_DOWN")
        await wait_until(lambda: len(bus.named(IF_OPER_STATUS, "Ethernet2")) > before,
                         timeout=1.0, what="the flip")
        await asyncio.sleep(0.3)  # samples and heartbeats go on: still only one
        changes = bus.named(IF_OPER_STATUS, "Ethernet2")[before:]
        assert [(o.value, o.labels["admin"]) for o in changes] == [(7, "up")]
        latency = bus.at[bus.observations.index(changes[0])] - flipped
        assert latency < 1.0

        target.set(f"{ETH1}/counters/in-octets", 5000)
        await wait_until(lambda: bus.named(IF_IN_OCTETS, "Ethernet1")[-1].value == 5000,
                         what="counter sample")
        target.set(PEER, "IDLE")
        await wait_until(lambda: bus.named(BGP_PEER_STATE)[-1].value == 1, what="BGP drop")
    assert probe.stats["malformed"] == 0
    assert set(probe.stats) == set(STAT_KEYS)
    # what was asked for: one SAMPLE path at 0.1 s, on-change ones with a heartbeat
    sub = {"/".join(e.name for e in s.path.elem): s for s in target.subscriptions[0].subscription}
    assert sub["interfaces/interface/state/counters/in-octets"].sample_interval == 100_000_000
    assert sub["interfaces/interface/state/oper-status"].heartbeat_interval == 200_000_000


async def test_credentials_go_in_metadata(target: GnmiTarget) -> None:
    bus = Bus()
    async with running(probe_for(target), bus):
        await wait_until(lambda: bool(bus.named(REACHABLE)))
    rpcs = [rpc for rpc, _ in target.metadata]
    assert rpcs[:3] == ["Capabilities", "Get", "Subscribe"]
    for _, md in target.metadata:
        assert (md.get("username"), md.get("password")) == (USER, PASSWORD)


async def test_wrong_password_is_an_auth_problem_not_a_timeout(
    target: GnmiTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="probes.gnmi")
    bus = Bus()
    probe = probe_for(target, password="not-the-password")
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["auth_failures"] >= 2, what="auth failures")
    assert isinstance(probe.last_error, ProbeAuthError)
    assert probe.last_reason == "auth"
    assert "check username and password" in str(probe.last_error)
    assert probe.stats["timeouts"] == 0 and probe.stats["connects"] == 0
    # the device answered: reachable, for a reason; said once, not at every retry
    assert bus.reachable() == [(1, "auth")]
    assert "not-the-password" not in caplog.text
    assert any("rejected user 'netreflex'" in r.getMessage() for r in caplog.records)


async def test_silent_stream_is_redialled_and_updates_resume(target: GnmiTarget) -> None:
    bus = Bus()
    probe = probe_for(target)
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
        target.go_silent()  # open, but nothing comes: no samples, no heartbeats
        silenced = time.monotonic()
        await wait_until(lambda: probe.stats["silence_timeouts"] >= 1, timeout=3.0,
                         what="silence detected")
        detected = time.monotonic() - silenced
        await wait_until(lambda: probe.stats["syncs"] >= 2, what="a new stream")
        assert probe.stats["reconnects"] >= 1
        mark = len(bus.observations)
        target.set(f"{ETH1}/oper-status", "DOWN")
        await wait_until(lambda: any(o.name == IF_OPER_STATUS and o.value == STATUS_DOWN
                                     for o in bus.observations[mark:]), what="updates resume")
    assert 0.5 <= detected < 1.5  # silence_deadline 0.6 s
    assert probe.last_reason == "silent"
    assert (0, "silent") not in bus.reachable()  # the redial worked: never said down


async def test_target_stopped_then_restarted(target: GnmiTarget) -> None:
    bus = Bus()
    probe = probe_for(target)
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
        await target.stop()
        await wait_until(lambda: (0, "refused") in bus.reachable(), timeout=3.0,
                         what="REACHABLE 0")
        assert probe.stats["stream_errors"] == 1
        assert not probe.connected.is_set()
        await asyncio.sleep(0.5)  # keeps redialling (backoff capped at 0.3 s) ...
        assert probe.stats["dial_failures"] >= 2
        assert bus.reachable().count((0, "refused")) == 1  # ... but says it once
        await target.start()  # same port
        await wait_until(lambda: bus.reachable()[-1] == (1, "ok"), timeout=3.0,
                         what="REACHABLE 1")
        await wait_until(lambda: probe.stats["syncs"] == 2, what="state again")
    assert bus.reachable() == [(1, "ok"), (0, "refused"), (1, "ok")]
    # a redial restates the state (the correlator may have been told the device was down)
    assert len(bus.named(IF_OPER_STATUS, "Ethernet1")) == 2


async def test_shutdown_joins_the_thread_promptly(target: GnmiTarget) -> None:
    bus = Bus()
    probe = probe_for(target)
    stopping = asyncio.Event()
    task = asyncio.create_task(probe.run(bus.publish, stopping))
    await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
    assert target.open_streams == 1
    started = time.monotonic()
    stopping.set()
    async with asyncio.timeout(3):
        await task
    assert time.monotonic() - started < 1.0
    assert probe.stats["threads_abandoned"] == 0
    await wait_until(lambda: target.open_streams == 0, what="stream closed at the target")


async def test_cancelling_run_closes_the_stream(target: GnmiTarget) -> None:
    bus = Bus()
    probe = probe_for(target)
    task = asyncio.create_task(probe.run(bus.publish, asyncio.Event()))
    await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.stats["threads_abandoned"] == 0
    await wait_until(lambda: target.open_streams == 0, what="stream closed at the target")


async def test_a_slow_bus_holds_the_target_back_without_losing_changes(
    target: GnmiTarget,
) -> None:
    bus = Bus()

    async def slow(batch: Sequence[Observation]) -> None:
        await asyncio.sleep(0.05)
        await bus.publish(batch)

    probe = probe_for(target, queue_size=2, silence_deadline=5.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(probe.run(slow, stopping))
    await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
    states = ["DOWN", "UP"] * 10
    for state in states:
        target.set(f"{ETH1}/oper-status", state)
        await asyncio.sleep(0)
    want = [STATUS_DOWN, STATUS_UP] * 10
    await wait_until(lambda: [o.value for o in bus.named(IF_OPER_STATUS, "Ethernet1")][1:] == want,
                     timeout=10, what="every change, in order")
    stopping.set()
    async with asyncio.timeout(5):
        await task
    assert probe.stats["silence_timeouts"] == 0 and probe.stats["reconnects"] == 0
    assert probe.stats["queue_full"] > 0  # reading did pause


async def test_unreachable_from_the_start() -> None:
    async with GnmiTarget() as t:
        port = t.port
    bus = Bus()
    probe = GnmiProbe(device="edge1", address="127.0.0.1", config=config(port=port))
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["dial_failures"] >= 3, what="retries")
    assert bus.reachable() == [(0, "refused")]
    assert "refused the connection" in str(probe.last_error)


async def test_target_without_get_still_gives_the_state() -> None:
    async with GnmiTarget() as t:
        device(t)
        t.get_unimplemented = True
        bus = Bus()
        probe = probe_for(t, username=None, password=None)
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
        assert probe.stats["get_failures"] == 1
        assert {o.instance for o in bus.named(IF_OPER_STATUS)} == {"Ethernet1", "Ethernet2"}


@pytest.mark.parametrize("encoding", ["json", "proto"])
async def test_other_encodings(target: GnmiTarget, encoding: str) -> None:
    bus = Bus()
    probe = probe_for(target, encoding=encoding)
    async with running(probe, bus):
        await wait_until(lambda: probe.stats["syncs"] == 1, what="stream up")
    assert target.subscriptions[0].encoding == {"json": 0, "proto": 2}[encoding]
    assert bus.named(IF_IN_OCTETS, "Ethernet2")[0].value == 1000
    assert probe.stats["malformed"] == 0


async def test_encoding_the_target_lacks_is_a_clear_error() -> None:
    async with GnmiTarget(encodings=(0, 2)) as t:  # JSON, PROTO
        bus = Bus()
        probe = probe_for(t, username=None, password=None, encoding="json_ietf")
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["dial_failures"] >= 1)
    assert probe.last_reason == "encoding"
    assert "does not support encoding json_ietf (it offers json, proto)" in str(probe.last_error)
    assert bus.reachable() == [(1, "encoding")]


# --- TLS, and plaintext only when asked for ------------------------------------------------


def test_plaintext_must_be_asked_for() -> None:
    src = parse_yaml("kind: gnmi\nusername: u\npassword: hunter2\n", "devices.yaml")
    with pytest.raises(SourceError) as err:
        validate(GnmiProbeConfig, src)
    assert str(err.value) == (
        "devices.yaml:1: tls: no transport security given: add tls: (with ca_file: for a "
        "private CA), or set insecure: true to talk plaintext gRPC (labs only)")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValidationError, match="exclusive"):
        GnmiProbeConfig.model_validate({"insecure": True, "tls": {}})


def test_tls_files_are_checked_where_they_are_written(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    text = "kind: gnmi\ntls:\n  ca_file: missing-ca.pem\n  cert_file: cert.pem\n"
    src = parse_yaml(text, str(tmp_path / "devices.yaml"))
    with pytest.raises(SourceError) as err:
        validate(GnmiProbeConfig, src)
    assert str(err.value).splitlines() == [  # one line per problem, each where it is
        f"{tmp_path}/devices.yaml:3: tls.ca_file: no such file: {tmp_path}/missing-ca.pem "
        "(got 'missing-ca.pem')",
        f"{tmp_path}/devices.yaml:2: tls.key_file: mutual TLS needs both cert_file and key_file",
    ]
    src = parse_yaml("kind: gnmi\ntls:\n  cert_file: cert.pem\n", str(tmp_path / "d.yaml"))
    with pytest.raises(SourceError) as err:
        validate(GnmiProbeConfig, src)
    assert str(err.value).endswith("d.yaml:2: tls.key_file: mutual TLS needs both cert_file "
                                   "and key_file")


def test_a_tls_file_that_is_not_pem_fails_at_construction(tmp_path: Path) -> None:
    ca = tmp_path / "ca.der"
    ca.write_bytes(b"\x30\x82\x01\x0a")
    cfg = GnmiProbeConfig.model_validate({"tls": {"ca_file": str(ca)}})
    with pytest.raises(ProbeConfigError, match=r"tls.ca_file .*ca.der is not PEM"):
        GnmiProbe(device="edge1", address="127.0.0.1", config=cfg)


@pytest.fixture
def pki_files(tmp_path: Path) -> dict[str, Any]:
    pki = make_pki(server_names=("edge1.example.net",))
    files = {}
    for name in ("ca_cert", "client_cert", "client_key"):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(getattr(pki, name))
        files[name] = str(path)
    return {"pki": pki, **files}


async def test_tls_with_a_private_ca(pki_files: dict[str, Any]) -> None:
    pki = pki_files["pki"]
    async with GnmiTarget(tls=(pki.server_key, pki.server_cert), client_ca=pki.ca_cert,
                          username=USER, password=PASSWORD) as t:
        device(t)
        bus = Bus()
        cfg = config(port=t.port, insecure=False, tls={
            "ca_file": pki_files["ca_cert"],
            "cert_file": pki_files["client_cert"],
            "key_file": pki_files["client_key"],
            "server_name_override": "edge1.example.net",
        })
        probe = GnmiProbe(device="edge1", address="127.0.0.1", config=cfg)
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["syncs"] == 1, what="TLS stream up")
        assert bus.reachable() == [(1, "ok")]


async def test_tls_name_mismatch_says_what_to_fix(pki_files: dict[str, Any]) -> None:
    pki = pki_files["pki"]
    async with GnmiTarget(tls=(pki.server_key, pki.server_cert)) as t:
        bus = Bus()
        cfg = config(port=t.port, insecure=False, tls={
            "ca_file": pki_files["ca_cert"], "server_name_override": "other.example.net"})
        probe = GnmiProbe(device="edge1", address="127.0.0.1", config=cfg)
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["tls_failures"] >= 1)
    assert isinstance(probe.last_error, ProbeConfigError)
    assert "tls.server_name_override" in str(probe.last_error)
    assert bus.reachable() == [(1, "tls")]


async def test_tls_to_a_plaintext_target_says_insecure(pki_files: dict[str, Any]) -> None:
    async with GnmiTarget() as t:
        bus = Bus()
        cfg = config(port=t.port, insecure=False, tls={"ca_file": pki_files["ca_cert"]})
        probe = GnmiProbe(device="edge1", address="127.0.0.1", config=cfg)
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["tls_failures"] >= 1)
    assert "does not speak TLS: if it is plaintext, set insecure: true" in str(probe.last_error)
    assert probe.stats["connects"] == 0


async def test_plaintext_to_a_tls_target_is_not_silently_accepted(
    pki_files: dict[str, Any],
) -> None:
    pki = pki_files["pki"]
    async with GnmiTarget(tls=(pki.server_key, pki.server_cert)) as t:
        bus = Bus()
        probe = probe_for(t)  # insecure: true
        async with running(probe, bus):
            await wait_until(lambda: probe.stats["dial_failures"] >= 1)
    assert probe.stats["connects"] == 0
    assert probe.last_reason == "closed"
    assert "drop insecure: true and set tls:" in str(probe.last_error)
    assert bus.reachable() == [(1, "closed")]  # a config mismatch is not an outage
