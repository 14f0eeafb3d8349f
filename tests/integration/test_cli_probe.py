"""CliPoller over real SSH (paramiko server in fakenos) with netmiko, on loopback.

Outputs are real device outputs (tests/fixtures/cli, see ATTRIBUTION.md) served by a
fake device whose answers the tests change between polls on a session that stays open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.cli import ONT_STATE, CliPoller
from probes.types import (
    BGP_PEER_STATE,
    IF_IN_ERRORS,
    IF_IN_FCS_ERRORS,
    IF_OPER_STATUS,
    REACHABLE,
    Observation,
    PollResult,
)
from tests.support.fakenos_host import FakeCliDevice, free_port, silent_listener

pytestmark = [
    pytest.mark.integration,
    # fakenos' server threads die with a traceback when a client goes away mid-session
    # (which these tests do on purpose); that is the fake's noise, not ours.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cli"
IOS_INTERFACES = (FIXTURES / "cisco_ios" / "show_interfaces_2.raw").read_text()
IOS_BGP = (FIXTURES / "cisco_ios" / "show_ip_bgp_summary.raw").read_text()
SMARTAX_ONTS = (FIXTURES / "huawei_smartax" / "display_ont_info_summary_1.raw").read_text()


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="cli")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def ios() -> Iterator[FakeCliDevice]:
    # No "show interfaces transceiver": the device refuses it, as one without optics does.
    with FakeCliDevice(
        "cisco_ios", {"show interfaces": IOS_INTERFACES, "show ip bgp summary": IOS_BGP}
    ) as dev:
        yield dev


def seen(result: PollResult) -> list[tuple[str, str, int | float | str]]:
    return [(o.name, o.instance, o.value) for o in result.observations]


def reachable(result: PollResult) -> tuple[int | float | str, str]:
    (obs,) = [o for o in result.observations if o.name == REACHABLE]
    return obs.value, obs.labels["reason"]


def only(result: PollResult, name: str) -> list[Observation]:
    return [o for o in result.observations if o.name == name]


async def timed(poller: CliPoller) -> tuple[PollResult, float]:
    start = time.monotonic()
    result = await poller.poll()
    return result, time.monotonic() - start


async def test_baseline_then_one_port_down_is_exactly_one_change(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    poller = CliPoller(device="edge1", address=ios.address, config=ios.config(), executor=executor)
    first = await poller.poll()
    assert first.ok, first.detail
    assert reachable(first) == (1, "ok")
    assert {(o.instance, o.value, dict(o.labels)["admin"]) for o in only(first, IF_OPER_STATUS)} == {
        ("Po1", 1, "up"),
        ("Po1.13", 1, "up"),
    }
    assert len(only(first, BGP_PEER_STATE)) == 10
    # The refused optics command is counted and named, and does not fail the poll.
    assert poller.stats["rejected"] == 1
    assert "show interfaces transceiver: rejected" in first.detail

    quiet = await poller.poll()
    assert seen(quiet) == [(REACHABLE, "", 1)]
    assert poller.stats["connects"] == 1  # the session stayed open

    ios.set_output(
        "show interfaces",
        IOS_INTERFACES.replace(
            "Port-channel1.13 is up, line protocol is up", "Port-channel1.13 is up, line protocol is down"
        ),
    )
    down = await poller.poll()
    assert down.ok, down.detail
    assert seen(down) == [(REACHABLE, "", 1), (IF_OPER_STATUS, "Po1.13", 2)]
    assert dict(only(down, IF_OPER_STATUS)[0].labels)["admin"] == "up"
    assert ios.calls["show interfaces"] == 3
    await poller.aclose()


async def test_crc_errors_climbing_are_reported_as_they_change(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    poller = CliPoller(
        device="edge1", address=ios.address, config=ios.config(commands=["interfaces"]),
        executor=executor,
    )
    await poller.poll()
    ios.set_output(
        "show interfaces",
        IOS_INTERFACES.replace("179928 input errors, 21419 CRC", "180100 input errors, 21591 CRC"),
    )
    result = await poller.poll()
    assert seen(result) == [
        (REACHABLE, "", 1),
        (IF_IN_ERRORS, "Po1", 180100),
        (IF_IN_FCS_ERRORS, "Po1", 21591),
    ]
    assert ios.calls["show ip bgp summary"] == 0  # only the configured command set ran
    await poller.aclose()


async def test_wrong_password_is_auth_not_timeout_and_never_logged(
    ios: FakeCliDevice,
    executor: concurrent.futures.ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wrong-Pw-93aa"
    caplog.set_level(logging.DEBUG)
    poller = CliPoller(
        device="edge1", address=ios.address, config=ios.config(password=wrong), executor=executor
    )
    result, elapsed = await timed(poller)
    assert result.error == "auth"
    assert reachable(result) == (1, "auth")  # the device is up: no outage for this
    assert elapsed < 4.0  # well inside the 5 s session timeout: not a timeout in disguise
    assert "noc-reader" in result.detail
    assert wrong not in result.detail
    assert all(wrong not in r.getMessage() for r in caplog.records)
    assert all(ios.password not in r.getMessage() for r in caplog.records)


async def test_dead_devices_do_not_delay_the_others(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    stopped = FakeCliDevice("cisco_ios", {}).start()
    stopped.close()  # its port now refuses connections
    live = CliPoller(
        device="edge1", address=ios.address, config=ios.config(commands=["interfaces"]),
        executor=executor,
    )
    with silent_listener() as silent_port:
        silent = CliPoller(
            device="silent", address="127.0.0.1",
            config=ios.config(port=silent_port, timeout=3.0), executor=executor,
        )
        refused = CliPoller(
            device="gone", address="127.0.0.1", config=ios.config(port=stopped.port),
            executor=executor,
        )
        (ok, t_ok), (hung, t_hung), (gone, t_gone) = await asyncio.gather(
            timed(live), timed(silent), timed(refused)
        )
    assert ok.ok, ok.detail
    assert len(only(ok, IF_OPER_STATUS)) == 2
    assert t_ok < 2.5  # connect + one command (~1 s), not held up by the silent device
    assert hung.error == "timeout"
    assert reachable(hung) == (0, "timeout")
    assert "SSH login" in hung.detail
    assert 2.9 <= t_hung < 4.0
    assert gone.error == "socket"
    assert reachable(gone) == (0, "socket")
    assert t_gone < 1.0
    await live.aclose()


async def test_a_hung_session_gives_its_thread_back_at_the_timeout() -> None:
    # One thread for two devices. The first logs in and then never shows a prompt:
    # netmiko would wait ~20 s for one; the poller must abort it at its 1 s timeout.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        with FakeCliDevice("cisco_ios", {}, prompt="Please wait") as stuck, FakeCliDevice(
            "cisco_ios", {"show interfaces": IOS_INTERFACES}
        ) as good:
            hung = CliPoller(
                device="stuck", address=stuck.address, config=stuck.config(timeout=1.0),
                executor=pool,
            )
            fine = CliPoller(
                device="good", address=good.address,
                config=good.config(commands=["interfaces"]), executor=pool,
            )
            result, elapsed = await timed(hung)
            assert result.error == "timeout"
            assert reachable(result) == (0, "timeout")
            assert elapsed < 1.5
            async with asyncio.timeout(5):  # would wait ~19 s for the thread otherwise
                after = await fine.poll()
            assert after.ok, after.detail
            # The hung device's next poll starts a fresh job (the old one has ended).
            again = await hung.poll()
            assert again.error == "timeout"
            assert "still closing" not in again.detail
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def test_a_command_that_hangs_on_an_open_session_times_out_and_reconnects(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    poller = CliPoller(
        device="edge1", address=ios.address,
        config=ios.config(commands=["interfaces", "bgp"], timeout=1.5), executor=executor,
    )
    assert (await poller.poll()).ok
    ios.hang("show ip bgp summary")
    result = await poller.poll()
    assert result.error == "timeout"
    assert "'show ip bgp summary'" in result.detail
    ios.release("show ip bgp summary")
    back = await poller.poll()
    assert back.ok, back.detail
    assert seen(back) == [(REACHABLE, "", 1)]  # state survived the broken session
    assert poller.stats["connects"] == 2
    await poller.aclose()


async def test_device_restart_reconnects_and_keeps_the_state(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    poller = CliPoller(
        device="edge1", address=ios.address, config=ios.config(commands=["interfaces"]),
        executor=executor,
    )
    assert (await poller.poll()).ok
    ios.stop()
    down = await poller.poll()
    assert down.error in ("socket", "timeout")
    assert reachable(down)[0] == 0
    ios.set_output("show interfaces", IOS_INTERFACES.replace("Port-channel1 is up, line protocol is up", "Port-channel1 is administratively down, line protocol is down"))
    ios.start()  # same port
    back = await poller.poll()
    assert back.ok, back.detail
    assert seen(back) == [(REACHABLE, "", 1), (IF_OPER_STATUS, "Po1", 2)]
    assert dict(only(back, IF_OPER_STATUS)[0].labels)["admin"] == "down"
    assert poller.stats["connects"] == 2
    await poller.aclose()


async def test_ont_going_offline_with_dying_gasp(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    command = "display ont info summary 0"
    with FakeCliDevice("huawei_smartax", {command: SMARTAX_ONTS}) as olt:
        poller = CliPoller(device="olt1", address=olt.address, config=olt.config(), executor=executor)
        first = await poller.poll()
        assert first.ok, first.detail
        assert {(o.instance, o.value, o.labels.get("last_down_cause", "")) for o in only(first, ONT_STATE)} == {
            ("0/1/0/0", 1, ""),
            ("0/1/0/1", 2, "LOS"),
        }
        olt.set_output(
            command,
            SMARTAX_ONTS.replace(
                "  0    online  1/1/2000 00:00:00 -                   -",
                "  0    offline 1/1/2000 00:00:00 02/01/2000 03:04:05 dying-gasp",
            ).replace("-22.84/2.12", "-/-        "),
        )
        result = await poller.poll()
        assert result.ok, result.detail
        assert seen(result) == [(REACHABLE, "", 1), (ONT_STATE, "0/1/0/0", 2)]
        assert dict(only(result, ONT_STATE)[0].labels) == {"last_down_cause": "dying-gasp"}
        await poller.aclose()


async def test_free_ports_are_never_reused() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50


async def test_strict_host_keys(
    ios: FakeCliDevice, executor: concurrent.futures.ThreadPoolExecutor, tmp_path: Path
) -> None:
    unknown = tmp_path / "known_hosts_empty"
    unknown.write_text("")
    rejected = CliPoller(
        device="edge1", address=ios.address,
        config=ios.config(commands=["interfaces"], known_hosts=str(unknown)), executor=executor,
    )
    result = await rejected.poll()
    assert result.error == "hostkey"
    assert reachable(result) == (1, "hostkey")  # the device answers: not an outage
    known = tmp_path / "known_hosts"
    known.write_text(f"[{ios.address}]:{ios.port} {ios.host_key()}\n")
    accepted = CliPoller(
        device="edge1", address=ios.address,
        config=ios.config(commands=["interfaces"], known_hosts=str(known)), executor=executor,
    )
    ok = await accepted.poll()
    assert ok.ok, ok.detail
    await accepted.aclose()
