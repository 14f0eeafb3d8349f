"""The ``netreflex`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from collector.errors import EX_CONFIG
from correlator.incidents import INCIDENT_KINDS
from probes.source import SourceError

DEFAULT_CONFIG = "/etc/netreflex/netreflex.yaml"
EX_DATAERR = 65


def _parser() -> argparse.ArgumentParser:
    from collector.version import VERSION

    p = argparse.ArgumentParser(
        prog="netreflex",
        description="A system of action for ISP network operations: watches devices, works "
                    "out which subscribers a fault hurts and what it costs, and acts under "
                    "a policy people write.",
    )
    p.add_argument("--version", action="version", version=f"netreflex {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                     help=f"config file (default {DEFAULT_CONFIG})")

    check = sub.add_parser(
        "check", help="validate config, inventory and policy without starting; exit 78 on errors"
    )
    check.add_argument("config", nargs="?", default=None, help="config file")
    check.add_argument("--config", "-c", dest="config_opt", default=None, help=argparse.SUPPRESS)

    demo = sub.add_parser(
        "demo", help="run a simulated ISP on loopback, break it, and show what netreflex does"
    )
    demo.add_argument("--json", action="store_true", help="one JSON object per line")
    demo.add_argument("--keep", action="store_true",
                      help="keep the demo's temporary directory (config, state, logs)")
    _supervisor_commands(sub)
    _policy_commands(sub)
    _inventory_commands(sub)
    return p


SUPERVISOR_COMMANDS = ("status", "incidents", "incident", "explain", "actions", "approve",
                       "deny", "silence", "maintenance")


def _policy_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pol = sub.add_parser("policy", help="work with policy files offline")
    what = pol.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    test = what.add_parser(
        "test", help="replay recorded incident events against a policy (shadow mode): which "
                     "rules fire, on which targets, what each guardrail would do; nothing "
                     "is sent")
    test.add_argument("--policy", "-p", required=True, metavar="FILE", help="policy to test")
    test.add_argument("--incidents", "-i", required=True, metavar="FILE.jsonl",
                      help="recorded events, one JSON object a line: the webhook or action-log "
                           "payload, or an incident (Incident.to_dict()) with an \"event\" key")
    test.add_argument("--against", metavar="FILE",
                      help="the current policy: also show what the new one does differently")
    test.add_argument("--json", action="store_true", help="one JSON object per action")


def _inventory_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inv = sub.add_parser("inventory", help="build inventory files from other systems")
    what = inv.add_subparsers(dest="inventory_command", required=True, metavar="SUBCOMMAND")
    nb = what.add_parser(
        "import-netbox", help="read devices, cables and tenants from NetBox (pynetbox) and "
                              "write inventory.yaml + subscribers.csv, checked, both or "
                              "neither; then `systemctl reload netreflex`")
    nb.add_argument("--url", required=True, help="NetBox's base URL, e.g. https://netbox.example.net")
    nb.add_argument("--token-file", required=True, metavar="FILE",
                    help="file holding a NetBox API token (read access to dcim, tenancy)")
    nb.add_argument("--out-dir", required=True, metavar="DIR",
                    help="directory of its own for inventory.yaml and subscribers.csv")
    nb.add_argument("--site", action="append", metavar="SLUG",
                    help="only devices (and their cables) in this site; repeatable")
    nb.add_argument("--mapping", metavar="FILE",
                    help="YAML: roles, skip_roles, device_statuses, custom_fields (README)")
    nb.add_argument("--skip-invalid", action="store_true",
                    help="leave out objects with problems (listed as skipped) instead of "
                         "writing nothing")
    nb.add_argument("--dry-run", action="store_true",
                    help="read, map and check, but write nothing")
    nb.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                    help="per HTTP request (default 30)")
    nb.add_argument("--json", action="store_true", help="the summary as one JSON object")


def _supervisor_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that ask a running daemon, through its API (collector/supervisor.py)."""
    from collector.supervisor import (
        DEFAULT_API,
        DEFAULT_TOKEN_FILE,
        default_api,
        default_token_file,
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=default_api(), metavar="URL",
                        help=f"the daemon's API (default $NETREFLEX_API or {DEFAULT_API})")
    common.add_argument("--token-file", default=default_token_file(), metavar="PATH",
                        help="file holding the API token (default $NETREFLEX_TOKEN_FILE or "
                             f"{DEFAULT_TOKEN_FILE})")
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    limit = argparse.ArgumentParser(add_help=False)
    limit.add_argument("--limit", type=int, default=None, help="at most this many, newest first")

    sub.add_parser("status", parents=[common], help="is the daemon up; incidents, backlog")
    inc = sub.add_parser("incidents", parents=[common, limit], help="list incidents")
    inc.add_argument("--state", choices=("open", "resolved", "merged", "all"), default="open")
    inc.add_argument("--severity", choices=("critical", "major", "minor"))
    inc.add_argument("--kind", choices=INCIDENT_KINDS)
    inc.add_argument("--device", help="only incidents rooted at this device")
    one = sub.add_parser("incident", parents=[common],
                         help="one incident: root cause, symptoms, impact, timeline")
    one.add_argument("id", metavar="ID", help="incident id, e.g. INC-000042")
    exp = sub.add_parser("explain", parents=[common],
                         help="why: every rule for an incident, or one action's record")
    exp.add_argument("id", metavar="ID", help="incident id (INC-...) or action key (nrx-...)")
    act = sub.add_parser("actions", parents=[common, limit], help="the action journal")
    which = act.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="planned or running only")
    which.add_argument("--state", choices=("planned", "waiting_approval", "running",
                                           "succeeded", "failed", "blocked", "dry_run", "all"),
                       default="all")
    act.add_argument("--incident", metavar="ID", help="only the actions of this incident")
    ok = sub.add_parser("approve", parents=[common],
                        help="approve an action waiting for approval (as $SUDO_USER or $USER)")
    ok.add_argument("key", metavar="KEY", help="action key (nrx-...)")
    ok.add_argument("--reason", help="why (kept on the action)")
    no = sub.add_parser("deny", parents=[common],
                        help="deny an action waiting for approval: it is blocked")
    no.add_argument("key", metavar="KEY", help="action key (nrx-...)")
    no.add_argument("--reason", required=True, help="why (kept on the action)")
    _maintenance_commands(sub, common, limit)


def _maintenance_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                          common: argparse.ArgumentParser,
                          limit: argparse.ArgumentParser) -> None:
    """``silence list|add|expire`` and ``maintenance list|events``, through the API."""
    sil = sub.add_parser("silence", help="silences (ad-hoc maintenance): list, add, expire")
    what = sil.add_subparsers(dest="silence_command", required=True, metavar="SUBCOMMAND")
    ls = what.add_parser("list", parents=[common], help="active silences, by expiry")
    ls.add_argument("--all", action="store_true",
                    help="also the expired ones (and who ended them), newest first")
    add = what.add_parser(
        "add", parents=[common],
        help="incidents it covers that open while it lasts are planned; every selector "
             "given must hold")
    for flag, noun in (("--device", "device"), ("--site", "site"),
                       ("--subscriber", "subscriber id"), ("--sla-tier", "SLA tier")):
        add.add_argument(flag, action="append", metavar="NAME",
                         help=f"cover this {noun} (repeatable)")
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", metavar="DURATION",
                       help="how long from now: 90m, 2h, 1h30m, 1d")
    until.add_argument("--until", metavar="TIME",
                       help="when it ends, ISO 8601 (2026-05-04T18:00; local time unless "
                            "it has an offset)")
    add.add_argument("--reason", required=True, help="why (shown with every incident)")
    add.add_argument("--by", help="who (default $USER@hostname)")
    end = what.add_parser("expire", parents=[common], help="end a silence now")
    end.add_argument("id", metavar="ID", help="silence id, e.g. SIL-000001")
    end.add_argument("--by", help="who (default $USER@hostname)")
    mnt = sub.add_parser("maintenance", help="maintenance windows (the maintenance file)")
    what = mnt.add_subparsers(dest="maintenance_command", required=True, metavar="SUBCOMMAND")
    ml = what.add_parser("list", parents=[common], help="windows under way now, and upcoming")
    ml.add_argument("--within", default="7d", metavar="DURATION",
                    help="how far ahead to look (default 7d; at most 366d)")
    what.add_parser("events", parents=[common, limit],
                    help="silences created and ended since the daemon started")


def _load(path: str) -> object:
    from collector.config import load_config

    try:
        return load_config(path)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"netreflex: {n} problem{'s' if n != 1 else ''} found; nothing was started",
              file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in SUPERVISOR_COMMANDS:
        from collector.supervisor import run as supervise

        return supervise(args)
    if args.command == "check":
        path = args.config or args.config_opt or DEFAULT_CONFIG
        settings = _load(path)
        if settings is None:
            return EX_CONFIG
        from collector.config import Settings

        assert isinstance(settings, Settings)
        for warning in settings.warnings:
            print(warning, file=sys.stderr)
        inv = settings.inventory
        print(f"{path}: ok ({len(settings.config.devices)} polled device(s), "
              f"{len(inv.devices)} inventory device(s), {len(inv.subscribers)} subscriber(s), "
              f"{len(settings.policy.rules)} rule(s))")
        return 0
    if args.command == "run":
        return _run(args.config)
    if args.command == "demo":
        from collector.demo.scenario import run_demo

        return run_demo(json_output=args.json, keep=args.keep)
    if args.command == "policy":
        return _policy_test(args)
    if args.command == "inventory":
        from collector.netbox import run as import_netbox

        return import_netbox(args)
    return 2


def _policy_test(args: argparse.Namespace) -> int:
    """``netreflex policy test``: 0 done, 78 a policy file is wrong, 65 a recorded line is."""
    import json

    from actions.policy import load_policy
    from actions.replay import compare, read_events, render, replay

    policies = []
    problems = []
    for path in (args.policy, args.against):
        if path is None:
            continue
        try:
            policies.append(load_policy(path))
        except SourceError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"netreflex: {len(problems)} problem(s) in the policy; nothing was replayed",
              file=sys.stderr)
        return EX_CONFIG
    try:
        events = read_events(args.incidents)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_DATAERR
    results = replay(policies[0], events)
    old = replay(policies[1], events) if args.against else None
    changes = compare(results, old) if old is not None else None
    if args.json:
        for r in results:
            print(json.dumps({"policy": args.policy, **r.to_dict()}, sort_keys=True))
        for c in changes or ():
            one = c.new or c.old
            assert one is not None
            print(json.dumps({"change": c.sign, "index": one.index, "rule": one.rule,
                              "target": one.target, "recipient": one.recipient,
                              "new": c.new.outcome if c.new else None,
                              "current": c.old.outcome if c.old else None}, sort_keys=True))
        return 0
    render(results, sys.stdout, changes=changes, against=args.against,
           title=f"{len(events)} event(s) from {args.incidents} against {args.policy} "
                 "(offline: nothing is sent)")
    return 0


def _run(path: str) -> int:
    from actions.errors import ActionError
    from collector.config import Settings
    from collector.daemon import Daemon
    from collector.logs import setup_logging
    from correlator.errors import CorrelationError

    settings = _load(path)
    if settings is None:
        return EX_CONFIG
    assert isinstance(settings, Settings)
    setup_logging(settings.config.daemon.log_level)

    async def _main() -> int:
        try:
            daemon = Daemon(settings)
        except (CorrelationError, ActionError, OSError) as exc:
            print(f"netreflex: cannot start: {exc}", file=sys.stderr)
            return 1
        return await daemon.run()

    return asyncio.run(_main())


if __name__ == "__main__":
    sys.exit(main())
