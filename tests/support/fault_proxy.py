"""A fault-injection HTTP proxy in front of one real test registry, plus a fake blob CDN.

`FaultProxy` forwards every request to a plain-http registry, streaming both bodies (the
server plumbing is in http_service.py). Faults are attributes a test may set at any time;
what a fault consumes (burst counts, the pull budget, the drop cadence) changes under a
lock, so concurrent clients see each injected failure exactly once. `CdnServer` listens on
127.0.0.2: a redirect to it changes host, as a redirect to a real CDN does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator
from http.client import HTTPException, HTTPResponse
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

from tests.support.http_service import HOP_BY_HOP, Handler, Headers, Service
from tests.support.registry import RunningRegistry

RATELIMIT_WINDOW = 21600  # seconds, as Docker Hub reports it in `;w=`
_KINDS = (  # first match wins: upload paths also look like blob paths
    (re.compile(r"^/v2/?$"), "/v2/"),
    (re.compile(r"^/v2/_catalog$"), "catalog"),
    (re.compile(r"^/v2/.+/blobs/uploads(/.*)?$"), "upload"),
    (re.compile(r"^/v2/.+/blobs/[^/]+$"), "blob"),
    (re.compile(r"^/v2/.+/manifests/[^/]+$"), "manifest"),
    (re.compile(r"^/v2/.+/tags/list$"), "tags"),
    (re.compile(r"^/v2/.+/referrers/[^/]+$"), "referrers"),
)
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_CDN_PATH = re.compile(r"^/blobs/(?P<repo>.+)/(?P<digest>sha256:[0-9a-f]{64})$")
MOUNT = ("mount", "from")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+)")
_ERROR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOOMANYREQUESTS"}
FAULTS = frozenset(
    {"drop_blob_every", "honour_range", "error_burst", "error_paths", "error_code", "too_many"}
    | {"ratelimit"}
    | {"ratelimit_retry_after", "manifest_latency"}
    | {"redirect_blobs_to", "flip_byte_in", "cut_upload_after", "strip_mount"}
    | {"extra_listed", "manifest_content_type", "lose_response_to"}
)
_LISTED = {"tags": "tags", "catalog": "repositories"}  # kind -> the JSON key of its names


class _ProxyHandler(Handler):
    def dispatch(self) -> None:
        proxy = self.server
        assert isinstance(proxy, FaultProxy)
        path = urlsplit(self.path).path
        kind = next((kind for rx, kind in _KINDS if rx.match(path)), "other")
        proxy.count("GET /v2/" if kind == "/v2/" else f"{self.command} {kind}")
        self._listed = False
        status = 0
        try:
            status = self.serve(proxy, path, kind)
        finally:
            self._list(status)  # an answer never sent (a cut connection): listed now

    def send_head(self, status: int, headers: Headers) -> None:
        # Listed before the answer leaves: a client that holds its answer finds it listed.
        self._list(status)
        super().send_head(status, headers)

    def _list(self, status: int) -> None:
        if self._listed:
            return
        self._listed = True
        proxy = self.server
        assert isinstance(proxy, FaultProxy)
        with proxy.lock:
            proxy.requests.append((self.command, self.path, status))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = dispatch

    def serve(self, proxy: FaultProxy, path: str, kind: str) -> int:
        method, body = self.command, self.request_body()
        if (burst := proxy._take_burst(f"{method} {self.path}")) is not None:  # query too
            for _ in body or ():  # read the body so the connection stays usable
                pass
            proxy.count("burst")
            default = _ERROR_CODES.get(burst, "UNAVAILABLE" if burst >= 500 else "UNKNOWN")
            code = proxy.error_code or default
            return self.reply_error(burst, code, f"injected error burst ({burst})")
        rate: Headers = []
        if kind == "manifest" and method in ("GET", "HEAD"):
            if proxy.manifest_latency is not None:
                # Before the pull is counted, as a slow registry would: GETs overlap.
                time.sleep(random.uniform(*proxy.manifest_latency))
            retry_after = proxy._take_too_many() if method == "GET" else None
            allowed, rate = proxy._spend_pull(method, spend=retry_after is None)
            if retry_after is not None or not allowed:
                proxy.count("429")
                proxy.count("too_many" if retry_after is not None else "ratelimited")
                # Docker Hub sends a short Retry-After even when the budget's window is hours.
                wait = retry_after if retry_after is not None else proxy.ratelimit_retry_after
                extra = [("Retry-After", wait)] if wait is not None else []
                msg = "You have reached your pull rate limit (injected)"
                return self.reply_error(429, "TOOMANYREQUESTS", msg, [*extra, *rate])
        if kind == "upload" and method == "PATCH" and body is not None:  # noqa: SIM102
            if (cut := proxy._take_cut_upload()) is not None:  # only PATCHes use it up
                return self.cut_upload(body, cut)
        blob = _BLOB.match(path) if kind == "blob" and method == "GET" else None
        if blob and (cdn := proxy.redirect_blobs_to) is not None:
            proxy.count("redirected")
            location = cdn.signed_url(blob["repo"], blob["digest"])
            return self.reply(307, b"", [("Location", location)])
        target = self.path
        if kind == "upload" and method == "POST" and proxy.strip_mount:
            # Like a registry without cross-repository mounts (ECR): a plain upload opens.
            query = [(k, v) for k, v in parse_qsl(urlsplit(target).query) if k not in MOUNT]
            if len(query) < len(parse_qsl(urlsplit(target).query)):
                proxy.count("mount-stripped")
            target = path + (f"?{urlencode(query)}" if query else "")
        drop = set() if proxy.honour_range else {"range", "if-range"}
        if drop and "Range" in self.headers:
            proxy.count("range-stripped")
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | drop]
        try:
            resp = self.upstream(target, headers, body)
        except (OSError, HTTPException) as exc:
            proxy.count("upstream-error")
            self.close_connection = True  # the request body may be half-read
            return self.reply_error(502, "UNAVAILABLE", f"fault proxy: upstream failed: {exc!r}")
        if resp.status < 300 and proxy._take_lose(f"{method} {kind}"):
            # The registry did the work; the client never hears so, as when a connection
            # breaks after the request arrived.
            resp.read()
            self.close_upstream()
            self.abort()
            self.close_connection = True
            proxy.count("response-lost")
            return 0
        if method == "GET" and resp.status == 200 and (extra := proxy.extra_listed.get(kind)):
            return self.relay_listing(resp, _LISTED[kind], extra)
        replace = {}
        if kind == "manifest" and method in ("GET", "HEAD") and proxy.manifest_content_type:
            replace["content-type"] = proxy.manifest_content_type
        cut_at = flip_at = None
        if blob and resp.status in (200, 206):
            length = int(resp.getheader("Content-Length") or 0)
            offset, total = 0, length
            if m := _CONTENT_RANGE.match(resp.getheader("Content-Range") or ""):
                offset, total = int(m[1]), int(m[2])
            # The flipped byte sits at a fixed offset of the *blob*, so a download resumed
            # with Range meets the same corruption as a whole one.
            if blob["digest"] in proxy.flip_byte_in:
                flip_at = total // 2 - offset
            if length >= 2 and proxy._drop_due():
                cut_at = length // 2
        cut, flipped = self.relay(resp, rate, cut_at=cut_at, flip_at=flip_at, replace=replace)
        for key, happened in (("dropped", cut), ("flipped", flipped)):
            if happened:
                proxy.count(key)
        return resp.status

    def relay_listing(self, resp: HTTPResponse, key: str, extra: list[str]) -> int:
        """A tag list or catalog page with `extra` names appended (as another registry,
        ECR say, might list names distribution itself refuses)."""
        data = json.loads(resp.read())
        data[key] = [*(data.get(key) or []), *extra]
        self.close_upstream()
        old, new = self.server.upstream_url, self.server.url
        link = [("Link", v.replace(old, new)) for k, v in resp.getheaders() if k.lower() == "link"]
        self.server.count("listing-extended")
        content_type = ("Content-Type", "application/json; charset=utf-8")
        return self.reply(200, json.dumps(data).encode(), [content_type, *link])

    def cut_upload(self, body: Iterator[bytes], cut: int) -> int:
        """Forward the first `cut` bytes of this PATCH, end the upstream request there and
        wait until the registry is done with it, then drop the client connection: the
        registry keeps what it got before the client can ask how far it got, and the client
        sees its request break mid-body."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]

        def first_bytes() -> Iterator[bytes]:
            left = cut
            for data in body:
                yield data[:left]
                left -= len(data[:left])
                if not left:
                    break
            if self._up is not None and self._up.sock is not None:
                # The registry sees the body end early (EOF), answers, and only then
                # does the client see its connection go.
                self._up.sock.shutdown(socket.SHUT_WR)

        with contextlib.suppress(OSError, HTTPException):
            self.upstream(self.path, headers, first_bytes()).read()
        self.close_upstream()
        self.abort()
        self.close_connection = True
        self.server.count("upload-cut")
        return 0


class FaultProxy(Service):
    """Forwards to `upstream_url` (plain http) with faults injected; see the module doc."""

    def __init__(self, upstream_url: str, *, bind: str = "127.0.0.1") -> None:
        super().__init__(upstream_url, bind, _ProxyHandler)
        self.drop_blob_every: int | None = None
        self.honour_range = True
        self.error_burst: tuple[int, int] | None = None  # (status, count)
        self.error_paths: str | None = None  # a regex searched in "METHOD path?query"
        self.error_code: str | None = None  # the burst's error code, if not the status's own
        self.too_many: tuple[int, str] | None = None  # (count, Retry-After)
        self.redirect_blobs_to: CdnServer | None = None
        self.flip_byte_in: set[str] = set()
        self.cut_upload_after: int | None = None  # bytes of the next PATCH body, then cut
        # Names appended to every listing of a kind: {"tags": [...], "catalog": [...]}.
        self.extra_listed: dict[str, list[str]] = {}
        self.manifest_content_type: str | None = None  # replaces it on manifest GET/HEAD
        # "METHOD kind"s (e.g. "DELETE manifest") whose next successful answer is lost:
        # forwarded and done upstream, then the client connection drops. Each once.
        self.lose_response_to: set[str] = set()
        self.strip_mount = False  # drop mount/from from upload POSTs
        self.requests: list[tuple[str, str, int]] = []
        self._cadence: tuple[int | None, int] = (None, 0)  # (drop_blob_every, blob GETs)
        self._limit: int | None = None
        self.ratelimit_retry_after: str | None = "2"  # on the 429 once the budget is gone
        self.manifest_latency: tuple[float, float] | None = None  # seconds (low, high)
        self._remaining: int | None = None
        self._cdns: list[CdnServer] = []

    @property
    def ratelimit(self) -> int | None:
        """Manifest GETs left; setting it also sets the limit that is reported."""
        return self._remaining

    @ratelimit.setter
    def ratelimit(self, budget: int | None) -> None:
        with self.lock:
            self._limit = self._remaining = budget

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.requests.clear()
            self.connections = 0
            self._cadence = (None, 0)

    def start_cdn(self, upstream_url: str | None = None) -> CdnServer:
        """Start a CdnServer (stopped with this proxy) and redirect blob GETs to it. Its
        upstream must need no auth: for a non-anon registry, pass its seed_url."""
        self.redirect_blobs_to = CdnServer(upstream_url or self.upstream_url).start()
        self._cdns.append(self.redirect_blobs_to)
        return self.redirect_blobs_to

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            for cdn in self._cdns:
                cdn.stop()

    # _take_*: use up one injected answer; the fault reads None again once used up.
    def _take_burst(self, request: str) -> int | None:
        """`request` is "METHOD path?query": `error_paths` may name a method too ("^PUT .*")."""
        with self.lock:
            paths = self.error_paths
            if not self.error_burst or (paths and not re.search(paths, request)):
                return None
            status, n = self.error_burst
            self.error_burst = (status, n - 1) if n > 1 else None
            return status if n > 0 else None

    def _take_lose(self, request: str) -> bool:
        with self.lock:
            if request not in self.lose_response_to:
                return False
            self.lose_response_to.discard(request)
            return True

    def _take_cut_upload(self) -> int | None:
        with self.lock:
            cut, self.cut_upload_after = self.cut_upload_after, None
            return cut

    def _take_too_many(self) -> str | None:
        with self.lock:
            if not self.too_many:
                return None
            n, retry_after = self.too_many
            self.too_many = (n - 1, retry_after) if n > 1 else None
            return retry_after if n > 0 else None

    def _spend_pull(self, method: str, *, spend: bool) -> tuple[bool, Headers]:
        """Like Docker Hub: GETs spend the budget (refused once it is 0), HEADs are free."""
        with self.lock:
            if self._remaining is None:
                return True, []
            allowed = method != "GET" or self._remaining > 0
            if method == "GET" and allowed and spend:
                self._remaining -= 1
            return allowed, [
                ("RateLimit-Limit", f"{self._limit};w={RATELIMIT_WINDOW}"),
                ("RateLimit-Remaining", f"{self._remaining};w={RATELIMIT_WINDOW}"),
                ("Docker-RateLimit-Source", "127.0.0.1"),
            ]

    def _drop_due(self) -> bool:
        with self.lock:
            every = self.drop_blob_every
            # A new setting counts from here, so "every 2nd" means the 2nd after setting it.
            seen = self._cadence[1] + 1 if self._cadence[0] == every else 1
            self._cadence = (every, seen)
            return every is not None and every > 0 and seen % every == 0


class _CdnHandler(Handler):
    def do_GET(self) -> None:
        cdn = self.server
        assert isinstance(cdn, CdnServer)
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if "Authorization" in self.headers:
            with cdn.lock:
                cdn.auth_rejections += 1
            msg = b"CDN: request carries an Authorization header; registry credentials must "
            self.reply(403, msg + b"never be sent to a redirect target on another host\n", text)
            return
        with cdn.lock:
            challenge = cdn.challenge_next > 0
            cdn.challenge_next -= 1 if challenge else 0
        if challenge:
            cdn.count("challenged")
            www = [("WWW-Authenticate", cdn.challenge)]
            self.reply(401, b"CDN: authenticate (injected)\n", [*text, *www])
            return
        url = urlsplit(self.path)
        m = _CDN_PATH.match(url.path)
        if not m or not cdn.valid(m["repo"], m["digest"], parse_qs(url.query)):
            self.reply(403, b"CDN: missing, wrong or expired signature\n", text)
            return
        keep = [(k, v) for k, v in self.headers.items() if k.lower() in ("range", "if-range")]
        path = f"/v2/{m['repo']}/blobs/{m['digest']}"
        resp = self.upstream(path, [*keep, ("Accept-Encoding", "identity")], None)
        if resp.status in (200, 206):
            # Counted before the body goes out: a client that has read it all may look at
            # the count before this thread would get past relay().
            with cdn.lock:
                cdn.served += 1
        self.relay(resp)

    do_HEAD = do_GET


class CdnServer(Service):
    """Serves blobs by digest from an open upstream registry, on 127.0.0.2 by default.

    Only URLs from `signed_url` are served; any request with an Authorization header gets
    403 (counted in `auth_rejections`), as from a real signed-URL CDN. `challenge_next`
    requests are answered 401 with `challenge` as WWW-Authenticate (counted `challenged`)."""

    def __init__(self, upstream_url: str, *, bind: str = "127.0.0.2", ttl: int = 300) -> None:
        super().__init__(upstream_url, bind, _CdnHandler)
        self.ttl, self._key = ttl, secrets.token_bytes(32)
        self.served = self.auth_rejections = 0
        self.challenge_next = 0
        self.challenge = 'Basic realm="cdn"'

    def _sign(self, repo: str, digest: str, expires: str) -> str:
        msg = f"{repo}/{digest}:{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def signed_url(self, repo: str, digest: str) -> str:
        expires = str(int(time.time()) + self.ttl)
        sig = self._sign(repo, digest, expires)
        return f"{self.url}/blobs/{quote(repo)}/{digest}?sig={sig}&expires={expires}"

    def valid(self, repo: str, digest: str, query: dict[str, list[str]]) -> bool:
        sig, expires = query.get("sig", [""])[0], query.get("expires", ["0"])[0]
        fresh = expires.isdigit() and int(expires) >= time.time()
        return fresh and hmac.compare_digest(sig, self._sign(repo, digest, expires))


@contextlib.contextmanager
def fault_proxy(registry: RunningRegistry, **faults: Any) -> Iterator[FaultProxy]:
    """A started FaultProxy in front of `registry` (plain http only) with `faults` set;
    `cdn=True` also starts a CdnServer fed by the registry's open seed process."""
    with FaultProxy(registry.url) as proxy:
        if faults.pop("cdn", False):
            proxy.start_cdn(registry.seed_url)
        for name, value in faults.items():
            if name not in FAULTS:
                raise TypeError(f"FaultProxy has no fault {name!r}; faults are {sorted(FAULTS)}")
            setattr(proxy, name, value)
        yield proxy


def behind(registry: RunningRegistry, proxy: FaultProxy) -> RunningRegistry:
    """`registry` as reached through `proxy` (same credentials and request log), so that
    syncer_setup.make_client / write_sync_yaml point syncer at the proxy."""
    return dataclasses.replace(registry, host=proxy.host, url=proxy.url)


class FaultProxyFactory(Protocol):
    """Type of the `fault_proxy_factory` fixture."""

    def __call__(self, registry: RunningRegistry, **faults: Any) -> FaultProxy: ...
