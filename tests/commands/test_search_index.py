"""`syncer search` talking to the index: paging, credentials, sync.yaml settings, errors."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.commands import search as search_cmd
from syncer.errors import ConfigError, InsecureCredentials, RateLimited, TransportError
from syncer.registry.options import CredentialsConfig, RegistryConfig, RetryConfig, TlsMode
from syncer.registry.origin import credentials_allowed
from syncer.registry.search import apply_filters, search
from tests.commands import search_support
from tests.commands.search_support import RECORDED, FakeIndex, _start, basic, cli, names

# pytest finds fixtures among a module's names: the fake index and the isolation from
# ./sync.yaml and proxies, both shared with the other search tests.
index = search_support.index
_isolated = search_support._isolated


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
