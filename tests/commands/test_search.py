"""`syncer search` against a real HTTP index on 127.0.0.1 that pages like Docker Hub."""

from __future__ import annotations

import argparse
import base64
import json
import math
import socket
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
from syncer.errors import ConfigError, InsecureCredentials, RateLimited, TransportError
from syncer.registry.options import CredentialsConfig, RegistryConfig, RetryConfig, TlsMode
from syncer.registry.origin import credentials_allowed
from syncer.registry.search import (
    SearchResult,
    apply_filters,
    ellipsis,
    emit_sync_entries,
    format_table,
    search,
)

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


TABLE = """\
NAME                            DESCRIPTION                                     STARS     OFFICIAL   AUTOMATED
centos                          DEPRECATED; The official build of CentOS.       7777      [OK]
kasmweb/centos-7-desktop        CentOS 7 desktop for Kasm Workspaces            43
couchbase/centos7-systemd       centos7-systemd images with additional debug…   8                    [OK]
continuumio/centos5_gcc5_base                                                   3
dokken/centos-7                 CentOS 7 base with systemd, exactly 45 chars.   5                    [OK]
datadog/centos-i386                                                             0
centos/systemd                  systemd enabled base container.                 112                  [OK]
amd64/centos                    The official build of CentOS.  For amd64.       1
smartentry/centos               Minimal CentOS 7 image, exactly forty-five c…   0
"""  # noqa: E501


def test_table_truncates_like_docker_and_follows_pages(
    index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("centos", "--index", index.url) == 0
    assert capsys.readouterr().out == TABLE
    assert [p for p, _q, _h in index.requests] == ["/v1/search"] * 3
    assert index.queries() == [
        {"q": "centos", "n": "25"},
        {"q": "centos", "n": "25", "page": "2"},
        {"q": "centos", "n": "25", "page": "3"},
    ]


def test_no_trunc_shows_whole_descriptions(
    index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("centos", "--index", index.url + "/", "--no-trunc", "--limit", "3") == 0
    assert capsys.readouterr().out == (
        "NAME                        DESCRIPTION                                                      STARS     OFFICIAL   AUTOMATED\n"  # noqa: E501
        "centos                      DEPRECATED; The official build of CentOS.                        7777      [OK]\n"  # noqa: E501
        "kasmweb/centos-7-desktop    CentOS 7 desktop for Kasm Workspaces                             43\n"  # noqa: E501
        "couchbase/centos7-systemd   centos7-systemd images with additional debug and support tools   8                    [OK]\n"  # noqa: E501
    )


def test_json_output_has_full_typed_fields(
    index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("centos", "--index", index.url, "--output", "json") == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got) == 9
    assert got[0] == RECORDED[0]
    assert got[2]["description"] == RECORDED[2]["description"]  # never truncated
    assert got[5] == {"name": "datadog/centos-i386", "description": "", "star_count": 0,
                      "is_official": False, "is_automated": False}  # fmt: skip


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["is-official=true"], ["centos"]),
        (["is-official=false", "stars=5"], ["kasmweb/centos-7-desktop", "couchbase/centos7-systemd",
                                            "dokken/centos-7", "centos/systemd"]),
        (["stars=43"], ["centos", "kasmweb/centos-7-desktop", "centos/systemd"]),
        (["stars=3", "stars=43"], ["centos", "kasmweb/centos-7-desktop", "centos/systemd"]),
        (["is-automated=true"], ["couchbase/centos7-systemd", "dokken/centos-7", "centos/systemd"]),
        (["is-automated=1", "stars=10"], ["centos/systemd"]),
    ],
)  # fmt: skip
def test_filters_are_applied_client_side(
    index: FakeIndex, capsys: pytest.CaptureFixture[str], filters: list[str], expected: list[str]
) -> None:
    argv = [a for f in filters for a in ("--filter", f)]
    assert cli("centos", "--index", index.url, "--output", "json", *argv) == 0
    assert names(capsys) == expected
    assert all("filter" not in q for q in index.queries())  # the index never sees them


def test_filters_apply_after_the_limit_like_docker(
    index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--limit", "3", "-f", "is-automated=true", "--output", "json"]
    assert cli("centos", "--index", index.url, *argv) == 0
    assert names(capsys) == ["couchbase/centos7-systemd"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-f", "foo=bar"], "invalid filter 'foo'; expected one of is-official, is-automated"),
        (["-f", "stars=many"], "invalid filter 'stars=many'"),
        (["-f", "is-official=maybe"], "invalid filter 'is-official=maybe'"),
        (["-f", "stars"], "bad format of filter 'stars'"),
        (["-f", "is-official=true", "-f", "is-official=false"], "conflicting values"),
        (["--limit", "0"], "limit 0 is outside the range of [1, 100]"),
        (["--limit", "101"], "limit 101 is outside the range of [1, 100]"),
        (["--limit", "ten"], "invalid limit 'ten'"),
        (["--emit-sync-entry", "https://reg.example.com"], "invalid destination prefix"),
        (["--emit-sync-entry", "reg.example.com/Mirror"], "invalid destination prefix"),
        (["--emit-sync-entry", "reg.example.com", "--output", "json"], "not allowed with"),
        (["--index", "ftp://127.0.0.1"], "invalid index URL"),
        (["--index", "http://u:p@127.0.0.1"], "invalid index URL"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    index: FakeIndex, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli("centos", *(["--index", index.url] if "--index" not in argv else []), *argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert index.requests == []


@pytest.mark.parametrize(("limit", "requests"), [("2", 1), ("3", 1), ("5", 2), ("9", 3)])
def test_limit_sets_n_and_stops_paging_when_enough(
    index: FakeIndex, capsys: pytest.CaptureFixture[str], limit: str, requests: int
) -> None:
    assert cli("centos", "--index", index.url, "--limit", limit, "--output", "json") == 0
    assert names(capsys) == [r["name"] for r in RECORDED[: int(limit)]]
    assert len(index.requests) == requests
    assert {q["n"] for q in index.queries()} == {limit}


async def test_an_index_that_ignores_page_is_not_asked_forever(index: FakeIndex) -> None:
    index.mode = "ignore-page"
    got = await search("centos", index_url=index.url, limit=25)
    assert [r.name for r in got] == [r["name"] for r in RECORDED[:3]]
    assert len(index.requests) == 2


async def test_basic_auth_is_sent_to_a_loopback_index(index: FakeIndex) -> None:
    await search("centos", index_url=index.url, limit=1, credentials=("alice", "s3cr3t"))
    await search("centos", index_url=index.url, limit=1)
    with_creds, anonymous = (h for _p, _q, h in index.requests)
    assert with_creds["Authorization"] == basic("alice", "s3cr3t")
    assert "Authorization" not in anonymous


async def test_credentials_do_not_follow_a_redirect_to_another_origin(index: FakeIndex) -> None:
    other = _start()
    try:
        index.mode, index.redirect_to = "redirect", other.url
        got = await search("centos", index_url=index.url, limit=2, credentials=("alice", "pw"))
    finally:
        other.shutdown()
        other.server_close()
    assert len(got) == 2
    assert "Authorization" in index.requests[0][2]
    assert [h.get("Authorization") for _p, _q, h in other.requests] == [None]


async def test_credentials_never_go_over_plain_http_to_another_host() -> None:
    # Raised before any connection: 192.0.2.1 (TEST-NET) is never contacted.
    with pytest.raises(InsecureCredentials):
        await search("x", index_url="http://192.0.2.1", limit=1, credentials=("a", "b"))
    on = TlsMode.ENABLED
    assert credentials_allowed("https://index.docker.io", on)
    assert credentials_allowed("http://127.0.0.1:5000", on)
    assert credentials_allowed("http://[::1]:5000", on)
    assert credentials_allowed("http://localhost", on)
    assert not credentials_allowed("http://10.0.0.1", on)
    assert not credentials_allowed("http://index.docker.io", on)


def test_search_endpoint_and_credentials_come_from_sync_yaml(
    index: FakeIndex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("syncer.config.syncfile")
    (tmp_path / "sync.yaml").write_text(
        "version: 1\nregistries:\n  docker.io:\n"
        f"    search_endpoint: {index.url}\n"
        "    credentials: {username: bob, password: hunter2}\n"
        "sync:\n  - {source: docker.io/library/alpine, destination: 127.0.0.1:5000/alpine}\n"
    )
    assert cli("centos", "--limit", "1") == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("centos ")
    assert index.requests[0][2]["Authorization"] == basic("bob", "hunter2")


def test_registry_settings_supply_endpoint_and_password_file(
    index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    creds = CredentialsConfig(username="carol", password_file=tmp_path / "pw")
    settings = RegistryConfig(search_endpoint=index.url, credentials=creds)
    monkeypatch.setattr(search_cmd, "_docker_io_settings", lambda _path: settings)
    assert cli("centos", "--limit", "1") == 0
    assert index.requests[0][2]["Authorization"] == basic("carol", "from-file")


def test_emit_sync_entries(index: FakeIndex, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("centos", "--index", index.url, "--limit", "2",
               "--emit-sync-entry", "registry.example.com:5000/mirror/") == 0  # fmt: skip
    assert capsys.readouterr().out == (
        "- source: docker.io/library/centos\n"
        "  destination: registry.example.com:5000/mirror/centos\n"
        "- source: docker.io/kasmweb/centos-7-desktop\n"
        "  destination: registry.example.com:5000/mirror/kasmweb/centos-7-desktop\n"
    )


def test_emit_skips_names_that_could_inject_yaml() -> None:
    results = [
        SearchResult(name="library/centos"),
        SearchResult(name="centos"),  # the same repository
        SearchResult(name="evil\n- source: docker.io/attacker/x"),
        SearchResult(name="Upper/Case"),
    ]
    assert emit_sync_entries(results, "reg.local") == (
        "- source: docker.io/library/centos\n"
        "  destination: reg.local/centos\n"
        "# skipped 2 result(s) whose names are not repository paths"
    )


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting to it is refused


@pytest.mark.parametrize(
    ("mode", "path", "message"),
    [
        ("refused", "", "failed: cannot reach 127.0.0.1:"),
        ("html", "", "the answer is not JSON (text/html); is this a Docker index"),
        ("shape", "", "not a search answer: results: Input should be a valid array"),
        ("429", "", "-> 429: rate limit reached at the search index; retry after 30s"),
        ("500", "", "/v1/search -> 500: Internal Server Error"),
        ("paged", "/nope", "/nope/v1/search -> 404: no search API here"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    index: FakeIndex, capsys: pytest.CaptureFixture[str], mode: str, path: str, message: str
) -> None:
    index.mode = mode
    url = f"http://127.0.0.1:{_refused_port()}" if mode == "refused" else index.url + path
    assert cli("centos", "--index", url) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("syncer: error: GET " if mode != "refused" else "syncer: error: ")
    assert message in err


def test_a_failing_index_is_retried_by_the_transport(
    index: FakeIndex, capsys: pytest.CaptureFixture[str]
) -> None:
    index.mode = "flaky"  # the first answer is a 500, the next ones are good
    assert cli("centos", "--index", index.url, "--limit", "2", "--output", "json") == 0
    assert names(capsys) == [r["name"] for r in RECORDED[:2]]
    assert [p for p, _q, _h in index.requests] == ["/v1/search"] * 2


async def test_the_registry_tls_setting_allows_credentials_over_plain_http() -> None:
    # No network: 192.0.2.1 (TEST-NET) is answered by a mock transport.
    sent: list[str | None] = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append(req.headers.get("authorization"))
        return httpx.Response(200, json={"num_pages": 1, "results": RECORDED[:1]})

    mock = httpx.MockTransport(handler)
    kw: dict[str, Any] = {"index_url": "http://192.0.2.1", "limit": 1, "credentials": ("a", "b")}
    with pytest.raises(InsecureCredentials, match=r"registries\.docker\.io\.tls: disabled"):
        await search("x", **kw, config=RegistryConfig(), http_transport=mock)
    assert sent == []
    got = await search("x", **kw, config=RegistryConfig(tls=TlsMode.DISABLED), http_transport=mock)
    assert [r.name for r in got] == ["centos"]
    assert sent == [basic("a", "b")]


async def test_rate_limit_carries_retry_after(index: FakeIndex) -> None:
    index.mode = "429"
    with pytest.raises(RateLimited) as caught:
        await search("centos", index_url=index.url, limit=5)
    assert caught.value.retry_after == 30.0
    assert caught.value.status == 429
    assert len(index.requests) == 1  # reported, not slept through: a person is waiting


async def test_a_silent_index_times_out(index: FakeIndex) -> None:
    index.mode = "slow"
    config = RegistryConfig(retry=RetryConfig(timeout_s=0.2, attempts=1))
    with pytest.raises(TransportError, match=r"no complete answer within 0.2s \(timeout_s\)"):
        await search("centos", index_url=index.url, limit=1, config=config)


async def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="outside the range"):
        await search("centos", index_url="http://127.0.0.1:1", limit=0)
    with pytest.raises(ConfigError, match="empty"):
        await search(" ", index_url="http://127.0.0.1:1", limit=1)
    with pytest.raises(ConfigError, match="invalid filter"):
        apply_filters([], ["stars=-"])


def test_table_is_safe_and_aligned_for_odd_text() -> None:
    results = [SearchResult(name="evil\x1b[2J", description="日本語" * 20, star_count=1)]
    table = format_table(results, no_trunc=False)
    assert "\x1b" not in table
    row = table.splitlines()[1]
    assert row.startswith("evil [2J   " + "日本語" * 7 + "日…   1")
    assert ellipsis("a" * 46, 45) == "a" * 44 + "…"
    assert ellipsis("a" * 45, 45) == "a" * 45
    assert format_table([], no_trunc=False) == (
        "NAME      DESCRIPTION   STARS     OFFICIAL   AUTOMATED"
    )
