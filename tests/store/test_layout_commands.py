"""`syncer tags`, `catalog` and `inspect` on `oci:` references, on a layout syncer wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.errors import NotFound
from syncer.registry.oci import OCI_INDEX
from syncer.registry.reference import Reference
from syncer.store.ocilayout import OciLayout
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


def test_a_digest_resolves_only_in_a_repository_that_reaches_it(
    anon_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A layout's blobs/ is shared, but `REPO@DIGEST` names REPO's manifest: a registry
    would answer 404 for a repository that does not hold it, and so does a layout."""
    image = app_image(0, 0, fmt="oci")
    child = app_image(1, 0, fmt="oci")
    index = make_index([child, app_image(1, 0, fmt="oci", arch="arm64")], fmt="oci")
    push(anon_registry.seed_url, "team/web", image, "1.0")
    push(anon_registry.seed_url, "team/web", index, "2.0")
    layout = tmp_path / "bundle"
    asyncio.run(export_to_layout(anon_registry, layout, tmp_path, "team/web"))
    capsys.readouterr()
    cfg = str(tmp_path / "none.yaml")
    Path(cfg).write_text("version: 1\nsync: [{source: a.io/a, destination: b.io/b}]\n")
    before = (layout / "index.json").read_bytes()

    other = f"oci:{layout}:zzz@{image.digest}"
    for args in (["delete", other], ["delete", "--force", other], ["tag", other, "x"]):
        assert main([*args, "-c", cfg]) == 1, args
        out = capsys.readouterr()
        assert "not found" in out.err + out.out and "deleted" not in out.out, (args, out)
    for args in (["inspect", other], ["digest", other]):
        assert main([*args, "-c", cfg]) == 1, args
        capsys.readouterr()
    assert (layout / "index.json").read_bytes() == before, "nothing written"
    # In its own repository a digest resolves, a tag's or an index child's (any depth).
    for digest in (image.digest, index.digest, child.digest):
        rows = _json(capsys, "inspect", f"oci:{layout}:team/web@{digest}", "-c", cfg)
        assert rows[0]["digest"] == digest
    assert main(["delete", "--force", f"oci:{layout}:team/web@{image.digest}", "-c", cfg]) == 0
    assert "deleted" in capsys.readouterr().out
    assert (layout / "index.json").read_bytes() != before


async def test_deleting_what_a_repository_does_not_tag_is_not_found(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "l", writable=True)
    data = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", ' + (
        b'"manifests": []}'
    )
    try:
        digest = await layout.put_manifest(Reference("oci:x", "a"), "1", data, OCI_INDEX)
        with pytest.raises(NotFound, match="zzz"):
            await layout.delete_manifest(Reference("oci:x", "zzz"), digest)
        await layout.delete_manifest(Reference("oci:x", "a"), digest)
        assert await layout.list_tags(Reference("oci:x", "a")) == []
    finally:
        await layout.aclose()
