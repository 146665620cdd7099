"""`syncer tag` against real registries and a layout: one GET, a HEAD and a PUT per new
tag, never a blob request; a tag holding another digest moves only with --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncer.cli import main
from tests.commands.oneoff_support import (
    VARIANTS,
    exits_2_with_no_request,
    kinds,
    layout_holding,
    run_json,
    served,
    settings_for,
)
from tests.support.fleet import app_image, tag_item
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RegistryFactory


@pytest.mark.parametrize("variant", VARIANTS)
def test_tag_makes_no_blob_request(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    variant: str,
) -> None:
    reg = registry_factory(variant)
    multi = tag_item(0, 2)  # an index: its children must not be touched either
    push(reg.seed_url, "app", multi, "1.2.3")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    rows = run_json(capsys, "tag", "-c", str(cfg), f"{reg.host}/app:1.2.3", "1.2", "stable")
    assert rows == [
        {"tag": f"{reg.host}/app:1.2", "digest": multi.digest, "action": "tagged", "was": None},
        {"tag": f"{reg.host}/app:stable", "digest": multi.digest, "action": "tagged", "was": None},
    ]
    logged = reg.requests_since(mark)
    assert not any("/blobs/" in r.path for r in logged), logged
    assert kinds(served(reg, mark)) == sorted(
        ["GET manifest", "HEAD manifest", "HEAD manifest", "PUT manifest", "PUT manifest"]
    )
    for tag in ("1.2", "stable"):
        assert fetch_manifest_digest(reg.seed_url, "app", tag) == multi.digest

    mark = reg.mark()  # again: nothing to write
    rows = run_json(capsys, "tag", "-c", str(cfg), f"{reg.host}/app:1.2.3", "stable")
    assert [r["action"] for r in rows] == ["up_to_date"]
    assert kinds(served(reg, mark)) == ["GET manifest", "HEAD manifest"]


def test_existing_tag_moves_only_with_force(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    new, old = app_image(1, 1), app_image(1, 0)
    push(reg.seed_url, "app", new, "1.1")
    push(reg.seed_url, "app", old, "stable")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    args = ["tag", "-c", str(cfg), f"{reg.host}/app:1.1", "latest", "stable"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{reg.host}/app:stable holds {old.digest}" in err and "--force" in err
    assert not any(r.method == "PUT" for r in reg.requests_since(mark))  # not even `latest`
    assert fetch_manifest_digest(reg.seed_url, "app", "latest") is None

    rows = run_json(capsys, *args, "--force")
    assert [(r["action"], r["was"]) for r in rows] == [("tagged", None), ("moved", old.digest)]
    assert fetch_manifest_digest(reg.seed_url, "app", "stable") == new.digest


def test_missing_reference_and_bad_input(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    assert main(["tag", "-c", str(cfg), f"{reg.host}/app:nope", "x"]) == 1
    assert "app:nope: not found" in capsys.readouterr().err
    assert not any(r.method == "PUT" for r in reg.requests_since(mark))

    bad = [[f"{reg.host}/App:1", "x"], [f"{reg.host}/app:1", "bad:tag"]]
    exits_2_with_no_request(reg, capsys, ["tag", "-c", str(cfg)], bad)


def test_tag_in_a_layout(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    image = app_image(2, 0, fmt="oci")
    cfg, usb = layout_holding(reg, capsys, tmp_path, image)
    rows = run_json(capsys, "tag", "-c", str(cfg), f"oci:{usb}:app:1", "prod")
    assert [r["action"] for r in rows] == ["tagged"]
    index = json.loads((usb / "index.json").read_text())
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert names == {"app:1": image.digest, "app:prod": image.digest}
    # A folder that is no layout is bad input, and is not created.
    assert main(["tag", "-c", str(cfg), f"oci:{tmp_path / 'none'}:app:1", "x"]) == 2
    assert not (tmp_path / "none").exists()
