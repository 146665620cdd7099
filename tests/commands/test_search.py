"""`syncer search` output against a real HTTP index: table, JSON, filters, limits, entries."""

from __future__ import annotations

import json

import pytest

from syncer.registry.search import SearchResult, ellipsis, emit_sync_entries, format_table
from tests.commands import search_support
from tests.commands.search_support import RECORDED, FakeIndex, cli, names

# pytest finds fixtures among a module's names: the fake index and the isolation from
# ./sync.yaml and proxies, both shared with the other search tests.
index = search_support.index
_isolated = search_support._isolated


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
