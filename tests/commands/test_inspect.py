"""`syncer tags`, `catalog` and `inspect` against a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncer.cli import main
from tests.support.fleet import app_image, tag_item
from tests.support.images import Index, push
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


@pytest.fixture
def seeded(anon_registry: RunningRegistry, tmp_path: Path) -> tuple[RunningRegistry, Path]:
    push(anon_registry.seed_url, "team/web", app_image(0, 0), "1.0")
    push(anon_registry.seed_url, "team/web", tag_item(0, 2), "2.0")  # multi-arch
    for name in ("team/api", "other/db"):
        push(anon_registry.seed_url, name, app_image(1, 1), "latest")
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml",
        [{"source": f"{anon_registry.host}/a", "destination": f"{anon_registry.host}/b"}],
        anon_registry,
    )
    return anon_registry, cfg


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main([*args, "--output", "json"]) == 0
    data: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return data


def test_tags_with_digests_and_platforms(
    seeded: tuple[RunningRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, cfg = seeded
    rows = run_json(capsys, "tags", "-c", str(cfg), f"{reg.host}/team/web")
    assert [r["tag"] for r in rows] == ["1.0", "2.0"]
    assert rows[0]["digest"] == app_image(0, 0).digest
    assert rows[0]["platforms"] == []
    multi = tag_item(0, 2)
    assert isinstance(multi, Index)
    assert rows[1]["digest"] == multi.digest
    assert rows[1]["platforms"] == ["linux/amd64", "linux/arm64"]
    mark = reg.mark()
    assert main(["tags", "-c", str(cfg), f"{reg.host}/team/web"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["TAG", "DIGEST", "MEDIA_TYPE", "PLATFORMS"]
    assert table[2].split()[-1] == "linux/amd64,linux/arm64"
    # One listing, a HEAD per tag, and a GET only for the index (its platforms).
    gets = [r for r in reg.requests_since(mark) if r.method == "GET" and "/manifests/" in r.path]
    assert len(gets) == 1


def test_catalog_with_filter_and_pages(
    seeded: tuple[RunningRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, cfg = seeded
    rows = run_json(capsys, "catalog", "-c", str(cfg), reg.host)
    assert [r["repository"] for r in rows] == ["other/db", "team/api", "team/web"]
    rows = run_json(capsys, "catalog", "-c", str(cfg), reg.host, "--filter", "^team/")
    assert [r["repository"] for r in rows] == ["team/api", "team/web"]


def test_inspect_index_and_image(
    seeded: tuple[RunningRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, cfg = seeded
    rows = run_json(capsys, "inspect", "-c", str(cfg), f"{reg.host}/team/web:2.0")
    multi = tag_item(0, 2)
    assert isinstance(multi, Index)
    assert rows[0]["digest"] == multi.digest
    assert [r["platform"] for r in rows[1:]] == ["linux/amd64", "linux/arm64"]
    assert [r["digest"] for r in rows[1:]] == [c.digest for c in multi.children]
    img = app_image(0, 0)
    rows = run_json(capsys, "inspect", "-c", str(cfg), f"{reg.host}/team/web:1.0")
    assert rows[0]["size"] == len(img.manifest)
    assert [r["digest"] for r in rows[1:]] == [b.digest for b in img.blobs()]
    assert [r["size"] for r in rows[1:]] == [b.size for b in img.blobs()]


def test_inspect_missing_tag_is_one_line_exit_1(
    seeded: tuple[RunningRegistry, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reg, cfg = seeded
    assert main(["inspect", "-c", str(cfg), f"{reg.host}/team/web:nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MANIFEST_UNKNOWN" in err
