"""A fake index on 127.0.0.1 that pages like Docker Hub, and helpers for the search tests."""

from __future__ import annotations

import argparse
import base64
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from syncer.commands import search as search_cmd

# Shaped like Docker Hub's /v1/search results, with the awkward cases in them:
# null description and stars, CR/LF, exactly 45 and 46 character descriptions.
_FIELDS = ("name", "description", "star_count", "is_official", "is_automated")
RECORDED: list[dict[str, Any]] = [
    dict(zip(_FIELDS, row, strict=True))
    for row in [
        ("centos", "DEPRECATED; The official build of CentOS.", 7777, True, False),
        ("kasmweb/centos-7-desktop", "CentOS 7 desktop for Kasm Workspaces", 43, False, False),
        ("couchbase/centos7-systemd",
         "centos7-systemd images with additional debug and support tools", 8, False, True),
        ("continuumio/centos5_gcc5_base", "", 3, False, False),
        ("dokken/centos-7", "CentOS 7 base with systemd, exactly 45 chars.", 5, False, True),
        ("datadog/centos-i386", None, None, False, False),
        ("centos/systemd", "systemd enabled base container.", 112, False, True),
        ("amd64/centos", "The official build of CentOS.\r\nFor amd64.", 1, False, False),
        ("smartentry/centos", "Minimal CentOS 7 image, exactly forty-five ch.", 0, False, False),
    ]
]  # fmt: skip
PAGE_CAP = 3  # the index never answers more than 3 per page: 9 results are 3 pages
CANNED: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "html": (200, b"<html>login</html>", {"Content-Type": "text/html"}),
    "429": (429, b'{"message": "slow down"}', {"Retry-After": "30"}),
    "500": (500, b"boom", {}),
    "shape": (200, b'{"results": "none"}', {}),
}


class FakeIndex(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "paged"
        self.redirect_to = ""
        self.requests: list[tuple[str, dict[str, str], httpx.Headers]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def queries(self) -> list[dict[str, str]]:
        return [q for _path, q, _headers in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: FakeIndex

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        # Header names are case-insensitive (aiohttp sends them in lower case).
        self.server.requests.append((url.path, query, httpx.Headers(self.headers.items())))
        mode = self.server.mode
        if mode == "redirect":
            return self._send(302, b"", {"Location": self.server.redirect_to + self.path})
        if url.path != "/v1/search":
            return self._send(404, b'{"message": "not found"}')
        if mode in CANNED:
            return self._send(*CANNED[mode])
        if mode == "flaky" and len(self.server.requests) == 1:
            return self._send(*CANNED["500"])
        if mode == "slow":
            time.sleep(1.0)
        size = min(int(query.get("n", "25")), PAGE_CAP)
        # "ignore-page" is an index that always answers page 1, whatever was asked.
        page = 1 if mode == "ignore-page" else int(query.get("page", "1"))
        body = {
            "num_results": len(RECORDED),
            "num_pages": math.ceil(len(RECORDED) / size),
            "page": str(page),  # Docker Hub has sent this as a string
            "page_size": size,
            "query": query.get("q"),
            "results": RECORDED[(page - 1) * size : page * size],
        }
        self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _start() -> FakeIndex:
    server = FakeIndex()
    # A short poll interval: shutdown() waits up to one interval per test.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def index() -> Iterator[FakeIndex]:
    server = _start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No ./sync.yaml of the developer's, and no proxy between us and 127.0.0.1.
    monkeypatch.chdir(tmp_path)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="syncer")
    search_cmd.register(parser.add_subparsers())
    try:
        args = parser.parse_args(["search", *argv])
    except SystemExit as exc:  # argparse's usage errors
        return exc.code if isinstance(exc.code, int) else 2
    code: int = args.func(args)
    return code


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def names(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [r["name"] for r in json.loads(capsys.readouterr().out)]
