"""Remediation: one allowlisted template on the incident's device, then verify the effect.

``cli`` templates log in with the device's CLI probe credentials (netmiko, in this
executor's own small thread pool) and send the rendered lines with ``send_config_set``
(config mode) or ``send_command`` (exec mode) -- lists of single lines written to the SSH
channel, never a shell. The session is bounded by the target's ``timeout``; when it runs
out the session is cut from outside (the hung-session abort of ``probes.cli.poller``).
``snmp`` templates SET ifAdminStatus down then up with the device's SNMP credentials
(pysnmp), the ifIndex taken from the poller's interface table (or an ifName walk).

Then, after ``settle`` seconds, the fix is re-polled (the template's verify command, or
ifOperStatus) up to ``verify_attempts`` times. Back: outcome ``succeeded`` ("mitigated:
...") and ``context.extra["mark_mitigated"]`` is called; still down: outcome ``failed``
("not mitigated: ...") and ``context.extra["remediation_failed"]``, which policy can
escalate -- as for a fix that failed for good on the way (a session cut after the
``shutdown``, a SET the agent refused). A value that does not fit its parameter, a
device without access (not polled, or passive: no CLI/SNMP credentials) or a platform
the template lacks: ``blocked``, nothing sent. Connection failures before anything was
sent are retried; anything after, never.

Device access comes from ``context.extra["devices"]``: a callable ``name ->
DeviceAccess | None`` the daemon fills from its current config (reloads included).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netmiko import ConfigInvalidException, ConnectHandler
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

from actions.remediation_templates import (
    ERROR_PATTERNS,
    CliTemplate,
    Refused,
    SnmpTemplate,
    bind,
    lines,
)
from actions.targets import RemediationTarget
from actions.types import ActionPlan, ActionResult, ExecutorContext
from probes.cli.commands import NEEDS_ENABLE, NETMIKO_DEVICE_TYPE
from probes.cli.config import CliProbeConfig
from probes.cli.poller import _abort, _classify, _cut
from probes.cli.poller import _Job as _PollJob
from probes.snmp.config import SnmpCredentials, SnmpProbeConfig, SnmpV2c
from probes.snmp.poller import _engine_id

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
    """The fix could not be applied. ``sent``: whether anything reached the device."""

    def __init__(self, detail: str, *, sent: bool, retry: bool = False) -> None:
        super().__init__(detail)
        self.sent = sent
        self.retry = retry and not sent


class RemediationExecutor:
    kind = "remediation"

    def __init__(self, name: str, target: RemediationTarget, *,
                 state_dir: Path | None = None,
                 context: ExecutorContext | None = None) -> None:
        self.name = name
        self.target = target
        self.template = target.chosen
        self.context = context or ExecutorContext()
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

        lookup = self.context.extra.get("devices")
        access = lookup(device) if callable(lookup) and device else None
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
        try:
            done = await self._apply(access, variables, commands)
        except _Failed as exc:
            log.error("remediation failed action=%s target=%s device=%s: %s", plan.key,
                      self.name, device, exc)
            if exc.retry:
                return result("retry", f"{what}: {exc}")
            # given up (and perhaps half applied: a port left shut): escalate
            self._hook("remediation_failed", plan, f"not mitigated: {what}: {exc}")
            return result("failed", f"{what}: {exc}")
        log.warning("remediation applied action=%s target=%s incident=%s device=%s: %s",
                    plan.key, self.name, plan.incident_id, device, done)
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
        if isinstance(self.template, CliTemplate):
            assert access.cli is not None
            await self._session(access, access.cli, self.template.mode, commands)
            return f"sent {len(commands)} command(s)"
        port = variables["port"]
        idx = await self._if_index(access, port)
        await self._set_admin(access, idx, DOWN, sent=False)
        await asyncio.sleep(self.template.down_for)
        for attempt in range(_UP_TRIES):
            try:
                await self._set_admin(access, idx, UP, sent=True)
                break
            except _Failed:
                if attempt == _UP_TRIES - 1:
                    log.error("remediation left %s %s (ifIndex %d) administratively DOWN: "
                              "bring it up by hand", access.name, port, idx)
                    raise
        return f"ifAdminStatus.{idx} set down, then up"

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
        fn = self.context.extra.get(name)
        if not callable(fn):
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
            _abort(job)
            raise _Failed(f"no answer in {self.target.timeout:g} s ({job.doing})",
                          sent=job.sent, retry=True) from None
        except asyncio.CancelledError:
            _abort(job)
            raise
        except _DeviceSaid as exc:
            raise _Failed(f"the device refused a command: {exc}", sent=True) from None
        except Exception as exc:  # noqa: BLE001  # netmiko, paramiko, OSError: classified
            code, detail = _classify(exc, cli)
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
            securityEngineId=_engine_id(cred, device))

    async def _snmp(self, access: DeviceAccess, call: Any, *varbinds: Any,
                    sent: bool, what: str) -> list[Any]:
        assert access.snmp is not None
        if self._engine is None:
            self._engine = SnmpEngine()
        per_try = self.target.timeout / 2
        target = await UdpTransportTarget.create((access.address, access.snmp_port),
                                                 timeout=per_try, retries=1)
        err, status, _, answer = await call(
            self._engine, self._auth(access.snmp, access.name), target, ContextData(),
            *varbinds)
        if err:
            raise _Failed(f"{what}: {err}", sent=sent, retry=True)
        if status:
            hint = (" (the credentials need write access: rwcommunity, or a v3 user with a "
                    "write view)" if str(status.prettyPrint()) in
                    ("noAccess", "notWritable", "authorizationError", "readOnly") else "")
            raise _Failed(f"{what}: the agent answered {status.prettyPrint()}{hint}",
                          sent=sent)
        return list(answer)

    async def _set_admin(self, access: DeviceAccess, idx: int, value: int, *,
                         sent: bool) -> None:
        oid = f"{IF_ADMIN_STATUS}.{idx}"
        await self._snmp(access, set_cmd, ObjectType(ObjectIdentity(oid), Integer32(value)),
                         sent=sent, what=f"SET {oid} = {value}")

    async def _get_int(self, access: DeviceAccess, oid: str) -> int | None:
        answer = await self._snmp(access, get_cmd, ObjectType(ObjectIdentity(oid)),
                                  sent=True, what=f"GET {oid}")
        try:
            return int(answer[0][1])
        except (IndexError, TypeError, ValueError):
            return None

    async def _if_index(self, access: DeviceAccess, port: str) -> int:
        """The poller's ifIndex for ``port``; else walk ifName (then ifDescr)."""
        known = access.if_index(port) if access.if_index is not None else None
        if known is not None:
            return known
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
                    raise _Failed(f"walking {column} for {port}: {err or status}",
                                  sent=False, retry=True)
                for name, value in rows:
                    if str(value) == port:
                        return int(str(name).rsplit(".", 1)[1])
        raise _Failed(f"{access.name} has no interface named {port!r} (ifName, ifDescr)",
                      sent=False)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


_STATUS = {1: "up", 2: "down", 3: "testing", 5: "dormant", 7: "lowerLayerDown"}


# --- in the pool thread -----------------------------------------------------------------


@dataclass(slots=True)
class _Job(_PollJob):
    """The CLI probe's abortable job, plus whether anything reached the device."""

    sent: bool = False


class _DeviceSaid(Exception):
    """A command's output matched the platform's error pattern."""


def _cli_work(job: _Job, address: str, cli: CliProbeConfig, mode: str,
              commands: list[str], timeout: float) -> str:
    """Log in, send ``commands``, log out. Blocking; raises what went wrong."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    pattern = ERROR_PATTERNS.get(cli.platform, "")
    try:
        job.doing = "TCP connect"
        sock = job.sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect((address, cli.port))
        job.doing = "SSH login"
        conn = job.conn = ConnectHandler(
            device_type=NETMIKO_DEVICE_TYPE[cli.platform], host=address, port=cli.port,
            username=cli.username,
            password=None if cli.password is None else cli.password.get_secret_value(),
            use_keys=cli.key_file is not None, key_file=cli.key_file,
            passphrase=(None if cli.key_passphrase is None
                        else cli.key_passphrase.get_secret_value()),
            allow_agent=False, ssh_strict=cli.known_hosts is not None,
            system_host_keys=False, alt_host_keys=cli.known_hosts is not None,
            alt_key_file=cli.known_hosts or "", sock=sock, conn_timeout=timeout,
            auth_timeout=timeout, banner_timeout=timeout, auto_connect=False)
        if job.aborted:
            raise TimeoutError("aborted")
        conn._open()
        if cli.platform in NEEDS_ENABLE or mode == "config":
            job.doing = "enable"
            conn.enable()
        if job.aborted:
            raise TimeoutError("aborted")
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
        _cut(job.sock, None)  # no polite logout: SmartAX asks to confirm it for 30 s
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
