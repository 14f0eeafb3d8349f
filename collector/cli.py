"""The ``netreflex`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from collector.errors import EX_CONFIG
from probes.source import SourceError

DEFAULT_CONFIG = "/etc/netreflex/netreflex.yaml"


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
    return p


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
    if args.command == "check":
        path = args.config or args.config_opt or DEFAULT_CONFIG
        settings = _load(path)
        if settings is None:
            return EX_CONFIG
        from collector.config import Settings

        assert isinstance(settings, Settings)
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
    return 2


def _run(path: str) -> int:
    from collector.config import Settings
    from collector.daemon import Daemon
    from collector.logs import setup_logging
    from correlator.errors import CorrelationError
    from actions.errors import ActionError

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
