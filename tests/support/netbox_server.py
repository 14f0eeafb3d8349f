"""A stand-in for NetBox's REST API on loopback -- NOT NetBox, only the parts of its API
that ``netreflex inventory import-netbox`` reads, answered in the shapes NetBox 4.x
documents:

- ``GET /api/`` (the API root, with the ``API-Version`` header) and ``/api/status/``;
- ``GET /api/dcim/devices/``, ``/dcim/interfaces/``, ``/dcim/cables/``,
  ``/dcim/sites/``, ``/dcim/device-roles/``, ``/tenancy/tenants/``: paginated
  ``{count, next, previous, results}`` with ``limit``/``offset`` (``limit`` capped at
  ``max_page_size``, as NetBox's MAX_PAGE_SIZE does; the default page is smaller than the
  data, so a client must follow the pages), filtered by ``site`` (slug, repeatable) where
  NetBox filters so;
- ``Authorization: Token <token>`` (or ``Bearer`` for v2 tokens) checked on every request:
  401 ``{"detail": "Invalid token"}`` otherwise, as NetBox answers.

Objects come from recorded-shape JSON in tests/fixtures/netbox/ (nested objects with
id/url/display/name/slug, cable ``a_terminations``/``b_terminations`` as
``{object_type, object_id, object}``); their URLs are rewritten to point here. A test may
change ``data`` before the requests come.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.fake_http import FakeService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "netbox"
RECORDED_BASE = "http://netbox.example.net"
NETBOX_VERSION = "4.3.2"
ENDPOINTS = {  # path under /api -> fixture
    "/dcim/devices/": "devices", "/dcim/interfaces/": "interfaces",
    "/dcim/cables/": "cables", "/tenancy/tenants/": "tenants",
    "/dcim/sites/": "sites", "/dcim/device-roles/": "device-roles",
}


def load_fixtures() -> dict[str, list[dict[str, Any]]]:
    data = {name: json.loads((FIXTURES / f"{name}.json").read_text())
            for name in ("devices", "interfaces", "cables", "tenants")}
    sites: dict[int, dict[str, Any]] = {}
    roles: dict[int, dict[str, Any]] = {}
    for d in data["devices"]:
        sites.setdefault(d["site"]["id"], d["site"])
        roles.setdefault(d["role"]["id"], d["role"])
    data["sites"] = [sites[k] for k in sorted(sites)]
    data["device-roles"] = [roles[k] for k in sorted(roles)]
    return data


class NetboxServer(FakeService):
    """The stand-in. ``token`` is the only one accepted; ``prefix`` may be changed to
    serve the API somewhere other than ``/api`` (then ``/api/`` is a 404)."""

    prefix = "/api"

    def __init__(self, *, token: str, default_page: int = 3, max_page_size: int = 4,
                 prefix: str = "/api", **kw: Any) -> None:
        super().__init__(**kw)
        self.token = token
        self.default_page = default_page
        self.max_page_size = max_page_size
        self.prefix = prefix
        self.data = load_fixtures()

    @property
    def url(self) -> str:
        """What a user gives as the NetBox URL (without /api)."""
        return self.base_url[: -len(self.prefix)] if self.prefix else self.base_url

    def setup_routes(self) -> None:
        self.route("GET", "/", self._root)
        self.route("GET", "/status/", self._status)
        for path, name in ENDPOINTS.items():
            self.route("GET", path, self._lister(name))

    def error(self, status: int, message: str, **extra: Any) -> web.Response:
        return web.json_response({"detail": message, **extra}, status=status)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme in ("Token", "Bearer") and value == self.token

    async def _root(self, request: web.Request, _body: Any) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "Invalid token")
        apps = ("circuits", "core", "dcim", "extras", "ipam", "plugins", "tenancy", "users",
                "virtualization", "vpn", "wireless")
        return web.json_response({a: f"{self.base_url}/{a}/" for a in apps},
                                 headers={"API-Version": NETBOX_VERSION.rsplit(".", 1)[0]})

    async def _status(self, request: web.Request, _body: Any) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "Invalid token")
        return web.json_response({
            "django-version": "5.2.4", "installed-apps": {}, "netbox-version": NETBOX_VERSION,
            "netbox-full-version": f"{NETBOX_VERSION} (stand-in)", "plugins": {},
            "python-version": "3.12.3", "rq-workers-running": 1,
        })

    def _lister(self, name: str) -> Any:
        async def handler(request: web.Request, _body: Any) -> web.Response:
            if not self._authorized(request):
                return self.error(401, "Invalid token")
            try:
                limit = int(request.query.get("limit", self.default_page))
                offset = int(request.query.get("offset", 0))
            except ValueError:
                return self.error(400, "limit and offset must be integers")
            if limit <= 0 or limit > self.max_page_size:
                limit = self.max_page_size
            rows = self._filtered(name, request.query.getall("site", []))
            page = rows[offset:offset + limit]
            return web.json_response({
                "count": len(rows),
                "next": self._page(request, limit, offset + limit)
                if offset + limit < len(rows) else None,
                "previous": self._page(request, limit, max(offset - limit, 0))
                if offset > 0 else None,
                "results": [self._here(obj) for obj in page],
            })
        return handler

    def _filtered(self, name: str, sites: list[str]) -> list[dict[str, Any]]:
        rows = self.data[name]
        if not sites:
            return rows
        if name == "devices":
            return [d for d in rows if d["site"]["slug"] in sites]
        if name == "cables":  # NetBox: a cable with a termination on a device in the site
            in_site = {d["id"] for d in self.data["devices"] if d["site"]["slug"] in sites}
            return [c for c in rows if any(
                t["object"].get("device", {}).get("id") in in_site
                for t in c["a_terminations"] + c["b_terminations"])]
        if name == "interfaces":
            in_site = {d["id"] for d in self.data["devices"] if d["site"]["slug"] in sites}
            return [i for i in rows if i["device"]["id"] in in_site]
        return rows

    def _page(self, request: web.Request, limit: int, offset: int) -> str:
        query = [(k, v) for k, v in request.query.items() if k not in ("limit", "offset")]
        query += [("limit", str(limit)), ("offset", str(offset))]
        return f"{self.base_url}{request.path[len(self.prefix):]}?" + \
            urllib.parse.urlencode(query)

    def _here(self, obj: dict[str, Any]) -> Any:
        text = json.dumps(obj).replace(RECORDED_BASE + "/api", self.base_url)
        return json.loads(text.replace(RECORDED_BASE, self.url))


def fresh_data() -> dict[str, list[dict[str, Any]]]:
    """A copy of the fixtures a test may change."""
    return copy.deepcopy(load_fixtures())
