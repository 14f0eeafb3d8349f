"""Remediation: one allowlisted template on the incident's device, then verify the effect.

``cli`` templates log in with the device's CLI probe credentials (netmiko, in this
executor's own small thread pool; :mod:`probes.cli.session`) and send the rendered lines
with ``send_config_set`` (config mode) or ``send_command`` (exec mode) -- lists of single
lines written to the SSH channel, never a shell. The session is bounded by the target's
``timeout``; when it runs out the session is cut from outside. ``snmp`` templates SET
ifAdminStatus down then up with the device's SNMP credentials (pysnmp), the ifIndex taken
from the poller's interface table (or an ifName walk).

Then, after ``settle`` seconds, the fix is re-polled (the template's verify command, or
ifOperStatus) up to ``verify_attempts`` times. Back: outcome ``succeeded`` ("mitigated:
...") and ``context.on_mitigated`` is called; still down: outcome ``failed``
("not mitigated: ...") and ``context.on_remediation_failed``, which policy can
escalate -- as for a fix that failed for good on the way (a session cut after the
``shutdown``, a SET the agent refused, a port that could not be brought back up) and for
a failure before anything was sent once its last attempt (``max_attempts``) is used up.
A value that does not fit its parameter, a device without access (not polled, or
passive: no CLI/SNMP credentials) or a platform the template lacks: ``blocked``, nothing
sent. Only failures before anything was sent are retried (no TCP connect, no SSH banner,
the ifName walk); anything after, never.

Before sending (not for a dry run) the incident is looked up as the correlator has it
now (``context.incident``): an action may have waited long (approval, blast radius, rate
limit, circuit breaker, backoff), and fixing what has since ended is a self-inflicted
outage. Resolved, merged, already mitigated, or not known (no lookup either):
``blocked``, nothing sent.

The SNMP bounce: once the down SET was sent it counts as applied even without an answer
(UDP: a lost reply does not mean the agent ignored it), and the up SET is then always
attempted (three tries) -- after a timeout, an error or a cancellation in between. Only
an agent that answered the down SET with an error (``noAccess``, ...) left the port
alone; then nothing more is sent.

Across restarts, per action (``remediation.db`` in the state directory, written with
``synchronous=FULL``): ``applying`` before the first command, ``applied`` (or
``failed``) once the apply step ended; a failure before anything was sent removes the
row, so its retry starts afresh. The apply step is shielded from cancellation: a
shutdown waits for it to end (it is bounded by ``timeout`` per session or request, plus
``down_for``) instead of cutting it in half, and the action stays ``running`` in the
journal. When the daemon resumes such an action, execute runs again and reads the row:
``applied`` -- the fix is not sent again, only verified; ``failed`` -- failed again, not
re-sent; ``applying`` -- the process died while the fix was being sent, so it may or may
not have reached the device: ``blocked`` ("may have been applied before a restart; check
by hand") and ``remediation_failed`` is raised. So a fix is sent at most once per action,
kill -9 included; what is not guaranteed is that a fix cut off by kill -9 was completed
(a port may be left shut -- that is what the page is for).

Device access comes from ``context.devices``: a callable ``name ->
DeviceAccess | None`` the daemon fills from its current config (reloads included).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from netmiko import ConfigInvalidException
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_MD5,
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CBC56_DES,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES_BLUMENTHAL,
    USM_PRIV_CFB256_AES_BLUMENTHAL,
    USM_PRIV_NONE,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_walk_cmd,
    get_cmd,
    set_cmd,
)
from pysnmp.proto.rfc1902 import Integer32

from actions.policy import span
from actions.remediation_templates import (
    ERROR_PATTERNS,
    CliTemplate,
    Refused,
    SnmpTemplate,
    bind,
    lines,
)
from actions.state_file import StateFile
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext
from probes.cli.config import CliProbeConfig
from probes.cli.session import CliJob, abort, classify, cut, open_session
from probes.snmp import SnmpCredentials, SnmpProbeConfig, SnmpV2c, engine_id

log = logging.getLogger(__name__)

IF_ADMIN_STATUS = "1.3.6.1.2.1.2.2.1.7"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
UP, DOWN = 1, 2
_UP_TRIES = 3  # a port we took down is worth a few tries to bring back

_AUTH = {"MD5": USM_AUTH_HMAC96_MD5, "SHA": USM_AUTH_HMAC96_SHA,
         "SHA224": USM_AUTH_HMAC128_SHA224, "SHA256": USM_AUTH_HMAC192_SHA256,
         "SHA384": USM_AUTH_HMAC256_SHA384, "SHA512": USM_AUTH_HMAC384_SHA512}
_PRIV = {"DES": USM_PRIV_CBC56_DES, "AES": USM_PRIV_CFB128_AES,
         "AES192": USM_PRIV_CFB192_AES_BLUMENTHAL, "AES256": USM_PRIV_CFB256_AES_BLUMENTHAL}


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    """How to reach one device to change it: its CLI login and/or SNMP credentials (the
    ones its probes use), and ``if_index(port)``: the ifIndex the poller knows for an
    interface name (None: not known)."""

    name: str
    address: str
    cli: CliProbeConfig | None = None
    snmp: SnmpCredentials | None = None
    snmp_port: int = 161
    if_index: Callable[[str], int | None] | None = None

    @classmethod
    def from_probes(cls, name: str, address: str, probes: Iterable[object],
                    credentials: Mapping[str, SnmpCredentials],
                    if_index: Callable[[str], int | None] | None = None) -> DeviceAccess:
        """From a configured device's probes: the first CLI and the first SNMP probe."""
        cli = next((p for p in probes if isinstance(p, CliProbeConfig)), None)
        snmp = next((p for p in probes if isinstance(p, SnmpProbeConfig)), None)
        return cls(name=name, address=address, cli=cli,
                   snmp=None if snmp is None else credentials.get(snmp.credentials),
                   snmp_port=161 if snmp is None else snmp.port, if_index=if_index)


class _Failed(Exception):
    """The fix could not be applied. ``sent``: whether anything may have reached the
    device; ``refused``: the device answered no (an SNMP error status)."""

    def __init__(self, detail: str, *, sent: bool, retry: bool = False,
                 refused: bool = False) -> None:
        super().__init__(detail)
        self.sent = sent
        self.retry = retry and not sent
        self.refused = refused


Applied = Literal["applying", "applied", "failed"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS applies (
    action_key TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    incident TEXT NOT NULL,
    device TEXT NOT NULL,
    commands TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('applying', 'applied', 'failed')),
    detail TEXT,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS applies_by_element ON applies (device, commands, started_at);
"""


class ApplyRecord(StateFile):
    """Which actions' fixes were being sent or were sent: ``remediation.db`` in the state
    directory, one row per action key (in memory when ``state_dir`` is None: tests)."""

    FILE_NAME = "remediation.db"

    SCHEMA = _SCHEMA
    WHAT = "remediation record"

    def get(self, key: str) -> tuple[Applied, str] | None:
        """(state, detail) of the action ``key``, or None: nothing was sent for it."""
        row = self._exec("SELECT state, detail FROM applies WHERE action_key=?",
                         (key,)).fetchone()
        return None if row is None else (row[0], row[1] or "")

    def begin(self, plan: ActionPlan, device: str, commands: list[str], now: float) -> None:
        self._exec("INSERT INTO applies(action_key, target, incident, device, commands, "
                   "state, detail, started_at, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, 'applying', NULL, ?, ?)",
                   (plan.key, plan.target, plan.incident_id, device, "; ".join(commands),
                    now, now))

    def end(self, key: str, state: Literal["applied", "failed"], detail: str,
            now: float) -> None:
        self._exec("UPDATE applies SET state=?, detail=?, updated_at=? WHERE action_key=?",
                   (state, detail, now, key))

    def last_sent(self, device: str, commands: list[str]) -> float | None:
        """When the same commands last went (or may have gone) to ``device``, by any
        action of any target."""
        row = self._exec("SELECT MAX(started_at) FROM applies WHERE device=? AND commands=?",
                         (device, "; ".join(commands))).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def forget(self, key: str) -> None:
        """Nothing reached the device: a retry may send the fix."""
        self._exec("DELETE FROM applies WHERE action_key=?", (key,))


class RemediationExecutor:
    kind = "remediation"

    def __init__(self, name: str, target: RemediationTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self.template = target.chosen
        self.context = context or ExecutorContext(state_dir=state_dir)
        self.concurrency = target.concurrency
        """How many of this target's actions run at once (the dispatcher's own slots for
        this target: a slow fix never holds the slots other executors use)."""
        self.record = ApplyRecord(state_dir if state_dir is not None
                                  else self.context.state_dir)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4,
                                                           thread_name_prefix="remediate")
        self._engine: SnmpEngine | None = None

    # --- the action --------------------------------------------------------------------

    async def execute(self, plan: ActionPlan, *, dry_run: bool) -> ActionResult:
        inc: Mapping[str, Any] = plan.payload.get("incident") or {}
        device = str(inc.get("device") or "")
        what = f"{self.target.template} on {device}"

        def result(outcome: Any, detail: str) -> ActionResult:
            return ActionResult(plan.key, self.name, self.kind, outcome, detail)

        lookup = self.context.devices
        access = lookup(device) if lookup is not None and device else None
        if access is None:
            return result("blocked", f"{what}: device {device or '?'} is not configured "
                          "for polling here (devices:), so there is no access to change it")
        try:
            variables = bind(self.template.params, inc)
            if isinstance(self.template, CliTemplate):
                commands, verify, platform = self._cli_plan(access, variables)
            else:
                commands, verify, platform = self._snmp_plan(access, variables)
        except Refused as exc:
            log.warning("remediation refused action=%s target=%s incident=%s: %s",
                        plan.key, self.name, plan.incident_id, exc)
            return result("blocked", f"{what}: {exc}")
        if dry_run:
            return result("dry_run", f"would send to {device} ({platform}): "
                          + "; ".join(commands))
        before = self.record.get(plan.key)
        if before is not None:
            return await self._resume(plan, before, access, variables, verify, what)
        stale = self._not_open(plan.incident_id) or self._too_soon(device, commands)
        if stale is not None:
            log.warning("remediation not sent action=%s target=%s incident=%s: %s",
                        plan.key, self.name, plan.incident_id, stale)
            return result("blocked", f"{what}: nothing sent: {stale}")
        self.record.begin(plan, device, commands, self.context.clock())
        task = asyncio.ensure_future(self._apply(access, variables, commands))
        cancelled = await _finish(task)  # a shutdown does not cut a fix in half
        try:
            done = task.result()
        except _Failed as exc:
            log.error("remediation failed action=%s target=%s device=%s: %s", plan.key,
                      self.name, device, exc)
            if exc.sent:
                self.record.end(plan.key, "failed", str(exc), self.context.clock())
            else:
                self.record.forget(plan.key)
            if exc.retry and plan.attempts + 1 < self.target.max_attempts:
                _reraise(cancelled)
                return result("retry", f"{what}: {exc}")
            # given up (and perhaps half applied: a port left shut): escalate
            self._hook("remediation_failed", plan, f"not mitigated: {what}: {exc}")
            _reraise(cancelled)
            return result("retry" if exc.retry else "failed", f"{what}: {exc}")
        self.record.end(plan.key, "applied", done, self.context.clock())
        log.warning("remediation applied action=%s target=%s incident=%s device=%s: %s",
                    plan.key, self.name, plan.incident_id, device, done)
        _reraise(cancelled)  # stays running in the journal: verified when resumed
        return await self._verified(plan, access, variables, verify, what, done)

    async def _resume(self, plan: ActionPlan, before: tuple[Applied, str],
                      access: DeviceAccess, variables: Mapping[str, str],
                      verify: str | None, what: str) -> ActionResult:
        """The action ran before (a restart, or the journal lost its outcome): never send
        the fix again."""
        state, detail = before
        if state == "applied":
            log.warning("remediation was applied before a restart; verifying only "
                        "action=%s target=%s incident=%s", plan.key, self.name,
                        plan.incident_id)
            return await self._verified(plan, access, variables, verify, what,
                                        f"{detail} (before a restart)")
        if state == "failed":
            self._hook("remediation_failed", plan, f"not mitigated: {what}: {detail}")
            return ActionResult(plan.key, self.name, self.kind, "failed",
                                f"{what}: {detail}")
        why = (f"{what}: may have been applied before a restart (it was being sent when "
               "the daemon stopped); check by hand")
        log.error("remediation blocked action=%s target=%s incident=%s: %s", plan.key,
                  self.name, plan.incident_id, why)
        self._hook("remediation_failed", plan, f"not mitigated: {why}")
        return ActionResult(plan.key, self.name, self.kind, "blocked", why)

    async def _verified(self, plan: ActionPlan, access: DeviceAccess,
                        variables: Mapping[str, str], verify: str | None, what: str,
                        done: str) -> ActionResult:
        def result(outcome: Any, detail: str) -> ActionResult:
            return ActionResult(plan.key, self.name, self.kind, outcome, detail)

        if verify is None:
            return result("succeeded", f"{what}: {done} (no verify step)")
        ok, seen = await self._verify(access, variables, verify)
        if ok:
            detail = f"mitigated: {what}: {seen}"
            self._hook("mark_mitigated", plan, detail)
            return result("succeeded", detail)
        detail = f"not mitigated: {what}: {seen}"
        self._hook("remediation_failed", plan, detail)
        return result("failed", detail)

    def _not_open(self, incident_id: str) -> str | None:
        """Why the incident no longer wants a fix (None: it is open and not mitigated)."""
        lookup = self.context.incident
        if lookup is None:
            return (f"incident {incident_id} cannot be looked up here, so it is not known to "
                    "be still open")
        inc = lookup(incident_id)
        if inc is None:
            return f"incident {incident_id} is not known (any more)"
        if inc.state != "open":
            return f"incident {incident_id} is {inc.state} now: there is nothing to fix"
        if inc.mitigated_at is not None:
            return (f"incident {incident_id} was mitigated already"
                    + (f" (by {inc.mitigated_by})" if inc.mitigated_by else ""))
        return None

    def _too_soon(self, device: str, commands: list[str]) -> str | None:
        """Why the same fix on the same element must not go again yet (``repeat_after``)."""
        limit = self.target.repeat_after
        last = None if limit is None else self.record.last_sent(device, commands)
        if limit is None or last is None:
            return None
        ago = self.context.clock() - last
        if ago >= limit:
            return None
        return (f"the same fix went to {device} {span(max(0.0, round(ago)))} ago (repeat_after "
                f"{span(limit)}): an element that keeps failing needs a person")

    def _cli_plan(self, access: DeviceAccess, variables: Mapping[str, str]
                  ) -> tuple[list[str], str | None, str]:
        assert isinstance(self.template, CliTemplate)
        if access.cli is None:
            raise Refused(f"device {access.name} has no CLI access configured (a cli probe "
                          "with a login that may change the configuration)")
        spec = self.template.platforms.get(access.cli.platform)
        if spec is None:
            raise Refused(f"template {self.target.template} has no commands for platform "
                          f"{access.cli.platform} (has: {', '.join(self.template.platforms)})")
        verify = None if spec.verify is None else lines([spec.verify.command], variables)[0]
        return lines(spec.commands, variables), verify, access.cli.platform

    def _snmp_plan(self, access: DeviceAccess, variables: Mapping[str, str]
                   ) -> tuple[list[str], str | None, str]:
        assert isinstance(self.template, SnmpTemplate)
        if access.snmp is None:
            raise Refused(f"device {access.name} has no SNMP credentials configured")
        port = variables["port"]
        cmds = [f"SET ifAdminStatus({port}) down(2)", f"SET ifAdminStatus({port}) up(1)"]
        return cmds, ("ifOperStatus" if self.template.verify else None), "snmp"

    async def _apply(self, access: DeviceAccess, variables: Mapping[str, str],
                     commands: list[str]) -> str:
        """Send the fix. Raises only _Failed (a bug aside: the record then stays
        ``applying`` and a retry is blocked)."""
        if isinstance(self.template, CliTemplate):
            assert access.cli is not None
            await self._session(access, access.cli, self.template.mode, commands)
            return f"sent {len(commands)} command(s)"
        port = variables["port"]
        idx = await self._if_index(access, port)
        try:
            await self._set_admin(access, idx, DOWN)
        except _Failed as exc:
            if exc.refused:  # the agent answered no: the port did not change
                raise _Failed(str(exc), sent=False) from None
            lost: _Failed | None = exc  # no answer: it may well be down now
        else:
            lost = None
        try:
            if lost is None:
                await asyncio.sleep(self.template.down_for)
        finally:  # whatever happened since the down SET went out: bring the port up
            await self._bring_up(access, port, idx)
        if lost is not None:
            raise _Failed(f"{lost} -- it may have been applied, so the port was set up "
                          "again; the fix is not known to have happened", sent=True)
        return f"ifAdminStatus.{idx} set down, then up"

    async def _bring_up(self, access: DeviceAccess, port: str, idx: int) -> None:
        last = ""
        for _ in range(_UP_TRIES):
            try:
                await self._set_admin(access, idx, UP)
                return
            except Exception as exc:  # noqa: BLE001  # any failure: a port left down is worse
                last = str(exc) or type(exc).__name__
        log.error("remediation may have left %s %s (ifIndex %d) administratively DOWN: "
                  "bring it up by hand (%s)", access.name, port, idx, last)
        raise _Failed(f"{port} (ifIndex {idx}) may be left administratively DOWN: "
                      f"{_UP_TRIES} SETs to bring it up failed (last: {last}); bring it up "
                      "by hand", sent=True)

    async def _verify(self, access: DeviceAccess, variables: Mapping[str, str],
                      verify: str) -> tuple[bool, str]:
        """Re-poll until the element is back; (back, what was seen last)."""
        seen = "not checked"
        await asyncio.sleep(self.target.settle)
        for attempt in range(1, self.target.verify_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.target.verify_interval)
            try:
                ok, seen = await self._check(access, variables, verify)
            except _Failed as exc:
                ok, seen = False, f"verify failed: {exc}"
            if ok:
                return True, f"{seen} after {attempt} check(s)"
        return False, f"{seen} after {self.target.verify_attempts} check(s)"

    async def _check(self, access: DeviceAccess, variables: Mapping[str, str],
                     verify: str) -> tuple[bool, str]:
        if isinstance(self.template, CliTemplate):
            assert access.cli is not None
            spec = self.template.platforms[access.cli.platform]
            assert spec.verify is not None
            out = await self._session(access, access.cli, "exec", [verify])
            found = re.search(spec.verify.expect, out) is not None
            return found, (f"{verify!r} shows {spec.verify.expect!r}" if found
                           else f"{verify!r} does not show {spec.verify.expect!r}")
        idx = await self._if_index(access, variables["port"])
        oper = await self._get_int(access, f"{IF_OPER_STATUS}.{idx}")
        return oper == UP, f"ifOperStatus.{idx} is {_STATUS.get(oper or 0, str(oper))}"

    def _hook(self, name: str, plan: ActionPlan, detail: str) -> None:
        fn = (self.context.on_mitigated if name == "mark_mitigated"
              else self.context.on_remediation_failed)
        if fn is None:
            return
        try:
            fn(plan.incident_id, by=self.name, detail=detail, ts=self.context.clock())
        except Exception:  # the fix is done; a hook bug must not turn it into a retry
            log.exception("%s hook failed action=%s incident=%s", name, plan.key,
                          plan.incident_id)

    # --- CLI ---------------------------------------------------------------------------

    async def _session(self, access: DeviceAccess, cli: CliProbeConfig, mode: str,
                       commands: list[str]) -> str:
        """One SSH session in the pool, bounded by ``timeout``; cut from outside when it
        runs out or is cancelled."""
        job = _Job()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, _cli_work, job, access.address, cli,
                                      mode, commands, self.target.timeout)
        try:
            async with asyncio.timeout(self.target.timeout):
                return await future
        except TimeoutError:
            abort(job)
            raise _Failed(f"no answer in {self.target.timeout:g} s ({job.doing})",
                          sent=job.sent, retry=True) from None
        except asyncio.CancelledError:
            abort(job)
            raise
        except _DeviceSaid as exc:
            raise _Failed(f"the device refused a command: {exc}", sent=True) from None
        except Exception as exc:  # noqa: BLE001  # netmiko, paramiko, OSError: classified
            code, detail = classify(exc, cli)
            raise _Failed(f"{cli.username}@{access.address}:{cli.port}: {detail}",
                          sent=job.sent, retry=code in ("timeout", "socket")) from None

    # --- SNMP --------------------------------------------------------------------------

    def _auth(self, cred: SnmpCredentials, device: str) -> CommunityData | UsmUserData:
        if isinstance(cred, SnmpV2c):
            return CommunityData(cred.community.get_secret_value(), mpModel=1)
        priv = cred.priv_key is not None and cred.priv_protocol is not None
        return UsmUserData(
            cred.user, authKey=cred.auth_key.get_secret_value(),
            privKey=cred.priv_key.get_secret_value() if priv and cred.priv_key else None,
            authProtocol=_AUTH[cred.auth_protocol],
            privProtocol=_PRIV[cred.priv_protocol] if priv and cred.priv_protocol
            else USM_PRIV_NONE,
            securityEngineId=engine_id(cred, device))

    async def _snmp(self, access: DeviceAccess, call: Any, *varbinds: Any,
                    sent: bool, what: str) -> list[Any]:
        """One request. ``sent``: whether a request without an answer may still have
        changed the device (a SET): then it is not retried. Raises only _Failed."""
        assert access.snmp is not None
        try:
            if self._engine is None:
                self._engine = SnmpEngine()
            per_try = self.target.timeout / 2
            target = await UdpTransportTarget.create((access.address, access.snmp_port),
                                                     timeout=per_try, retries=1)
            err, status, _, answer = await call(
                self._engine, self._auth(access.snmp, access.name), target, ContextData(),
                *varbinds)
        except Exception as exc:  # noqa: BLE001  # pysnmp, OSError, a bad engine_id
            raise _Failed(f"{what}: {type(exc).__name__}: {exc}", sent=sent,
                          retry=True) from None
        if err:
            raise _Failed(f"{what}: {err}", sent=sent, retry=True)
        if status:
            hint = (" (the credentials need write access: rwcommunity, or a v3 user with a "
                    "write view)" if str(status.prettyPrint()) in
                    ("noAccess", "notWritable", "authorizationError", "readOnly") else "")
            raise _Failed(f"{what}: the agent answered {status.prettyPrint()}{hint}",
                          sent=sent, refused=True)
        return list(answer)

    async def _set_admin(self, access: DeviceAccess, idx: int, value: int) -> None:
        oid = f"{IF_ADMIN_STATUS}.{idx}"
        await self._snmp(access, set_cmd, ObjectType(ObjectIdentity(oid), Integer32(value)),
                         sent=True, what=f"SET {oid} = {value}")

    async def _get_int(self, access: DeviceAccess, oid: str) -> int | None:
        answer = await self._snmp(access, get_cmd, ObjectType(ObjectIdentity(oid)),
                                  sent=False, what=f"GET {oid}")
        try:
            return int(answer[0][1])
        except (IndexError, TypeError, ValueError):
            return None

    async def _if_index(self, access: DeviceAccess, port: str) -> int:
        """The poller's ifIndex for ``port``; else walk ifName (then ifDescr)."""
        known = access.if_index(port) if access.if_index is not None else None
        if known is not None:
            return known
        try:
            found = await self._walk_if_index(access, port)
        except Exception as exc:  # noqa: BLE001  # pysnmp, OSError, a bad engine_id
            raise _Failed(f"walking ifName for {port}: {type(exc).__name__}: {exc}",
                          sent=False, retry=True) from None
        if found is None:
            raise _Failed(f"{access.name} has no interface named {port!r} (ifName, "
                          "ifDescr)", sent=False)
        return found

    async def _walk_if_index(self, access: DeviceAccess, port: str) -> int | None:
        assert access.snmp is not None
        if self._engine is None:
            self._engine = SnmpEngine()
        target = await UdpTransportTarget.create((access.address, access.snmp_port),
                                                 timeout=self.target.timeout / 2, retries=1)
        auth = self._auth(access.snmp, access.name)
        for column in (IF_NAME, IF_DESCR):
            async for err, status, _, rows in bulk_walk_cmd(
                    self._engine, auth, target, ContextData(), 0, 25,
                    ObjectType(ObjectIdentity(column)), lexicographicMode=False):
                if err or status:
                    raise RuntimeError(f"{column}: {err or status}")
                for name, value in rows:
                    if str(value) == port:
                        return int(str(name).rsplit(".", 1)[1])
        return None

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        self.record.close()


async def _finish(task: asyncio.Task[str]) -> bool:
    """Wait for ``task`` to end even when the caller is cancelled meanwhile (it is bounded
    by its own timeouts). Returns whether a cancellation came in: the caller re-raises it
    once it has recorded what happened (:func:`_reraise`)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            if not cancelled:
                log.warning("stopping: the remediation being sent is finished first")
            cancelled = True
    return cancelled


def _reraise(cancelled: bool) -> None:
    if cancelled:
        raise asyncio.CancelledError


_STATUS = {1: "up", 2: "down", 3: "testing", 5: "dormant", 7: "lowerLayerDown"}


# --- in the pool thread -----------------------------------------------------------------


@dataclass(slots=True)
class _Job(CliJob):
    """The abortable CLI job, plus whether anything reached the device."""

    sent: bool = False


class _DeviceSaid(Exception):
    """A command's output matched the platform's error pattern."""


def _cli_work(job: _Job, address: str, cli: CliProbeConfig, mode: str,
              commands: list[str], timeout: float) -> str:
    """Log in, send ``commands``, log out. Blocking; raises what went wrong."""
    pattern = ERROR_PATTERNS.get(cli.platform, "")
    try:
        conn, _ = open_session(job, address, cli, timeout, enable=mode == "config")
        if mode == "config":
            job.doing, job.sent = "sending the configuration", True
            try:
                out = str(conn.send_config_set(commands, read_timeout=timeout,
                                               error_pattern=pattern))
            except ConfigInvalidException as exc:
                raise _DeviceSaid(_first(str(exc), pattern) or str(exc)[:200]) from None
            if pattern and re.search(pattern, out):
                raise _DeviceSaid(_first(out, pattern))
            return out
        outputs = []
        for command in commands:
            job.doing, job.sent = f"running {command!r}", True
            text = str(conn.send_command(command, read_timeout=timeout))
            if pattern and re.search(pattern, text):
                raise _DeviceSaid(f"{command!r}: {_first(text, pattern)}")
            outputs.append(text)
        return "\n".join(outputs)
    finally:
        cut(job.sock, None)  # no polite logout: SmartAX asks to confirm it for 30 s
        if job.conn is not None:
            try:
                job.conn.disconnect()
            except Exception:  # already cut: nothing more to do
                log.debug("netmiko disconnect after remediation failed", exc_info=True)
        if job.sock is not None:
            job.sock.close()


def _first(text: str, pattern: str) -> str:
    for line in text.splitlines():
        if re.search(pattern, line):
            return line.strip()[:200]
    return ""


__all__ = ["DeviceAccess", "RemediationExecutor"]
