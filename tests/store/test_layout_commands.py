"""`syncer tags`, `catalog` and `inspect` on `oci:` references, on a layout syncer wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from syncer.cli import main
from tests.support.fleet import app_image
from tests.support.images import make_index, push
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import export_to_layout


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main([*args, "--output", "json"]) == 0
    data: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return data


def test_tags_catalog_and_inspect_read_a_layout(
    anon_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = app_image(0, 0, fmt="oci")
    index = make_index(
        [app_image(1, 0, fmt="oci"), app_image(1, 0, fmt="oci", arch="arm64")], fmt="oci"
    )
    push(anon_registry.seed_url, "team/web", image, "1.0")
    push(anon_registry.seed_url, "team/web", index, "2.0")
    layout = tmp_path / "bundle"
    asyncio.run(export_to_layout(anon_registry, layout, tmp_path, "team/web"))
    capsys.readouterr()  # the run's log lines
    empty = str(tmp_path / "none.yaml")  # no sync.yaml settings needed for a layout
    Path(empty).write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")

    assert _json(capsys, "catalog", f"oci:{layout}", "-c", empty) == [{"repository": "team/web"}]
    rows = _json(capsys, "tags", f"oci:{layout}:team/web", "-c", empty)
    assert [(r["tag"], r["digest"]) for r in rows] == [
        ("1.0", image.digest),
        ("2.0", index.digest),
    ]
    assert rows[1]["platforms"] == ["linux/amd64", "linux/arm64"]
    rows = _json(capsys, "inspect", f"oci:{layout}:team/web:1.0", "-c", empty)
    assert rows[0]["digest"] == image.digest
    assert [r["digest"] for r in rows[1:]] == [b.digest for b in image.blobs()]
    rows = _json(capsys, "inspect", f"oci:{layout}:team/web@{index.digest}", "-c", empty)
    assert rows[0]["media_type"] == "application/vnd.oci.image.index.v1+json"


def test_a_missing_layout_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")
    assert main(["tags", f"oci:{tmp_path}/nothing:team/web", "-c", str(cfg)]) == 2
    assert "no OCI image layout here" in capsys.readouterr().err
