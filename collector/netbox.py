"""``netreflex inventory import-netbox``: NetBox → inventory.yaml + subscribers.csv.

Reads devices, cables and tenants through pynetbox (``correlator.netbox_map`` turns them
into inventory data, without I/O), writes both files into a staging directory, loads them
with netreflex's own inventory loader, and only then moves them into ``--out-dir``,
subscribers.csv first: an error at any step leaves the old files as they were. The daemon
picks the new ones up on ``systemctl reload netreflex`` (SIGHUP), which checks them again
and keeps the old inventory if they fail.

Exit codes (sysexits.h, as the supervisor commands): 64 --url is not an http(s) URL, 65
NetBox's data has problems (one line each, naming the object), 69 NetBox cannot be
reached or is not NetBox, 73 the files cannot be written, 77 no usable token (unreadable
file, or NetBox rejected it), 78 the mapping file is wrong. The token is read from a
file, sent only in the ``Authorization`` header, and never printed or logged.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from collector.errors import EX_CONFIG, CollectorError
from correlator.inventory import PASSIVE, load_inventory
from correlator.netbox_map import Mapped, NetboxMapping, map_netbox
from correlator.subscribers import CSV_COLUMNS
from probes.source import SourceError, load_yaml, validate

__all__ = ["NetboxImportError", "fetch", "install", "load_mapping", "read_token", "render",
           "run", "stage"]

EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73
EX_NOPERM = 77
INVENTORY, SUBSCRIBERS = "inventory.yaml", "subscribers.csv"
MARK = "# Written by `netreflex inventory import-netbox`"


class NetboxImportError(CollectorError):
    """The import cannot go on; ``exit_code`` says why (sysexits.h)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise NetboxImportError(f"cannot read the NetBox token from {path}: {why}",
                                EX_NOPERM) from None
    if not token or any(c.isspace() for c in token):
        raise NetboxImportError(f"the NetBox token file {path} is empty or holds more than "
                                "one word; put the API token alone in it", EX_NOPERM)
    return token


def load_mapping(path: str | None) -> NetboxMapping:
    if path is None:
        return NetboxMapping()
    mapping: NetboxMapping = validate(NetboxMapping, load_yaml(path))
    return mapping


def _safe(url: str) -> str:
    """The URL without any user:password@ part."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch(url: str, token: str, *, sites: Sequence[str] = (), timeout: float = 30.0,
          token_file: str = "the token file") -> tuple[list[dict[str, Any]], ...]:
    """Devices, cables and tenants as NetBox's JSON (every page); NetBox errors become
    ``NetboxImportError`` with one line saying what to do."""
    import pynetbox  # type: ignore[import-untyped]
    import requests

    class Session(requests.Session):
        def request(self, *args: Any, **kw: Any) -> requests.Response:
            kw.setdefault("timeout", timeout)
            return super().request(*args, **kw)

    where = _safe(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetboxImportError(f"--url {where!r}: expected NetBox's base URL, e.g. "
                                "https://netbox.example.net", EX_USAGE)
    nb = pynetbox.api(url, token=token)
    nb.http_session = Session()
    try:
        nb.status()  # one request that says whether this is NetBox and the token works
        filters = {"site": list(sites)} if sites else {}
        got = []
        for endpoint in (nb.dcim.devices, nb.dcim.cables, nb.tenancy.tenants):
            rows = endpoint.filter(**filters) if filters and endpoint is not \
                nb.tenancy.tenants else endpoint.all()
            got.append([dict(r) for r in rows])
    except pynetbox.RequestError as exc:
        code = exc.req.status_code
        if code in (401, 403):
            raise NetboxImportError(
                f"NetBox at {where} rejected the token read from {token_file} (HTTP {code}: "
                f"{_detail(exc.req)}); use an API token with read access to dcim and tenancy",
                EX_NOPERM) from None
        if code == 404:
            raise NetboxImportError(
                f"{_safe(exc.req.url)} answered HTTP 404: is --url NetBox's base URL (e.g. "
                "https://netbox.example.net, without /api)?", EX_UNAVAILABLE) from None
        raise NetboxImportError(f"NetBox at {where} answered HTTP {code} for "
                                f"{urllib.parse.urlsplit(exc.req.url).path}: "
                                f"{_detail(exc.req)}", EX_UNAVAILABLE) from None
    except (pynetbox.ContentError, requests.JSONDecodeError):
        raise NetboxImportError(f"{where} answered something that is not JSON: is --url "
                                "NetBox's base URL?", EX_UNAVAILABLE) from None
    except requests.Timeout:
        raise NetboxImportError(f"NetBox at {where} did not answer within {timeout:g} s "
                                "(--timeout)", EX_UNAVAILABLE) from None
    except requests.RequestException as exc:
        raise NetboxImportError(f"cannot reach NetBox at {where}: {_reason(exc)}",
                                EX_UNAVAILABLE) from None
    return tuple(got)


def _detail(resp: Any) -> str:
    try:
        return str(resp.json().get("detail") or resp.reason)[:200]
    except (ValueError, AttributeError):
        return str(resp.reason)


def _reason(exc: Exception) -> str:
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found[-1].strip() if found else type(exc).__name__


# --- writing -----------------------------------------------------------------------------


def render(mapped: Mapped, source: str) -> tuple[str, str]:
    """inventory.yaml and subscribers.csv, as text."""
    head = (f"{MARK} from {source}.\n# Do not edit: the next import replaces it. List "
            f"this file (not {SUBSCRIBERS}) under inventory: in netreflex.yaml.\n")
    body = yaml.safe_dump({"devices": mapped.devices, "subscriber_files": [SUBSCRIBERS]},
                          sort_keys=False, allow_unicode=True, default_flow_style=False)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in mapped.subscribers:
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return head + body, out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


NEW_FILE_MODE = 0o640


def stage(directory: Path, mapped: Mapped, source: str) -> None:
    """Write both files into ``directory`` and load them as the daemon would; problems
    → SourceError."""
    inventory, subscribers = render(mapped, source)
    for name, text in ((SUBSCRIBERS, subscribers), (INVENTORY, inventory)):
        # subscriber contacts are personal data: a new file is readable by its owner and
        # group only (0640, whatever the umask); a replaced file keeps the old one's mode
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, NEW_FILE_MODE)
        os.fchmod(fd, NEW_FILE_MODE)
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    load_inventory([directory / INVENTORY])


def install(staged: Path, out_dir: Path) -> None:
    """Move both staged files into ``out_dir``; on a failure, put back the old ones."""
    moved: list[str] = []
    try:
        for name in (SUBSCRIBERS, INVENTORY):
            old = out_dir / name
            if old.exists():  # kept for a rollback; its mode (the daemon reads it) kept
                shutil.copymode(old, staged / name)
                try:
                    os.link(old, staged / f"{name}.old")
                except OSError:  # no hard links here
                    shutil.copy2(old, staged / f"{name}.old")
            os.replace(staged / name, old)
            moved.append(name)
        fd = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        for name in moved:
            backup = staged / f"{name}.old"
            if backup.exists():
                os.replace(backup, out_dir / name)
            else:
                (out_dir / name).unlink(missing_ok=True)
        raise


def _check_out_dir(out_dir: Path) -> None:
    inventory = out_dir / INVENTORY
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if inventory.exists():
            with open(inventory, encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
            if not first.startswith(MARK):
                raise NetboxImportError(
                    f"{inventory} was not written by this importer; give --out-dir a "
                    "directory of its own (e.g. /etc/netreflex/netbox)", EX_CANTCREAT)
    except OSError as exc:
        raise NetboxImportError(f"cannot use --out-dir {out_dir}: {exc.strerror}",
                                EX_CANTCREAT) from None


# --- the command ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except NetboxImportError as exc:
        print(f"netreflex: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    try:
        mapping = load_mapping(args.mapping)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"netreflex: {len(exc.problems)} problem(s) in the mapping file; nothing was "
              "read", file=sys.stderr)
        return EX_CONFIG
    out_dir = Path(args.out_dir)
    if not args.dry_run:
        _check_out_dir(out_dir)
    token = read_token(args.token_file)
    source = _safe(args.url)
    devices, cables, tenants = fetch(args.url, token, sites=args.site or (),
                                     timeout=args.timeout, token_file=args.token_file)
    mapped = map_netbox(devices, cables, tenants, mapping)
    if mapped.problems and args.skip_invalid:
        mapped.skipped.extend(mapped.problems)
        mapped.problems = []
    if mapped.problems:
        _report(args, mapped, source, written=False)
        for issue in mapped.problems:
            print(issue, file=sys.stderr)
        print(f"netreflex: {len(mapped.problems)} problem(s) in NetBox's data (fix them in "
              "NetBox, or --skip-invalid to leave those objects out); nothing was written",
              file=sys.stderr)
        return EX_DATAERR
    base = None if args.dry_run else out_dir
    with tempfile.TemporaryDirectory(prefix=".netbox-import-", dir=base) as tmp:
        try:
            stage(Path(tmp), mapped, source)
        except SourceError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print("netreflex: the generated files fail netreflex's inventory checks (above); "
                  "nothing was written", file=sys.stderr)
            return EX_DATAERR
        except OSError as exc:
            raise NetboxImportError(f"cannot write in {tmp}: {exc.strerror}",
                                    EX_CANTCREAT) from None
        if not args.dry_run:
            try:
                install(Path(tmp), out_dir)
            except OSError as exc:
                raise NetboxImportError(f"cannot replace the files in {out_dir}: "
                                        f"{exc.strerror}; the old ones are unchanged",
                                        EX_CANTCREAT) from None
    _report(args, mapped, source, written=not args.dry_run)
    return 0


def _report(args: argparse.Namespace, mapped: Mapped, source: str, *, written: bool) -> None:
    out_dir = Path(args.out_dir)
    files = [str(out_dir / INVENTORY), str(out_dir / SUBSCRIBERS)] if written else []
    passive = sum(1 for d in mapped.devices.values() if d["role"] == PASSIVE)
    if args.json:
        print(json.dumps({
            "netbox": source, "devices": len(mapped.devices), "passive": passive,
            "links": mapped.links, "subscribers": len(mapped.subscribers),
            "skipped": [s.to_dict() for s in mapped.skipped],
            "problems": [p.to_dict() for p in mapped.problems],
            "written": files, "dry_run": bool(args.dry_run)}, sort_keys=True))
        return
    print(f"NetBox {source}: {len(mapped.devices)} device(s) ({passive} passive), "
          f"{mapped.links} link(s), {len(mapped.subscribers)} subscriber(s); "
          f"{len(mapped.skipped)} object(s) skipped")
    for s in mapped.skipped:
        print(f"  skipped {s}")
    if written:
        print(f"wrote {files[0]} and {files[1]} (checked with netreflex's inventory "
              "loader); `systemctl reload netreflex` loads them without a restart")
    elif args.dry_run and not mapped.problems:
        print("dry run: the files pass netreflex's inventory checks; nothing was written")

