"""Customer messages end to end: policy -> Dispatcher + Journal + guardrails -> the email
and sms executors -> a real SMTP server (aiosmtpd, tests/support/smtp_server.py) and a
real TMF681 SMS gateway (tests/support/sms_gateway.py) on loopback, with a fake clock.

Both servers count every delivery, duplicates included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.dispatcher import Dispatcher, build_executors
from actions.executors.notify import IN_FLIGHT_RECHECK
from actions.faults import FaultInjector
from actions.journal import Journal
from actions.policy import Policy
from actions.types import ActionResult, ExecutorContext
from correlator.incidents import Incident, IncidentEvent, compute_impact
from correlator.inventory import Device, Inventory, Subscriber
from tests.support.mosquitto import make_ca_and_server_cert
from tests.support.sms_gateway import SmsGateway
from tests.support.smtp_server import SilentServer, SmtpServer

pytestmark = pytest.mark.integration

# 2026-03-10 12:00 UTC = 12:00 in Lisbon (winter time): outside the quiet hours below
OPENED = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC).timestamp()
HOLD = 300.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sub(sid: str, *, email: str | None = None, phone: str | None = None,
        mail_ok: bool = False, sms_ok: bool = False, name: str | None = None) -> Subscriber:
    return Subscriber(sid, f"A-{sid}", name, "olt1", "p1", None, None, None, 30.0,
                      "residential", None, 0.1, email, phone, mail_ok, sms_ok)


SUBSCRIBERS = [
    sub("s1", email="ana@example.net", phone="+351910000001", mail_ok=True, sms_ok=True,
        name="Ana Silva"),
    sub("s2", email="bruno@example.net", phone="+351910000002"),  # opted out of both
    sub("s3", phone="+351910000003", mail_ok=True, sms_ok=True),  # no e-mail address
    sub("s4", email="carla@example.net", phone="+351910000004", sms_ok=True),  # SMS only
    sub("s5", email="dora@example.net", mail_ok=True, name="Dora"),
]


def inventory(subs: list[Subscriber] | None = None) -> Inventory:
    return Inventory({"olt1": Device("olt1", "access", "cab-1", (), None)},
                     subs if subs is not None else SUBSCRIBERS)


def incident(*, state: str = "open", resolved_after: float | None = None,
             subs: tuple[str, ...] = ("s1", "s2", "s3", "s4", "s5"), planned: bool = False,
             service: str = "down", inc_id: str = "INC-000042") -> Incident:
    impact = compute_impact(inventory(), subs, ("olt1",))
    if service != "down":
        impact = replace(impact, service=service)  # type: ignore[arg-type]
    resolved = None if resolved_after is None else OPENED + resolved_after
    return Incident(
        id=inc_id, root="device:olt1", kind="device_unreachable", device="olt1", port=None,
        role="access", site="cab-1", severity="major", state=state,  # type: ignore[arg-type]
        opened_at=OPENED, updated_at=resolved or OPENED, resolved_at=resolved,
        impact=impact, planned=planned, planned_by=("mw-1",) if planned else (),
    )


def email_target(port: int, **kw: Any) -> dict[str, Any]:
    return {"kind": "email", "host": "127.0.0.1", "port": port, "security": "plaintext",
            "from_address": "Example ISP <noc@example.net>", "hold_down": HOLD,
            "timeout": 2, "backoff_max": 1, **kw}


def sms_target(url: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "sms", "url": url, "token": "sms-s3cret", "sender": "ExampleISP",
            "hold_down": HOLD, "timeout": 2, "backoff_max": 1, **kw}


def policy(targets: dict[str, dict[str, Any]], *, rules: list[dict[str, Any]] | None = None,
           guardrails: dict[str, Any] | None = None) -> Policy:
    return Policy.model_validate({
        "targets": targets,
        "rules": rules or [{"name": "tell-customers", "do": [{"target": t} for t in targets]}],
        "guardrails": guardrails or {},
    })


class Rig:
    """A dispatcher, journal and executors on ``state``, with the live incident the
    executors ask about (a restart is a new Rig on the same state)."""

    def __init__(self, state: Path, pol: Policy, clock: Clock, *,
                 inv: Inventory | None = None, faults: FaultInjector | None = None) -> None:
        state.mkdir(exist_ok=True)
        self.inv = inv or inventory()
        self.live: dict[str, Incident] = {}
        self.context = ExecutorContext(state_dir=state, inventory=lambda: self.inv,
                                       incident=self.live.get, clock=clock)
        self.journal = Journal(state / "journal.db")
        self.context.journal = self.journal
        self.executors = build_executors(pol, state_dir=state, context=self.context)
        self.results: list[ActionResult] = []
        self.dispatcher = Dispatcher(pol, self.journal, self.executors, clock=clock,
                                     faults=faults or FaultInjector(),
                                     on_result=self.results.append)
        self.clock = clock

    def event(self, kind: str, inc: Incident) -> list[Any]:
        self.live[inc.id] = inc
        return self.dispatcher.submit(IncidentEvent(kind, inc, self.clock.t))  # type: ignore[arg-type]

    async def settle(self, rounds: int = 6, step: float = 5.0) -> None:
        """Run due actions, moving the clock past any backoff."""
        for _ in range(rounds):
            await self.dispatcher.run_once()
            self.clock.t += step

    def rows(self, state: str | None = None) -> list[Any]:
        rows = self.journal.query(limit=1000)
        return [r for r in rows if state is None or r.state == state]

    async def close(self) -> None:
        for ex in self.executors.values():
            await ex.aclose()
        self.journal.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    with SmsGateway() as gw:
        yield gw


def rig(rigs: list[Rig], state: Path, pol: Policy, clock: Clock | None = None,
        **kw: Any) -> Rig:
    r = Rig(state, pol, clock or Clock(OPENED), **kw)
    rigs.append(r)
    return r


# --- who gets what ---------------------------------------------------------------------------


async def test_outage_goes_to_consenting_subscribers_after_the_hold_down(
        tmp_path: Path, smtp: SmtpServer, gateway: SmsGateway, rigs: list[Rig],
        caplog: pytest.LogCaptureFixture) -> None:
    pol = policy({"mail": email_target(smtp.port), "text": sms_target(gateway.url)})
    r = rig(rigs, tmp_path / "st", pol)
    with caplog.at_level(logging.INFO, logger="actions.executors.notify"):
        planned = r.event("opened", incident())
    assert sorted((p.target, p.recipient) for p in planned) == [
        ("mail", "s1"), ("mail", "s5"), ("text", "s1"), ("text", "s3"), ("text", "s4")]
    # "why didn't s2 get a message?": the decision's log line says
    assert "2 e-mail outage message(s) planned" in caplog.text
    assert "2 without consent, 1 without e-mail contact" in caplog.text  # s2, s4; s3
    assert await r.dispatcher.run_once() == 0  # inside the hold-down: nothing is due
    r.clock.t = OPENED + HOLD + 1
    await r.settle(rounds=2)
    mails = smtp.snapshot()
    assert sorted(m.rcpt_tos[0] for m in mails) == ["ana@example.net", "dora@example.net"]
    ana = next(m for m in mails if m.rcpt_tos == ["ana@example.net"])
    key = next(p.key for p in planned if p.target == "mail" and p.recipient == "s1")
    assert ana.message["Message-ID"] == f"<{key}@netreflex.example.net>"
    assert ana.message["Subject"] == "Service interruption in your area (INC-000042)"
    assert ana.message["From"] == "Example ISP <noc@example.net>"
    assert ana.mail_from == "noc@example.net"
    assert "Hello Ana Silva," in ana.body and "INC-000042" in ana.body
    sent = {m["receiver"][0]["phoneNumber"]: m for m in gateway.sent.values()}
    assert sorted(sent) == ["+351910000001", "+351910000003", "+351910000004"]
    text = sent["+351910000001"]
    assert text["@type"] == "CommunicationMessage" and text["messageType"] == "SMS"
    assert text["sender"] == {"name": "ExampleISP"}
    assert text["receiver"] == [{"id": "s1", "phoneNumber": "+351910000001"}]
    assert {"name": "incidentId", "value": "INC-000042"} in text["characteristic"]
    reqs = gateway.snapshot()
    assert all(q.headers["Authorization"] == "Bearer sms-s3cret" for q in reqs)
    sms_keys = {p.key for p in planned if p.target == "text"}
    assert {q.headers["Idempotency-Key"] for q in reqs} == sms_keys and len(reqs) == 3
    assert {row.state for row in r.rows()} == {"succeeded"}


async def test_flap_within_the_hold_down_sends_nothing(
        tmp_path: Path, smtp: SmtpServer, gateway: SmsGateway, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port), "text": sms_target(gateway.url)})
    r = rig(rigs, tmp_path / "st", pol)
    r.event("opened", incident())
    r.clock.t = OPENED + 90
    assert r.event("resolved", incident(state="resolved", resolved_after=90)) == []
    r.clock.t = OPENED + HOLD + 1
    await r.settle(rounds=2)
    assert smtp.snapshot() == [] and gateway.snapshot() == []
    blocked = r.rows("blocked")
    assert len(blocked) == 5 and len(r.rows()) == 5  # 2 e-mails, 3 texts
    assert all("resolved within the 5 min hold-down: no message for a flap"
               in (row.last_error or "") for row in blocked)


async def test_all_clear_only_to_those_told_and_550_is_not_retried(
        tmp_path: Path, gateway: SmsGateway, rigs: list[Rig]) -> None:
    # by address: s1's and s5's messages go out at the same time, in either order
    with SmtpServer(refuse={"ana@example.net": "550 5.1.1 <ana@example.net>: mailbox "
                                               "unknown"}) as smtp:
        pol = policy({"mail": email_target(smtp.port)}, rules=[{
            "name": "outages", "when": {"events": ["opened", "updated", "resolved"]},
            "do": [{"target": "mail"}]}])
        r = rig(rigs, tmp_path / "st", pol)
        r.event("opened", incident(subs=("s1",)))
        r.clock.t = OPENED + HOLD + 1
        r.event("updated", replace(incident(), revision=2))  # s5 joins the impact
        await r.settle()
        assert [m.rcpt_tos for m in smtp.snapshot()] == [["dora@example.net"]]
        failed = r.rows("failed")
        assert len(failed) == 1 and failed[0].recipient == "s1" and failed[0].attempts == 1
        assert "550" in (failed[0].last_error or "") and failed[0].status_code == 550
        r.clock.t = OPENED + 3600
        done = incident(state="resolved", resolved_after=3600)
        planned = r.event("resolved", done)
        assert [(p.recipient, p.event) for p in planned] == [("s5", "resolved")]
        await r.settle(rounds=2)
        mails = smtp.snapshot()
    assert [m.rcpt_tos for m in mails] == [["dora@example.net"], ["dora@example.net"]]
    clear = mails[1]
    assert clear.message["Subject"] == "Service restored (INC-000042)"
    assert "Hello Dora," in clear.body and "it lasted 1 h 00 min" in clear.body
    assert clear.message["Message-ID"] != mails[0].message["Message-ID"]


async def test_451_is_retried_with_the_same_message_id(
        tmp_path: Path, rigs: list[Rig]) -> None:
    with SmtpServer(data_replies=["451 4.7.1 greylisted, try again later"]) as smtp:
        pol = policy({"mail": email_target(smtp.port)})
        r = rig(rigs, tmp_path / "st", pol)
        planned = r.event("opened", incident(subs=("s5",)))
        r.clock.t = OPENED + HOLD + 1
        await r.settle()
        mails = smtp.snapshot()
    assert [res.outcome for res in r.results] == ["retry", "succeeded"]
    assert "451" in r.results[0].detail
    assert len(mails) == 1
    assert mails[0].message["Message-ID"] == f"<{planned[0].key}@netreflex.example.net>"
    row = r.journal.get(planned[0].key)
    assert row is not None and row.state == "succeeded" and row.attempts == 2


async def test_sms_gateway_5xx_retried_after_retry_after_and_4xx_recorded(
        tmp_path: Path, rigs: list[Rig]) -> None:
    with SmsGateway(statuses=[503, 422], retry_after=120) as gw:
        pol = policy({"text": sms_target(gw.url)})
        r = rig(rigs, tmp_path / "st", pol)
        planned = r.event("opened", incident(subs=("s1", "s3")))
        r.clock.t = OPENED + HOLD + 1
        await r.dispatcher.run_once()
        outcomes = sorted(res.outcome for res in r.results)
        assert outcomes == ["failed", "retry"]
        retried = next(res for res in r.results if res.outcome == "retry")
        assert retried.retry_after == 120.0
        row = r.journal.get(retried.key)
        assert row is not None and row.next_at >= r.clock.t + 120  # Retry-After honoured
        r.clock.t += 121
        await r.dispatcher.run_once()
        reqs = gw.snapshot()
    failed = next(res for res in r.results if res.outcome == "failed")
    assert "422" in failed.detail and "not retried" in failed.detail
    assert len(reqs) == 3  # 503, 422, then the retry of the 503
    assert {p.key for p in planned} == {q.headers["Idempotency-Key"] for q in reqs}
    assert len(gw.sent) == 1


async def test_quiet_hours_defer_messages_to_the_morning(
        tmp_path: Path, smtp: SmtpServer, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port)}, guardrails={
        "customer_facing": ["email", "sms"],
        "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Lisbon"}})
    late = OPENED + 10 * 3600  # 22:00 in Lisbon
    r = rig(rigs, tmp_path / "st", pol, Clock(late))
    inc = replace(incident(subs=("s1",)), opened_at=late, updated_at=late)
    planned = r.event("opened", inc)
    r.clock.t = late + HOLD + 1
    await r.dispatcher.run_once()
    assert smtp.snapshot() == []
    row = r.journal.get(planned[0].key)
    morning = dt.datetime(2026, 3, 11, 8, 0, tzinfo=dt.UTC).timestamp()
    assert row is not None and row.state == "planned" and row.next_at == morning
    assert any(v["guardrail"] == "quiet_hours" and v["outcome"] == "deferred"
               for v in row.verdicts)
    r.clock.t = morning + 1
    await r.dispatcher.run_once()
    assert [m.rcpt_tos for m in smtp.snapshot()] == [["ana@example.net"]]


async def test_hung_smtp_server_times_out_and_does_not_stall_sms(
        tmp_path: Path, gateway: SmsGateway, rigs: list[Rig]) -> None:
    with SilentServer() as silent:
        pol = policy({"mail": email_target(silent.port, timeout=1.0),
                      "text": sms_target(gateway.url)})
        r = rig(rigs, tmp_path / "st", pol)
        r.event("opened", incident(subs=("s5", "s4")))
        r.clock.t = OPENED + HOLD + 1
        stop = asyncio.Event()
        task = asyncio.create_task(r.dispatcher.run(stop))
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(10):
                while not any(res.executor == "sms" for res in r.results):
                    await asyncio.sleep(0.01)
                sms_at = time.monotonic() - t0
                while not any(res.executor == "email" for res in r.results):
                    await asyncio.sleep(0.01)
                mail_at = time.monotonic() - t0
        finally:
            stop.set()
            await task
            await r.dispatcher.drain(2)
    assert sms_at < 0.9 < mail_at < 4.0
    mail = next(res for res in r.results if res.executor == "email")
    assert mail.outcome == "retry" and "timed out" in mail.detail
    assert [res.outcome for res in r.results if res.executor == "sms"] == ["succeeded"]


async def test_trickling_smtp_server_is_cut_off_at_the_deadline(
        tmp_path: Path, rigs: list[Rig]) -> None:
    """Every read gets a byte in time, so only the deadline on the whole conversation
    (which shuts the socket down under the worker thread) ends it."""
    with SilentServer(trickle=0.2) as slow:
        pol = policy({"mail": email_target(slow.port, timeout=1.0)})
        r = rig(rigs, tmp_path / "st", pol)
        r.event("opened", incident(subs=("s5",)))
        r.clock.t = OPENED + HOLD + 1
        t0 = time.monotonic()
        await r.dispatcher.run_once()
        took = time.monotonic() - t0
        deadline = time.monotonic() + 3
        while slow.dropped == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert slow.dropped == 1  # the worker thread let go of the connection
    assert 0.9 < took < 2.5
    assert [res.outcome for res in r.results] == ["retry"]
    assert "timed out after 1s" in r.results[0].detail


# --- never two copies ------------------------------------------------------------------------


async def test_two_rules_send_one_copy(
        tmp_path: Path, smtp: SmtpServer, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port), "mail-2": email_target(smtp.port)},
                 rules=[{"name": "outages", "do": [{"target": "mail"}]},
                        {"name": "vip", "do": [{"target": "mail"}, {"target": "mail-2"}]}])
    r = rig(rigs, tmp_path / "st", pol)
    planned = r.event("opened", incident(subs=("s1",)))
    assert len(planned) == 3  # three decisions for one subscriber ...
    r.clock.t = OPENED + HOLD + 1
    await r.settle(rounds=2)
    assert [m.rcpt_tos for m in smtp.snapshot()] == [["ana@example.net"]]  # ... one e-mail
    assert len(r.rows("succeeded")) == 1 and len(r.rows("planned")) == 2  # waiting on it
    r.clock.t += IN_FLIGHT_RECHECK + 1
    await r.settle(rounds=2)
    blocked = r.rows("blocked")
    assert len(blocked) == 2 and len(r.rows("succeeded")) == 1
    assert all("never two copies" in (row.last_error or "") for row in blocked)
    assert len(smtp.snapshot()) == 1


async def test_when_the_first_copy_is_not_delivered_the_next_one_goes(
        tmp_path: Path, rigs: list[Rig]) -> None:
    """Never two copies must not become none: the copy that goes first is picked by key,
    and if it fails for good (or is denied, or expires) the next one takes its place."""
    with SmtpServer(rcpt_replies=["550 5.1.1 <ana@example.net>: mailbox unknown"]) as smtp:
        pol = policy({"mail": email_target(smtp.port), "mail-2": email_target(smtp.port)},
                     rules=[{"name": "outages", "do": [{"target": "mail"},
                                                       {"target": "mail-2"}]}])
        r = rig(rigs, tmp_path / "st", pol)
        first, second = sorted(r.event("opened", incident(subs=("s1",))),
                               key=lambda p: p.key)
        r.clock.t = OPENED + HOLD + 1
        await r.settle(rounds=2)
        journal = r.dispatcher.journal
        assert journal.get(first.key).state == "failed"  # type: ignore[union-attr]
        assert journal.get(second.key).state == "planned"  # type: ignore[union-attr]
        assert smtp.snapshot() == []
        r.clock.t += IN_FLIGHT_RECHECK + 1
        await r.settle(rounds=2)
        assert journal.get(second.key).state == "succeeded"  # type: ignore[union-attr]
        assert [m.rcpt_tos for m in smtp.snapshot()] == [["ana@example.net"]]


async def test_restart_does_not_resend_and_all_clear_survives_it(
        tmp_path: Path, smtp: SmtpServer, gateway: SmsGateway, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port), "text": sms_target(gateway.url)})
    clock = Clock(OPENED)
    r1 = rig(rigs, tmp_path / "st", pol, clock)
    r1.event("opened", incident(subs=("s1",)))
    clock.t = OPENED + HOLD + 1
    await r1.settle(rounds=2)
    await r1.close()
    rigs.remove(r1)
    r2 = rig(rigs, tmp_path / "st", pol, clock)
    assert r2.event("opened", incident(subs=("s1",))) == []  # same decision: not again
    await r2.settle(rounds=2)
    clock.t = OPENED + 1800
    assert len(r2.event("resolved", incident(state="resolved", resolved_after=1800))) == 2
    await r2.settle(rounds=2)
    assert len(r2.event("resolved", incident(state="resolved", resolved_after=1800))) == 0
    assert [m.message["Subject"] for m in smtp.snapshot()] == [
        "Service interruption in your area (INC-000042)", "Service restored (INC-000042)"]
    assert len(gateway.snapshot()) == 2 and len(gateway.sent) == 2


class _Killed(BaseException):
    """The process died (like kill -9) at a fault point: nothing after it ran."""


class DieAfterSend(FaultInjector):
    def __call__(self, point: str, key: str) -> None:
        if point == "after_send":
            raise _Killed(key)


async def test_crash_between_send_and_journal_resends_with_the_same_ids(
        tmp_path: Path, smtp: SmtpServer, gateway: SmsGateway, rigs: list[Rig]) -> None:
    """The one window no sender can close: the SMS gateway drops the copy by its
    Idempotency-Key; SMTP has no such thing, so the e-mail goes twice -- with one
    Message-ID, which mail clients use to show it once."""
    clock = Clock(OPENED)
    pol = policy({"mail": email_target(smtp.port), "text": sms_target(gateway.url)})
    r1 = rig(rigs, tmp_path / "st", pol, clock, faults=DieAfterSend())
    r1.event("opened", incident(subs=("s1",)))
    clock.t = OPENED + HOLD + 1
    with pytest.raises(_Killed):
        await r1.dispatcher.run_once()
    await asyncio.sleep(0.3)  # the other action finishes its send too
    assert {row.state for row in r1.rows()} == {"running"}
    await r1.close()
    rigs.remove(r1)
    r2 = rig(rigs, tmp_path / "st", pol, clock)
    r2.live["INC-000042"] = incident(subs=("s1",))  # the incident store survives too
    await r2.settle(rounds=2)
    assert {row.state for row in r2.rows()} == {"succeeded"}
    mails = smtp.snapshot()
    assert len(mails) == 2 and len({m.message["Message-ID"] for m in mails}) == 1
    assert len(gateway.snapshot()) == 2 and len(gateway.sent) == 1


# --- opt-out, planned work, degraded service ----------------------------------------------


async def test_opt_out_after_the_decision_is_honoured(
        tmp_path: Path, smtp: SmtpServer, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port)})
    r = rig(rigs, tmp_path / "st", pol)
    planned = r.event("opened", incident(subs=("s1", "s5")))
    assert len(planned) == 2
    # s1 withdraws consent during the hold-down (the CRM export is reloaded)
    r.inv = inventory([replace(s, consent_email=False) if s.id == "s1" else s
                       for s in SUBSCRIBERS])
    r.clock.t = OPENED + HOLD + 1
    await r.settle(rounds=2)
    assert [m.rcpt_tos for m in smtp.snapshot()] == [["dora@example.net"]]
    row = next(x for x in r.rows() if x.recipient == "s1")
    assert row.state == "blocked" and "opted out" in (row.last_error or "")


async def test_planned_work_and_degraded_service_send_nothing_by_default(
        tmp_path: Path, smtp: SmtpServer, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port)})
    r = rig(rigs, tmp_path / "st", pol)
    assert r.event("opened", incident(planned=True)) == []
    assert r.event("opened", incident(service="degraded", inc_id="INC-000043")) == []
    pol2 = policy({"mail": email_target(smtp.port, degraded=True,
                                        degraded_body="Slow service, {subscriber.name}.")})
    r2 = rig(rigs, tmp_path / "st2", pol2)
    assert len(r2.event("opened", incident(service="degraded", subs=("s5",)))) == 1
    r2.clock.t = OPENED + HOLD + 1
    await r2.settle(rounds=2)
    mails = smtp.snapshot()
    assert [m.message["Subject"] for m in mails] == ["Slower service in your area (INC-000042)"]
    assert mails[0].body.strip() == "Slow service, Dora."


async def test_incident_that_became_planned_gets_no_outage_message(
        tmp_path: Path, smtp: SmtpServer, rigs: list[Rig]) -> None:
    pol = policy({"mail": email_target(smtp.port)})
    r = rig(rigs, tmp_path / "st", pol)
    r.event("opened", incident(subs=("s5",)))
    r.live["INC-000042"] = incident(subs=("s5",), planned=True)  # a window was added late
    r.clock.t = OPENED + HOLD + 1
    await r.settle(rounds=2)
    assert smtp.snapshot() == []
    assert "planned work (mw-1)" in (r.rows("blocked")[0].last_error or "")


# --- TLS -----------------------------------------------------------------------------------


async def test_starttls_with_login_and_implicit_tls(tmp_path: Path, rigs: list[Rig]) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    users = {"netreflex": "mail-s3cret"}
    with SmtpServer(tls=(cert, key), users=users) as starttls, \
            SmtpServer(tls=(cert, key), implicit=True) as implicit:
        pol = policy({
            "a": email_target(starttls.port, security="starttls", tls={"ca_file": str(ca)},
                              username="netreflex", password="mail-s3cret"),
            "b": email_target(implicit.port, security="tls", tls={"ca_file": str(ca)})},
            rules=[{"name": "a", "do": [{"target": "a"}], "when": {"severity": ["major"]}},
                   {"name": "b", "do": [{"target": "b"}], "when": {"events": ["opened"],
                                                                   "severity": ["critical"]}}])
        r = rig(rigs, tmp_path / "st", pol)
        r.event("opened", incident(subs=("s5",)))
        r.event("opened", replace(incident(subs=("s1",), inc_id="INC-000044"),
                                  severity="critical"))
        r.clock.t = OPENED + HOLD + 1
        await r.settle(rounds=2)
        got_a, got_b = starttls.snapshot(), implicit.snapshot()
    assert [(m.rcpt_tos, m.login, m.tls) for m in got_a] == [
        (["dora@example.net"], "netreflex", True)]
    assert [(m.rcpt_tos, m.tls) for m in got_b] == [(["ana@example.net"], True)]


async def test_untrusted_certificate_fails_with_what_to_fix(
        tmp_path: Path, rigs: list[Rig]) -> None:
    _, cert, key = make_ca_and_server_cert(tmp_path)
    with SmtpServer(tls=(cert, key)) as srv:
        pol = policy({"mail": email_target(srv.port, security="starttls")})
        r = rig(rigs, tmp_path / "st", pol)
        r.event("opened", incident(subs=("s5",)))
        r.clock.t = OPENED + HOLD + 1
        await r.settle(rounds=2)
        assert srv.snapshot() == []
    row = r.rows()[0]
    assert row.state == "failed" and row.attempts == 1
    assert "certificate not trusted" in (row.last_error or "")
    assert "tls.ca_file" in (row.last_error or "")
