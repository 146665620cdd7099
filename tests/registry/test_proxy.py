"""HTTP(S)_PROXY and NO_PROXY, honoured like docker and skopeo do, through a real proxy.

The proxy is a small forward proxy on loopback: it serves absolute-form requests
(`GET http://host/path HTTP/1.1`) by forwarding them, and records what it saw.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest

from syncer.registry.reference import Reference
from syncer.registry.transport.aiohttp_transport import AiohttpTransport
from tests.support.images import make_image, push, random_layer
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import make_client

HOP_BY_HOP = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-authorization",
}


class ForwardProxy:
    def __init__(self) -> None:
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.seen.append(f"{self.command} {self.path}")
                target = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                conn = http.client.HTTPConnection(target.netloc, timeout=30)
                path = target.path + (f"?{target.query}" if target.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    yield proxy
    proxy.close()


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_proxy_choice_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    ctx = ssl.create_default_context()
    assert AiohttpTransport(ctx, 1).proxy_for(httpx.URL("https://r.example/v2/")) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp,.lan")
    t = AiohttpTransport(ctx, 1)
    assert t.proxy_for(httpx.URL("https://r.example/v2/")) == "http://proxy.corp:3128"
    assert t.proxy_for(httpx.URL("http://r.example/v2/")) is None  # only HTTPS_PROXY is set
    assert t.proxy_for(httpx.URL("https://internal.corp/v2/")) is None
    assert t.proxy_for(httpx.URL("https://mirror.lan:5000/v2/")) is None


def test_no_proxy_ports_and_all_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("ALL_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "reg.corp:5000")
    t = AiohttpTransport(ssl.create_default_context(), 1)
    assert t.proxy_for(httpx.URL("http://reg.corp:5000/v2/")) is None  # host:port entry
    assert t.proxy_for(httpx.URL("https://reg.corp:5001/v2/")) == "http://proxy.corp:3128"
    assert t.proxy_for(httpx.URL("https://r.example/v2/")) == "http://proxy.corp:3128"
    # aiohttp speaks no SOCKS: such an ALL_PROXY is left alone rather than failing every request.
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.corp:1080")
    t = AiohttpTransport(ssl.create_default_context(), 1)
    assert t.proxy_for(httpx.URL("https://r.example/v2/")) is None


@pytest.mark.parametrize("bypass", [False, True])
async def test_requests_go_through_the_proxy_unless_no_proxy_names_the_host(
    bypass: bool,
    anon_registry: RunningRegistry,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = make_image([random_layer(2048, 5)], fmt="oci")
    push(anon_registry.seed_url, "proxied/app", image, "v1")
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    if bypass:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    repo = Reference.parse(f"{anon_registry.host}/proxied/app")
    async with make_client(anon_registry) as client:
        assert await client.list_tags(repo) == ["v1"]
        head = await client.head_manifest(repo.with_tag("v1"))
    assert head is not None and head.digest == image.digest
    if bypass:
        assert forward_proxy.seen == []
    else:
        base = f"http://{anon_registry.host}/v2/proxied/app"
        assert forward_proxy.seen == [f"GET {base}/tags/list?n=1000", f"HEAD {base}/manifests/v1"]
