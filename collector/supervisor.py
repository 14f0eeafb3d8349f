"""The supervisor CLI's side of the API: a small client (stdlib only) and readable output.

Exit codes (sysexits.h): 69 the API cannot be reached, 77 no usable token (unreadable
token file, or the API rejected it), 64 a request the API calls malformed (one line per
problem, each naming its field), 1 not found, a conflict (409: an action not waiting for
approval, a silence already ended), or any other error the API reports.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from collector.errors import CollectorError

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_NOPERM = 77
DEFAULT_API = "http://127.0.0.1:9732"
DEFAULT_TOKEN_FILE = "/etc/netreflex/secrets/api.token"
SUBSCRIBERS_SHOWN = 20


class SupervisorError(CollectorError):
    """The command cannot do what was asked; ``exit_code`` says why (sysexits.h)."""

    def __init__(self, message: str, exit_code: int, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.lines = list(lines) or [message]  # what to print, one line each


def default_api() -> str:
    return os.environ.get("NETREFLEX_API") or DEFAULT_API


def default_token_file() -> str:
    return os.environ.get("NETREFLEX_TOKEN_FILE") or DEFAULT_TOKEN_FILE


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the token to wherever it points: refuse to follow."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


class Client:
    """GETs JSON from the API under ``api`` (``http://HOST:PORT``, ``/api/v1`` optional)."""

    def __init__(self, *, api: str, token_file: str, timeout: float = 10.0) -> None:
        url = urllib.parse.urlsplit(api.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SupervisorError(f"--api {api!r}: expected http://HOST:PORT or "
                                  "https://HOST:PORT", EX_USAGE)
        path = url.path.rstrip("/")
        if not path.endswith("/api/v1"):
            path += "/api/v1"
        self.base = urllib.parse.urlunsplit((url.scheme, url.netloc, path, "", ""))
        self.host = url.hostname
        self.plain_remote = url.scheme == "http" and not _loopback(url.hostname)
        self.token_file = token_file
        self.timeout = timeout
        # no proxies (http_proxy would see the token), no redirects (same reason)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        self._token: str | None = None

    def _read_token(self) -> str:
        if self._token is None:
            try:
                with open(self.token_file, encoding="utf-8") as fh:
                    token = fh.read().rstrip("\r\n")
            except OSError as exc:
                raise SupervisorError(
                    f"cannot read the API token from {self.token_file}: {exc.strerror}; "
                    "use --token-file or NETREFLEX_TOKEN_FILE (it is the file "
                    "daemon.api_token names)", EX_NOPERM) from None
            if not token:
                raise SupervisorError(f"the API token file {self.token_file} is empty",
                                      EX_NOPERM)
            self._token = token
        return self._token

    def get(self, path: str, query: Mapping[str, object] | None = None) -> dict[str, Any]:
        params = {k: _qs(v) for k, v in (query or {}).items() if v is not None}
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        return self._send(urllib.request.Request(url, headers=self._headers()))

    def post(self, path: str, body: Mapping[str, object]) -> dict[str, Any]:
        url = self.base + path
        data = json.dumps(dict(body)).encode()
        headers = {**self._headers(), "Content-Type": "application/json"}
        return self._send(urllib.request.Request(url, data=data, headers=headers,
                                                 method="POST"))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._read_token()}",
                "Accept": "application/json", "User-Agent": "netreflex-cli"}

    def _send(self, req: urllib.request.Request) -> dict[str, Any]:
        url = req.full_url
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return _body(url, resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            raise self._http_error(url, exc) from None
        except urllib.error.URLError as exc:
            raise SupervisorError(
                f"cannot reach the netreflex API at {self.base}: {_reason(exc.reason)}; is "
                "`netreflex run` up with daemon.api_listen and daemon.api_token set? "
                "(--api or NETREFLEX_API says where to look)", EX_UNAVAILABLE) from None
        except (TimeoutError, ConnectionError) as exc:
            raise SupervisorError(
                f"the netreflex API at {self.base} did not answer: {_reason(exc)}",
                EX_UNAVAILABLE) from None

    def _http_error(self, url: str, exc: urllib.error.HTTPError) -> SupervisorError:
        try:
            raw = exc.read()
        except OSError:
            raw = b""
        try:
            body = json.loads(raw)
            message = str(body["error"])
        except (ValueError, KeyError, TypeError):
            return SupervisorError(
                f"{url} answered HTTP {exc.code} and no netreflex error: is --api pointing "
                "at the netreflex API (not, say, the metrics port)?", EX_UNAVAILABLE)
        if exc.code == 401:
            return SupervisorError(
                f"the netreflex API at {self.base} rejected the token read from "
                f"{self.token_file} ({message}); it must be the one daemon.api_token names",
                EX_NOPERM)
        if exc.code == 400:
            problems = body.get("problems") or [{"field": body.get("field"), "error": message}]
            lines = [f"the API refused the request: {_problem(p)}" for p in problems]
            return SupervisorError(lines[0], EX_USAGE, lines)
        if exc.code in (404, 409):
            return SupervisorError(message, 1)
        return SupervisorError(f"the API answered HTTP {exc.code}: {message}", 1)


def _problem(p: Mapping[str, Any]) -> str:
    """``field: error``, unless the error already names its field."""
    error, name = str(p.get("error")), p.get("field")
    return error if not name or str(name) in error else f"{name}: {error}"


def _qs(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


def _body(url: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SupervisorError(f"{url} answered HTTP {status} but not with the netreflex API's "
                              "JSON: is --api pointing at the right port?", EX_UNAVAILABLE)
    return data


# --- readable output ----------------------------------------------------------------------


def _ts(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _age(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s}s" if m else f"{s}s"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _counts(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def table(rows: Sequence[Sequence[object]], header: Sequence[str], out: TextIO) -> None:
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r]
                                         for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    if not any(header):
        cells = cells[1:]
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  + "\n")


def show_status(h: Mapping[str, Any], api: str, out: TextIO) -> None:
    out.write(f"netreflex {h['version']} at {api}: {h['status']}, up "
              f"{_age(h['uptime_seconds'])}\n")
    others = {k: v for k, v in h["incidents_by_state"].items() if k != "open"}
    table([
        ["devices polled", h["devices"], ""],
        ["open incidents", h["open_incidents"], f"(other: {_counts(others)})"],
        ["action backlog", h["action_backlog"], f"(all: {_counts(h['actions_by_state'])})"],
        ["policy", f"{h['policy_rules']} rule(s)",
         "(dry run: everything)" if h["policy_dry_run"] else ""],
    ], ["", "", ""], out)


def show_incidents(d: Mapping[str, Any], out: TextIO) -> None:
    rows = [[i["id"], i["state"] + (" (planned)" if i["planned"] else ""), i["severity"],
             f"{i['priority']:.1f}", _ts(i["opened_at"]), i["impact"]["subscriber_count"],
             _money(i["impact"]["revenue_at_risk"]), i["title"]] for i in d["incidents"]]
    if not rows:
        out.write("no incidents\n")
        return
    table(rows, ["ID", "STATE", "SEVERITY", "PRIORITY", "OPENED", "SUBSCRIBERS",
                 "MRR AT RISK", "TITLE"], out)
    if d["more"]:
        out.write(f"(first {d['count']} shown; --limit for more)\n")


def show_incident(i: Mapping[str, Any], out: TextIO) -> None:
    imp = i["impact"]
    by_tier = ", ".join(f"{k} {_money(v)}" for k, v in imp["revenue_by_tier"].items())
    out.write(f"{i['id']}  {i['title']}\n")
    merged = f" into {i['merged_into']}" if i["merged_into"] else ""
    table([
        ["state", f"{i['state']}{merged} (revision {i['revision']})"],
        ["severity", i["severity"]],
        ["priority", f"{i['priority']:.1f}"],
        ["planned", "no" if not i["planned"] else
         f"yes, by {', '.join(i['planned_by'])} until {_ts(i['planned_until'])}"],
        ["root cause", i["root"]],
        ["device", f"{i['device']} {i['port'] or ''}".strip()
         + (f" (role {i['role']}, site {i['site']})" if i["site"] else f" (role {i['role']})")],
        ["opened", _ts(i["opened_at"])],
        ["resolved", _ts(i["resolved_at"])],
        ["subscribers", f"{imp['subscriber_count']} ({_counts(imp['subscribers_by_tier'])})"],
        ["MRR at risk", f"{_money(imp['revenue_at_risk'])} ({by_tier or 'none'})"],
        ["devices cut off", ", ".join(imp["devices"]) or "none"],
    ], ["", ""], out)
    if i["priority_breakdown"]:
        out.write("priority breakdown:\n")
        table([["", c["name"], c["input"], f"x {c['weight']}", f"= {c['contribution']}",
                c["detail"]] for c in i["priority_breakdown"]], ["", "", "", "", "", ""], out)
    if i["symptoms"]:
        out.write("symptoms:\n" + "".join(f"  {s}\n" for s in i["symptoms"]))
    subs = imp.get("subscribers") or []
    if subs:
        shown = ", ".join(subs[:SUBSCRIBERS_SHOWN])
        more = len(subs) - SUBSCRIBERS_SHOWN
        out.write(f"subscribers: {shown}" + (f" ... ({more} more; --json for all)" if more > 0
                                              else "") + "\n")
    out.write("timeline:\n" + "".join(f"  {_ts(t['ts'])}  {t['text']}\n"
                                      for t in i["timeline"]))


def _action_rows(actions: Sequence[Mapping[str, Any]]) -> list[list[object]]:
    return [[a["key"], a["incident_id"], a["event"], a["rule"], a["target"],
             a["state"] + (" (dry run)" if a["dry_run"] and a["state"] != "dry_run" else ""),
             a["attempts"], a["last_error"]] for a in actions]


_ACTION_HEADER = ["KEY", "INCIDENT", "EVENT", "RULE", "TARGET", "STATE", "ATTEMPTS",
                  "LAST ERROR"]


def show_actions(d: Mapping[str, Any], out: TextIO) -> None:
    if not d["actions"]:
        out.write("no actions\n")
        return
    table(_action_rows(d["actions"]), _ACTION_HEADER, out)
    if d["more"]:
        out.write(f"(first {d['count']} shown; --limit for more)\n")


def show_incident_explain(d: Mapping[str, Any], out: TextIO) -> None:
    inc = d["incident"]
    out.write(f"{inc['id']}  {inc['title']}  [{inc['state']}]\n")
    for dec in d["decisions"]:
        basis = ("as journaled" if dec["basis"] == "journal"
                 else "re-evaluated against the incident now")
        out.write(f"\n{dec['event']} (revision {dec['revision']}, {_ts(dec['ts'])}, {basis})\n")
        if dec["note"]:
            out.write(f"  note: {dec['note']}\n")
        if not dec["rules"]:
            out.write("  the policy has no rules\n")
        for r in dec["rules"]:
            if r["fired"]:
                dry = " (dry run)" if r["dry_run"] else ""
                out.write(f"  FIRED    {r['rule']} -> {', '.join(r['targets'])}{dry}\n")
            elif r["matched"]:
                out.write(f"  STOPPED  {r['rule']}: matched, but {r['stopped_by']} matched "
                          "first and has stop: true\n")
            else:
                out.write(f"  no       {r['rule']}: {'; '.join(r['reasons'])}\n")
    out.write("\nactions:\n")
    if d["actions"]:
        table(_action_rows(d["actions"]), _ACTION_HEADER, out)
    else:
        out.write("  none journaled\n")


def _approval(a: Mapping[str, Any]) -> str:
    ap = a.get("approval")
    if ap:
        who = f" by {ap['by']}" if ap["by"] else ""
        why = f": {ap['reason']}" if ap["reason"] else ""
        return f"{ap['decision']}{who} at {_ts(ap['at'])}{why}"
    if a["state"] == "waiting_approval":
        return f"waiting; expires {_ts(a['expires_at'])} (netreflex approve|deny {a['key']})"
    return "-"


def show_verdicts(verdicts: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    if not verdicts:
        out.write("guardrails: not checked yet\n")
        return
    out.write("guardrails (latest check):\n")
    table([["", v["outcome"].upper(), v["guardrail"],
             v["reason"] + (f" (until {_ts(v['until'])})" if v["until"] else "")]
            for v in verdicts], ["", "", "", ""], out)


def show_action_explain(d: Mapping[str, Any], out: TextIO) -> None:
    a, rule, target, dec = d["action"], d["rule"], d["target"], d["decision"]
    inc = d["incident"]
    out.write(f"{a['key']}\n")
    table([
        ["incident", f"{inc['id']}  {inc['title']} [{inc['state']}]" if inc
         else f"{a['incident_id']} (no longer stored)"],
        ["event", f"{a['event']} (revision {dec['revision']})"],
        ["rule", rule["name"] + ("" if rule["in_policy"] else " (no longer in the policy)")],
        ["target", f"{target['name']} ({target['kind']})" if target["in_policy"]
         else f"{target['name']} (no longer in the policy)"],
        ["state", a["state"] + (" (dry run)" if a["dry_run"] else "")],
        ["recipient", a["recipient"] or "-"],
        ["approval", _approval(a)],
        ["attempts", a["attempts"]],
        ["next attempt", _ts(a["next_at"]) if a["state"] == "planned" else "-"],
        ["last error", a["last_error"] or "-"],
        ["HTTP status", a["status_code"] or "-"],
        ["planned", _ts(a["created_at"])],
        ["updated", _ts(a["updated_at"])],
    ], ["", ""], out)
    show_verdicts(a["verdicts"], out)
    if dec["matches_now"] is True:
        out.write("the rule still matches what the decision saw\n")
    elif dec["matches_now"] is False:
        out.write("the rule as it is now would not fire: " + "; ".join(dec["reasons"]) + "\n")
    else:
        out.write("; ".join(dec["reasons"]) + "\n")


def show_decided(verb: str) -> Callable[[Mapping[str, Any], TextIO], None]:
    def show(a: Mapping[str, Any], out: TextIO) -> None:
        ap = a.get("approval") or {}
        why = f": {ap['reason']}" if ap.get("reason") else ""
        out.write(f"{verb} {a['key']} (incident {a['incident_id']}, rule {a['rule']} -> "
                  f"{a['target']}) as {ap.get('by', '?')}{why}; it is now {a['state']}\n")
    return show


def _covers(match: Mapping[str, Sequence[str]]) -> str:
    return "; ".join(f"{k.replace('_', ' ')} {','.join(v)}" for k, v in match.items())


def _span(seconds: float) -> str:
    """``1h30m``, ``7d``, ``45s``: a duration as people write it in the config."""
    s = int(seconds)
    parts = zip((s // 86400, s % 86400 // 3600, s % 3600 // 60, s % 60), "dhms", strict=True)
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _silence_row(s: Mapping[str, Any]) -> list[object]:
    if s["state"] == "active":
        state, until = "active", s["expires_at"]
    else:
        state = f"ended by {s['expired_by']}" if s["expired_by"] else "ran out"
        until = s["expired_at"]
    return [s["id"], state, _ts(s["created_at"]), _ts(until), s["created_by"],
            _covers(s["match"]), s["reason"]]


def show_silences(d: Mapping[str, Any], out: TextIO) -> None:
    if not d["silences"]:
        out.write("no silences\n")
        return
    table([_silence_row(s) for s in d["silences"]],
          ["ID", "STATE", "CREATED", "UNTIL", "CREATED BY", "COVERS", "REASON"], out)


def show_silence(verb: str, s: Mapping[str, Any], out: TextIO) -> None:
    if verb == "ended":
        out.write(f"ended {s['id']} ({_covers(s['match'])}) as {s['expired_by']}; created by "
                  f"{s['created_by']}: {s['reason']}\n")
        return
    out.write(f"silenced {s['id']} ({_covers(s['match'])}) until {_ts(s['expires_at'])} "
              f"as {s['created_by']}: {s['reason']}\n"
              f"incidents it covers that open before then are planned; end it early with "
              f"`netreflex silence expire {s['id']}`\n")


def _window_rows(windows: Sequence[Mapping[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for w in windows:
        sch = w["schedule"]
        every = (f"every {','.join(sch['days'])} {sch['start']} for {_span(sch['duration'])}"
                 if w["recurring"] else "one-off")
        rows.append([w["id"], w["start_local"][:16].replace("T", " "),
                     w["end_local"][:16].replace("T", " "), w["timezone"], every,
                     _covers(w["match"]), w["reason"]])
    return rows


_WINDOW_HEADER = ["ID", "START", "END", "ZONE", "SCHEDULE", "COVERS", "REASON"]


def show_maintenance(d: Mapping[str, Any], within: str, out: TextIO) -> None:
    for title, key in (("under way now", "active"), (f"upcoming within {within}", "upcoming")):
        out.write(f"{title}:\n")
        if d[key]:
            table(_window_rows(d[key]), _WINDOW_HEADER, out)
        else:
            out.write("  none\n")
    out.write(f"({d['windows']} window(s) in the maintenance file; `netreflex silence list` "
              "for ad-hoc maintenance)\n")


def show_events(d: Mapping[str, Any], out: TextIO) -> None:
    if not d["events"]:
        out.write("no silences created or ended since the daemon started\n")
        return
    rows = []
    for e in d["events"]:
        s = e["silence"]
        created = e["type"] == "silence_created"
        by = s["created_by"] if created else s["expired_by"] or "(ran out)"
        rows.append([_ts(e["ts"]), "created" if created else "ended", s["id"], by,
                     _covers(s["match"]), s["reason"]])
    table(rows, ["TIME", "EVENT", "SILENCE", "BY", "COVERS", "REASON"], out)


def who_am_i() -> str:
    """The person behind the command: $SUDO_USER (``sudo netreflex approve``), else $USER."""
    for name in ("SUDO_USER", "USER"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise SupervisorError("cannot tell who you are: set $USER", EX_USAGE) from None


# --- the commands ------------------------------------------------------------------------


def run(args: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run one supervisor subcommand (args from collector.cli); returns the exit code."""
    try:
        client = Client(api=args.api, token_file=args.token_file)
        if client.plain_remote:
            err.write(f"netreflex: warning: the token goes to {client.host} in clear text "
                      "(plain http to a remote host); use an https reverse proxy\n")
        data, show = _fetch(client, args)
    except SupervisorError as exc:
        err.writelines(f"netreflex: {line}\n" for line in exc.lines)
        return exc.exit_code
    if args.json:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        show(data, out)
    return 0


def _fetch(client: Client, args: Any) -> tuple[dict[str, Any], Callable[[Any, TextIO], None]]:
    cmd = args.command
    quote = urllib.parse.quote
    if cmd == "status":
        return client.get("/health"), lambda d, o: show_status(d, client.base, o)
    if cmd == "incidents":
        return client.get("/incidents", {
            "state": args.state, "severity": args.severity, "device": args.device,
            "kind": args.kind, "limit": args.limit}), show_incidents
    if cmd == "incident":
        return client.get(f"/incidents/{quote(args.id, safe='')}"), show_incident
    if cmd == "explain":
        if args.id.startswith("nrx-"):
            return (client.get(f"/actions/{quote(args.id, safe='')}/explain"),
                    show_action_explain)
        return client.get(f"/incidents/{quote(args.id, safe='')}/explain"), show_incident_explain
    if cmd == "actions":
        state = "pending" if args.pending else args.state
        return client.get("/actions", {"state": state, "incident": args.incident,
                                       "limit": args.limit}), show_actions
    if cmd == "silence":
        return _silence(client, args)
    if cmd == "maintenance":
        if args.maintenance_command == "events":
            return client.get("/maintenance/events", {"limit": args.limit}), show_events
        return (client.get("/maintenance", {"within": args.within}),
                lambda d, o: show_maintenance(d, args.within, o))
    if cmd in ("approve", "deny"):
        body: dict[str, object] = {"by": who_am_i()}
        if args.reason is not None:
            body["reason"] = args.reason
        return (client.post(f"/actions/{quote(args.key, safe='')}/{cmd}", body),
                show_decided("approved" if cmd == "approve" else "denied"))
    raise SupervisorError(f"unknown command {cmd}", EX_USAGE)


def _silence(client: Client, args: Any) -> tuple[dict[str, Any],
                                                 Callable[[Any, TextIO], None]]:
    sub = args.silence_command
    if sub == "list":
        return (client.get("/silences", {"state": "all" if args.all else "active"}),
                show_silences)
    by = args.by or f"{who_am_i()}@{socket.gethostname()}"
    if sub == "expire":
        return (client.post(f"/silences/{urllib.parse.quote(args.id, safe='')}/expire",
                            {"by": by}), lambda d, o: show_silence("ended", d, o))
    match = {key: values for key, values in (
        ("devices", args.device), ("sites", args.site), ("subscribers", args.subscriber),
        ("sla_tiers", args.sla_tier)) if values}
    if not match:
        raise SupervisorError("say what the silence covers: --device, --site, --subscriber "
                              "or --sla-tier (each repeatable)", EX_USAGE)
    body: dict[str, object] = {"match": match, "reason": args.reason, "created_by": by}
    if args.duration is not None:
        body["duration"] = args.duration
    else:
        body["expires_at"] = _instant(args.until)
    return client.post("/silences", body), lambda d, o: show_silence("silenced", d, o)


def _instant(text: str) -> str:
    """``--until`` as ISO 8601 with an offset: a time without one is local to this host."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SupervisorError(f"--until {text!r}: expected ISO 8601 such as 2026-05-04T18:00 "
                              "(local time) or 2026-05-04T18:00:00+01:00", EX_USAGE) from None
    return (when if when.tzinfo else when.astimezone()).isoformat()
