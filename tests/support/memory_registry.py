"""An in-memory distribution API behind an httpx transport, for unit tests of one layer.

Only for pure-logic tests (copier ordering, ledger claims, prune decisions): it logs every
request in arrival order, can hold a request until the test releases it, and can answer a
request with a chosen status once. Behaviour the code relies on mirrors distribution 2.8:
a manifest DELETE by digest removes every tag that points at it; a mount answers 201 only
when the `from` repository holds the blob, else 202 with an upload session.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx

from syncer.registry.client import RegistryClient
from syncer.registry.options import RegistryConfig, RetryConfig

# No backoff: a unit test must never sleep.
FAST = RegistryConfig(retry=RetryConfig(attempts=2, backoff_s=0.0, max_backoff_s=0.0))

_MANIFEST = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")
_BLOB = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})")
_UPLOADS = re.compile(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)")


@dataclass(frozen=True)
class Seen:
    method: str
    host: str
    path: str  # with the query for uploads (mount/from/digest), else without

    def __str__(self) -> str:
        return f"{self.method} {self.host}{self.path}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class _Repo:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> data, type
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest


class MemoryRegistry:
    """Every host's repositories, in memory. Use `client()` to talk to it."""

    def __init__(self) -> None:
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._uploads: dict[str, tuple[str, str]] = {}  # session id -> (host, repo)
        self._ids = itertools.count(1)
        self.log: list[Seen] = []
        # (method, host, path) -> statuses to answer instead, first one first
        self._faults: dict[tuple[str, str, str], list[int]] = {}
        # (method, host, path) -> event the request waits for before it is answered
        self._holds: dict[tuple[str, str, str], asyncio.Event] = {}
        self.held: list[Seen] = []  # requests waiting at a hold right now
        self.corrupt: set[str] = set()  # blob digests served with one byte flipped

    # -- seeding and inspection -------------------------------------------------

    def repo(self, host: str, repo: str) -> _Repo:
        return self._repos.setdefault((host, repo), _Repo())

    def put_blob(self, host: str, repo: str, data: bytes) -> str:
        digest = _digest(data)
        self.repo(host, repo).blobs[digest] = data
        return digest

    def put_manifest(self, host: str, repo: str, data: bytes, media_type: str, *tags: str) -> str:
        digest = _digest(data)
        r = self.repo(host, repo)
        r.manifests[digest] = (data, media_type)
        for t in tags:
            r.tags[t] = digest
        return digest

    def tags(self, host: str, repo: str) -> dict[str, str]:
        return dict(self.repo(host, repo).tags)

    def fail(self, method: str, host: str, path: str, *statuses: int) -> None:
        self._faults[(method, host, path)] = list(statuses)

    def hold(self, method: str, host: str, path: str) -> asyncio.Event:
        event = self._holds[(method, host, path)] = asyncio.Event()
        return event

    def requests(self, host: str | None = None) -> list[str]:
        return [f"{s.method} {s.path}" for s in self.log if host is None or s.host == host]

    def client(self) -> RegistryClient:
        return RegistryClient(
            lambda _r: FAST,
            credentials=lambda _r, _c: None,
            http_transport=_Transport(self),
        )

    # -- the API -----------------------------------------------------------------

    async def _handle(self, req: httpx.Request) -> httpx.Response:
        host, path = req.url.netloc.decode(), req.url.path
        uploads = _UPLOADS.fullmatch(path)
        shown = f"{path}?{req.url.query.decode()}" if uploads and req.url.query else path
        seen = Seen(req.method, host, shown)
        self.log.append(seen)
        # Every answer yields once, so concurrent tasks interleave as over a network.
        await asyncio.sleep(0)
        key = (req.method, host, path)
        event = self._holds.get(key)
        if event is not None:
            self.held.append(seen)
            await event.wait()
            self.held.remove(seen)
            del self._holds[key]
        statuses = self._faults.get(key)
        if statuses:
            status = statuses.pop(0)
            await req.aread()
            return httpx.Response(status, json={"errors": [{"code": "INJECTED", "message": ""}]})
        if uploads:
            return await self._upload(req, host, uploads["repo"], uploads["id"])
        if m := _MANIFEST.fullmatch(path):
            return await self._manifest(req, self.repo(host, m["repo"]), m["ref"])
        if m := _BLOB.fullmatch(path):
            return self._blob(req, self.repo(host, m["repo"]), m["digest"])
        return _error(404, "NAME_UNKNOWN")

    async def _manifest(self, req: httpx.Request, r: _Repo, ref: str) -> httpx.Response:
        if req.method == "PUT":
            data = await req.aread()
            digest = _digest(data)
            r.manifests[digest] = (data, req.headers["content-type"])
            if not ref.startswith("sha256:"):
                r.tags[ref] = digest
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        digest = ref if ref.startswith("sha256:") else r.tags.get(ref, "")
        if digest not in r.manifests:
            return _error(404, "MANIFEST_UNKNOWN")
        if req.method == "DELETE":
            del r.manifests[digest]
            for tag in [t for t, d in r.tags.items() if d == digest]:
                del r.tags[tag]
            return httpx.Response(202)
        data, media_type = r.manifests[digest]
        headers = {"Content-Type": media_type, "Docker-Content-Digest": digest}
        if req.method == "HEAD":
            return httpx.Response(200, headers={**headers, "Content-Length": str(len(data))})
        return httpx.Response(200, content=data, headers=headers)

    def _blob(self, req: httpx.Request, r: _Repo, digest: str) -> httpx.Response:
        data = r.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN")
        if req.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        if digest in self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        return httpx.Response(200, stream=_Body(data))

    async def _upload(self, req: httpx.Request, host: str, repo: str, sid: str) -> httpx.Response:
        query = parse_qs(req.url.query.decode())
        if req.method == "POST":
            if "mount" in query:
                digest, source = query["mount"][0], query["from"][0]
                data = self.repo(host, source).blobs.get(digest)
                if data is not None:
                    self.repo(host, repo).blobs[digest] = data
                    return httpx.Response(201, headers={"Location": f"/v2/{repo}/blobs/{digest}"})
            new = str(next(self._ids))
            self._uploads[new] = (host, repo)
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{new}"})
        if sid not in self._uploads:
            return _error(404, "BLOB_UPLOAD_UNKNOWN")
        if req.method == "DELETE":
            del self._uploads[sid]
            return httpx.Response(204)
        if req.method == "PUT":
            data = await req.aread()  # a failing source raises here, as it would mid-send
            digest = query["digest"][0]
            if _digest(data) != digest:
                return _error(400, "DIGEST_INVALID")
            del self._uploads[sid]
            self.repo(host, repo).blobs[digest] = data
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return _error(405, "UNSUPPORTED")


class _Transport(httpx.AsyncBaseTransport):
    """Like `httpx.MockTransport`, but the handler sees a request before its body is read,
    so an upload whose source fails mid-stream is logged as sent."""

    def __init__(self, registry: MemoryRegistry) -> None:
        self._registry = registry

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._registry._handle(request)


class _Body(httpx.AsyncByteStream):
    """A response body that is streamed, not pre-read (downloads use `aiter_raw`)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": code.lower()}]})


async def until(condition: Callable[[], bool], *, steps: int = 1000) -> None:
    """Let other tasks run until `condition` holds (no wall-clock waiting)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")
