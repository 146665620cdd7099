"""Fakes of the documented namespace-listing APIs of Docker Hub, Quay and Harbor (aiohttp.web).

Each follows its API's documented shape, nothing more:

- Docker Hub (docs.docker.com/reference/api/hub/latest, "List repositories in a namespace"
  and "Create access token"): `POST /v2/auth/token {identifier, secret}` -> `{access_token}`
  or 401; `GET /v2/namespaces/<ns>/repositories?page=&page_size=` (default 10, max 100) ->
  `{count, next, previous, results: [{name, namespace, ...}]}` with absolute `next` URLs
  (page_size: default 10, at most 1000);
  private repositories only with a valid Bearer token (silently left out otherwise); 404 for
  an unknown namespace or a page past the end; 429 with `X-Retry-After` when told to.
- Quay (`GET /api/v1/repository?namespace=&public=true`): `{repositories: [{namespace, name}],
  next_page}`, `next_page` only while more pages follow.
- Harbor (`GET /api/v2.0/projects/<p>/repositories?page=&page_size=`, page_size at most 100):
  a JSON array whose names carry the project, `X-Total-Count`, `Link` with relative
  `rel="prev"` and `rel="next"` targets; Basic auth; 404
  NOT_FOUND for an unknown project, 401 UNAUTHORIZED for a private one without credentials.

Every request is recorded (method, path with query, Authorization), so tests count them.
"""

from __future__ import annotations

import base64
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web


class Seen(NamedTuple):
    method: str
    path_qs: str
    authorization: str | None
    host: str = ""  # as the client named it (127.0.0.1:PORT, localhost:PORT)


@dataclass
class Namespace:
    public: list[str] = field(default_factory=list)  # repository names below the namespace
    private: list[str] = field(default_factory=list)


@dataclass
class ListingApi:
    kind: str  # dockerhub | quay | harbor
    namespaces: dict[str, Namespace]
    users: dict[str, str] = field(default_factory=dict)
    page_size: int = 2  # Quay's page size (it takes none from the client)
    fail_status: int | None = None  # mutable: answer listings with this status
    # Mutable: the statuses to answer the next listing requests with, one each, then normal.
    failures: list[int] = field(default_factory=list)
    # Mutable: a `next` URL pointing elsewhere (to check credentials stay home).
    next_host: str | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    tokens: set[str] = field(default_factory=set)  # the access tokens handed out
    _runner: web.AppRunner | None = None

    def listings(self, namespace: str) -> list[Seen]:
        """The listing requests (not logins) for `namespace`."""
        marks = (f"/namespaces/{namespace}/", f"namespace={namespace}", f"/projects/{namespace}/")
        return [s for s in self.seen if s.method == "GET" and any(m in s.path_qs for m in marks)]

    async def start(self) -> ListingApi:
        app = web.Application()
        app.router.add_post("/v2/auth/token", self._login)
        app.router.add_get("/v2/namespaces/{ns}/repositories", self._hub)
        app.router.add_get("/api/v1/repository", self._quay)
        app.router.add_get("/api/v2.0/projects/{ns}/repositories", self._harbor)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization")
        self.seen.append(Seen(request.method, request.path_qs, auth, request.host))

    def _failing(self) -> web.Response | None:
        status = self.failures.pop(0) if self.failures else self.fail_status
        if status is None:
            return None
        if status == 429:
            # Docker Hub's API: `X-Retry-After` is a unix time.
            headers = {"X-Retry-After": str(int(time.time()) + 3600)}
            body = {"message": "rate limit exceeded"}
            return web.json_response(body, status=429, headers=headers)
        return web.json_response({"message": "failed"}, status=status)

    # -- Docker Hub --------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.Response:
        self._record(request)
        body: Any = await request.json()
        user, secret = body.get("identifier"), body.get("secret")
        if not user or self.users.get(user) != secret:
            return web.json_response({"message": "incorrect credentials"}, status=401)
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token})

    async def _hub(self, request: web.Request) -> web.Response:
        self._record(request)
        if (failed := self._failing()) is not None:
            return failed
        auth = request.headers.get("Authorization", "")
        if auth and auth.removeprefix("Bearer ") not in self.tokens:
            return web.json_response({"message": "invalid token"}, status=401)
        ns = self.namespaces.get(request.match_info["ns"])
        if ns is None:
            return web.json_response({"message": "object not found"}, status=404)
        size = int(request.query.get("page_size", "10"))
        page = int(request.query.get("page", "1"))
        if not 1 <= size <= 1000:
            return web.json_response({"message": "invalid page_size"}, status=400)
        names = ns.public + (ns.private if auth else [])
        pages = max(1, math.ceil(len(names) / size))
        if page > pages:
            return web.json_response({"message": "page not found"}, status=404)
        chunk = names[(page - 1) * size : page * size]
        base = self.next_host or self.url
        path = f"{base}/v2/namespaces/{request.match_info['ns']}/repositories"
        nxt = f"{path}?page={page + 1}&page_size={size}" if page < pages else None
        prev = f"{path}?page={page - 1}&page_size={size}" if page > 1 else None
        results = [
            {"name": n, "namespace": request.match_info["ns"], "is_private": n in ns.private}
            for n in chunk
        ]
        return web.json_response(
            {"count": len(names), "next": nxt, "previous": prev, "results": results}
        )

    # -- Quay --------------------------------------------------------------------

    async def _quay(self, request: web.Request) -> web.Response:
        self._record(request)
        if (failed := self._failing()) is not None:
            return failed
        name = request.query.get("namespace", "")
        ns = self.namespaces.get(name, Namespace())
        start = int(request.query.get("next_page") or 0)
        chunk = ns.public[start : start + self.page_size]
        out: dict[str, Any] = {
            "repositories": [{"namespace": name, "name": n, "is_public": True} for n in chunk]
        }
        if start + self.page_size < len(ns.public):
            out["next_page"] = str(start + self.page_size)
        return web.json_response(out)

    # -- Harbor ------------------------------------------------------------------

    async def _harbor(self, request: web.Request) -> web.Response:
        self._record(request)
        if (failed := self._failing()) is not None:
            return failed
        project = request.match_info["ns"]
        ns = self.namespaces.get(project)
        if ns is None:
            err = {"code": "NOT_FOUND", "message": f"project {project} not found"}
            return web.json_response({"errors": [err]}, status=404)
        authed = self._basic_ok(request.headers.get("Authorization"))
        if ns.private and not authed:
            err = {"code": "UNAUTHORIZED", "message": "unauthorized"}
            return web.json_response({"errors": [err]}, status=401)
        names = [f"{project}/{n}" for n in ns.public + ns.private]
        size = int(request.query.get("page_size", "10"))
        page = int(request.query.get("page", "1"))
        chunk = names[(page - 1) * size : page * size]
        if not 1 <= size <= 100:
            err = {"code": "BAD_REQUEST", "message": "page_size must be <= 100"}
            return web.json_response({"errors": [err]}, status=400)
        headers = {"X-Total-Count": str(len(names))}
        path = f"/api/v2.0/projects/{project}/repositories"
        links = []
        if page > 1:
            links.append(f'<{path}?page={page - 1}&page_size={size}>; rel="prev"')
        if page * size < len(names):
            links.append(f'<{path}?page={page + 1}&page_size={size}>; rel="next"')
        if links:
            headers["Link"] = " , ".join(links)
        return web.json_response([{"name": n} for n in chunk], headers=headers)

    def _basic_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password
