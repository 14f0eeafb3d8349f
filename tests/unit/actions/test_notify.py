"""Customer messages without sockets: target checks at policy load (file:line), what an
SMTP answer means, the message and TMF681 body built, and the fan-out decisions."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.dispatcher import build_payload, plans_for
from actions.executors.email import EmailExecutor, build_message, message_id, smtp_verdict
from actions.executors.notify import mask
from actions.executors.sms import SmsExecutor, communication_message, e164, sms_text
from actions.journal import Journal
from actions.policy import Policy, load_policy
from actions.targets import EmailTarget, SmsTarget
from actions.templates import (
    SUBSCRIBER_VARIABLES,
    duration_text,
    subscriber_variables,
)
from actions.types import ActionPlan, ExecutorContext
from correlator.incidents import Incident, IncidentEvent, compute_impact
from correlator.inventory import Device, Inventory, Subscriber
from probes.source import SourceError

T0 = 1_700_000_000.0


def sub(sid: str, email: str | None, mail_ok: bool, phone: str | None = None,
        sms_ok: bool = False) -> Subscriber:
    return Subscriber(sid, None, None, "olt1", "p1", None, None, None, 10.0, "residential",
                      None, 0.0, email, phone, mail_ok, sms_ok)


INV = Inventory({"olt1": Device("olt1", "access", "north", (), None)}, [
    sub("s1", "a@example.net", True, "+351910000001", True),
    sub("s2", "b@example.net", False, "+351910000002", False),
    sub("s3", None, True, None, True),
])


def incident(**kw: Any) -> Incident:
    base = Incident(
        id="INC-1", root="device:olt1", kind="device_unreachable", device="olt1", port=None,
        role="access", site="north", severity="major", state="open", opened_at=T0,
        updated_at=T0, impact=compute_impact(INV, ("s1", "s2", "s3"), ("olt1",)))
    return replace(base, **kw)


def email_policy(**target: Any) -> Policy:
    return Policy.model_validate({
        "targets": {"mail": {"kind": "email", "host": "smtp.example.net",
                             "from_address": "ISP <noc@example.net>", **target}},
        "rules": [{"name": "r", "when": {"events": ["opened", "updated", "resolved",
                                                  "merged"]},
                   "do": [{"target": "mail"}]}]})


def executors(pol: Policy, journal: Journal | None = None) -> dict[str, Any]:
    ctx = ExecutorContext(inventory=lambda: INV, journal=journal)
    return {"mail": EmailExecutor("mail", pol.targets["mail"], context=ctx)}  # type: ignore[arg-type]


# --- config ----------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "policy.yaml"
    f.write_text(text)
    return f


def test_unknown_template_variable_is_a_check_error_with_file_and_line(tmp_path: Path) -> None:
    f = write(tmp_path, """\
targets:
  mail:
    kind: email
    host: smtp.example.net
    from_address: noc@example.net
    body: "Dear {subscriber.nmae}, {incident.title}"
rules:
  - {name: r, do: [{target: mail}]}
""")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    msg = str(err.value)
    assert f"{f}:6:" in msg and "targets.mail" in msg and "body" in msg
    assert "unknown variable {subscriber.nmae}; did you mean subscriber.name?" in msg


def test_unknown_executor_kind_is_a_check_error(tmp_path: Path) -> None:
    f = write(tmp_path, """\
targets:
  text:
    kind: smss
    url: http://127.0.0.1:9/x
rules:
  - {name: r, do: [{target: text}]}
""")
    with pytest.raises(SourceError) as err:
        load_policy(f)
    assert f"{f}:3:" in str(err.value) or f"{f}:2:" in str(err.value)
    assert "sms" in str(err.value) and "email" in str(err.value)


@pytest.mark.parametrize(("fields", "needle"), [
    ({"security": "plaintext"}, "in clear text to smtp.example.net"),
    ({"password": "x"}, "password needs username"),
    ({"from_address": "not an address"}, "not an e-mail address"),
    ({"from_address": "a@b.net\r\nBcc: x@y.net"}, "not an e-mail address"),
    ({"hold_down": "-5m"}, "hold_down"),
])
def test_unsafe_or_wrong_email_targets_are_refused(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        email_policy(**fields)


def test_plaintext_is_fine_to_a_relay_on_this_host_and_ports_follow_security() -> None:
    assert email_policy(host="127.0.0.1", security="plaintext").targets[
        "mail"].effective_port == 25  # type: ignore[union-attr]
    assert email_policy(host="localhost", security="plaintext").targets[
        "mail"].effective_port == 25  # type: ignore[union-attr]
    assert email_policy().targets["mail"].effective_port == 587  # type: ignore[union-attr]
    assert email_policy(security="tls").targets["mail"].effective_port == 465  # type: ignore[union-attr]
    assert email_policy(hold_down="10m").targets["mail"].hold_down == 600  # type: ignore[union-attr]


# --- SMTP answers ------------------------------------------------------------------------------


def test_smtp_answers_5xx_fail_4xx_and_network_trouble_retry() -> None:
    refused = smtplib.SMTPRecipientsRefused({"a@x.net": (550, b"5.1.1 no such user")})
    assert smtp_verdict(refused)[:1] == ("failed",) and smtp_verdict(refused)[2] == 550
    busy = smtplib.SMTPRecipientsRefused({"a@x.net": (452, b"mailbox full")})
    assert smtp_verdict(busy)[0] == "retry"
    assert smtp_verdict(smtplib.SMTPDataError(554, b"spam"))[0] == "failed"
    assert smtp_verdict(smtplib.SMTPDataError(451, b"greylisted"))[0] == "retry"
    auth = smtp_verdict(smtplib.SMTPAuthenticationError(535, b"bad credentials"))
    assert auth[0] == "failed" and "check username and password" in auth[1]
    assert smtp_verdict(smtplib.SMTPAuthenticationError(454, b"try later"))[0] == "retry"
    assert smtp_verdict(ConnectionRefusedError(111, "refused"))[0] == "retry"
    assert smtp_verdict(TimeoutError("timed out"))[0] == "retry"
    assert smtp_verdict(smtplib.SMTPServerDisconnected("closed"))[0] == "retry"
    starttls = smtp_verdict(smtplib.SMTPNotSupportedError("STARTTLS extension not supported"))
    assert starttls[0] == "failed" and "offers STARTTLS" in starttls[1]
    cert = ssl.SSLCertVerificationError(1, "verify failed")
    cert.verify_message = "self-signed certificate"
    got = smtp_verdict(cert)
    assert got[0] == "failed" and "tls.ca_file" in got[1]


# --- building messages ----------------------------------------------------------------------


def variables(name: str | None = "Ana\r\nBcc: evil@x.net", **inc: Any) -> dict[str, object]:
    event = IncidentEvent("opened", incident(**inc), T0)
    return subscriber_variables(build_payload(event, "r", "k"), sid="s1", name=name,
                                account=None, sla_tier="residential")


def plan(key: str = "nrx-abc", event: str = "opened") -> ActionPlan:
    return ActionPlan(key=key, incident_id="INC-1", event=event, rule="r", target="mail",
                      executor="email", payload={}, recipient="s1")


def test_email_headers_carry_the_action_key_and_no_injected_lines() -> None:
    target = email_policy(subject="Outage for {subscriber.name}").targets["mail"]
    assert isinstance(target, EmailTarget)
    msg = build_message(target, plan(), "a@example.net", variables(), "outage", False, T0)
    assert msg["Message-ID"] == "<nrx-abc@netreflex.example.net>" == message_id(
        "nrx-abc", "ISP <noc@example.net>")
    assert msg["Subject"] == "Outage for Ana Bcc: evil@x.net"  # one line: no new header
    assert msg["Bcc"] is None and msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "a@example.net" and msg["X-Netreflex-Incident"] == "INC-1"


def test_subscriber_variables_cover_the_sample_list_with_their_types() -> None:
    v = variables(name=None, state="resolved", resolved_at=T0 + 3900)
    assert set(v) == set(SUBSCRIBER_VARIABLES)
    for name, sample in SUBSCRIBER_VARIABLES.items():
        assert type(v[name]) is type(sample), name
    assert v["subscriber.name"] == "customer"
    assert v["incident.duration"] == "1 h 05 min"
    assert variables()["incident.duration"] == "" == variables()["incident.resolved_at"]
    assert duration_text(20) == "less than a minute" and duration_text(25 * 60) == "25 min"


@pytest.mark.parametrize(("written", "sent"), [
    ("+1 555 0101", "+15550101"), ("+1 (555) 010-1", "+15550101"), ("0910 000 001", "0910000001"),
])
def test_phone_numbers_go_to_the_gateway_as_digits(written: str, sent: str) -> None:
    assert e164(written) == sent


def test_sms_body_is_a_tmf681_communication_message_and_long_texts_are_cut() -> None:
    target = SmsTarget.model_validate({"kind": "sms", "url": "https://sms.example.net/cm",
                                       "sender": "+351210000000", "max_chars": 70,
                                       "body": "{incident.title} " * 10})
    text = sms_text(target, variables(), "outage", False)
    assert len(text) <= 70 and text.endswith("...") and text.isascii()  # stays GSM 7-bit
    body = communication_message(target, plan(), "+351 91 000-0001", text, "outage")
    assert body["@type"] == "CommunicationMessage" and body["messageType"] == "SMS"
    assert body["sender"] == {"phoneNumber": "+351210000000"}
    assert body["receiver"] == [{"id": "s1", "phoneNumber": "+351910000001"}]  # E.164
    assert {"name": "phase", "value": "outage"} in body["characteristic"]


def test_addresses_are_masked_in_details() -> None:
    assert mask("ana.silva@example.net") == "a***@example.net"
    assert mask("+351910000001") == "+351*******01"


# --- fan-out -----------------------------------------------------------------------------------


def test_fan_out_only_to_contact_and_consent_with_the_hold_down(tmp_path: Path) -> None:
    pol = email_policy(hold_down="2m")
    plans, broken = plans_for(pol, IncidentEvent("opened", incident(), T0), executors(pol))
    assert not broken
    assert [(p.recipient, p.not_before) for p in plans] == [("s1", T0 + 120)]
    assert plans[0].payload["notify"] == {"phase": "outage", "channel": "email"}
    assert plans[0].payload["incident"]["impact"]["subscribers"] == []  # not per row


def test_sms_fan_out_uses_phone_and_sms_consent() -> None:
    pol = Policy.model_validate({
        "targets": {"t": {"kind": "sms", "url": "https://sms.example.net/cm", "sender": "X"}},
        "rules": [{"name": "r", "do": [{"target": "t"}]}]})
    ex = SmsExecutor("t", pol.targets["t"],  # type: ignore[arg-type]
                     context=ExecutorContext(inventory=lambda: INV))
    plans, _ = plans_for(pol, IncidentEvent("opened", incident(), T0), {"t": ex})
    assert [p.recipient for p in plans] == ["s1"]  # s3 consents but has no phone


def test_no_fan_out_for_planned_merged_or_degraded_incidents() -> None:
    pol = email_policy()
    ex = executors(pol)
    assert plans_for(pol, IncidentEvent("opened", incident(planned=True), T0), ex)[0] == []
    assert plans_for(pol, IncidentEvent("merged", incident(state="merged"), T0), ex)[0] == []
    degraded = incident(impact=replace(incident().impact, service="degraded"))
    assert plans_for(pol, IncidentEvent("opened", degraded, T0), ex)[0] == []
    pol2 = email_policy(degraded=True)
    assert len(plans_for(pol2, IncidentEvent("opened", degraded, T0), executors(pol2))[0]) == 1


def test_without_an_inventory_the_decision_fails_visibly() -> None:
    pol = email_policy()
    ex = {"mail": EmailExecutor("mail", pol.targets["mail"])}  # type: ignore[arg-type]
    plans, broken = plans_for(pol, IncidentEvent("opened", incident(), T0), ex)
    assert len(plans) == 1 and "no inventory" in broken[plans[0].key]


def test_update_reaches_only_subscribers_who_joined_and_all_clear_only_those_told(
        tmp_path: Path) -> None:
    pol = email_policy()
    journal = Journal(tmp_path / "j.db")
    ex = executors(pol, journal)
    small = replace(incident(), impact=compute_impact(INV, ("s2", "s3"), ("olt1",)))
    assert plans_for(pol, IncidentEvent("opened", small, T0), ex)[0] == []
    first, _ = plans_for(pol, IncidentEvent("updated", replace(incident(), revision=2), T0), ex)
    assert [p.recipient for p in first] == ["s1"]
    journal.plan(first, T0)
    again, _ = plans_for(pol, IncidentEvent("updated", replace(incident(), revision=3), T0), ex)
    assert again == []  # s1 already has its outage message
    done = incident(state="resolved", resolved_at=T0 + 600)
    assert plans_for(pol, IncidentEvent("resolved", done, T0 + 600), ex)[0] == []  # not sent yet
    journal.start(first[0].key, T0 + 300)
    journal.finish(first[0].key, "succeeded", T0 + 301)
    clear, _ = plans_for(pol, IncidentEvent("resolved", done, T0 + 600), ex)
    assert [(p.recipient, p.payload["notify"]) for p in clear] == [
        ("s1", {"phase": "all_clear", "channel": "email", "told_by": first[0].key})]
    # closed because its device left the inventory: nobody saw service come back
    gone = replace(done, closed_by="inventory")
    assert plans_for(pol, IncidentEvent("resolved", gone, T0 + 600), ex)[0] == []
    journal.close()
