"""`syncer delete` against real registries: by digest, refusing to take other tags along
unless --force, the prune error for registries that forbid deletes, nothing half-done."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
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
from tests.support.images import Index, fetch_manifest_digest, push
from tests.support.registry import LoggedRequest, RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


def deletes(reg: RunningRegistry, mark: int) -> list[LoggedRequest]:
    return [r for r in served(reg, mark) if r.method == "DELETE"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_delete_a_tag(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    variant: str,
) -> None:
    reg = registry_factory(variant)
    bad, kept = app_image(0, 0), app_image(0, 1)
    push(reg.seed_url, "app", bad, "1.0-rc1")
    push(reg.seed_url, "app", kept, "1.0")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    rows = run_json(capsys, "delete", "-c", str(cfg), f"{reg.host}/app:1.0-rc1")
    assert rows == [{"tag": f"{reg.host}/app:1.0-rc1", "digest": bad.digest, "action": "deleted"}]
    # HEAD the tag, list the tags, HEAD the other tag, one DELETE by digest.
    assert kinds(served(reg, mark)) == sorted(
        ["HEAD manifest", "GET /v2/app/tags/list?n=1000", "HEAD manifest", "DELETE manifest"]
    )
    assert [r.path for r in deletes(reg, mark)] == [f"/v2/app/manifests/{bad.digest}"]
    assert fetch_manifest_digest(reg.seed_url, "app", "1.0-rc1") is None
    assert fetch_manifest_digest(reg.seed_url, "app", "1.0") == kept.digest


def test_shared_digest_needs_force_and_dry_run_deletes_nothing(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    image = app_image(1, 0)
    for tag in ("1.0", "stable", "latest"):
        push(reg.seed_url, "app", image, tag)
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    assert main(["delete", "-c", str(cfg), f"{reg.host}/app:1.0"]) == 1
    out, err = capsys.readouterr()
    assert f"{image.digest} is also tagged latest, stable" in err and "--force" in err
    assert out == "" and "nothing was deleted" in err

    rows = run_json(capsys, "delete", "-c", str(cfg), f"{reg.host}/app:1.0", "--force", "--dry-run")
    assert [(r["tag"], r["action"]) for r in rows] == [
        (f"{reg.host}/app:{t}", "would_delete") for t in ("1.0", "latest", "stable")
    ]
    assert deletes(reg, mark) == []

    rows = run_json(capsys, "delete", "-c", str(cfg), f"{reg.host}/app:1.0", "--force")
    assert [(r["tag"], r["action"]) for r in rows] == [
        (f"{reg.host}/app:{t}", "deleted") for t in ("1.0", "latest", "stable")
    ]
    assert len(deletes(reg, mark)) == 1
    for tag in ("1.0", "stable", "latest"):
        assert fetch_manifest_digest(reg.seed_url, "app", tag) is None


def test_child_of_another_tags_index_is_never_deleted(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    multi = tag_item(0, 2)
    assert isinstance(multi, Index)
    push(reg.seed_url, "app", multi, "2.0")
    push(reg.seed_url, "app", multi.children[0], "2.0-amd64")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    for force in ([], ["--force"]):
        assert main(["delete", "-c", str(cfg), f"{reg.host}/app:2.0-amd64", *force]) == 1
        assert "would break that index" in capsys.readouterr().err
    assert deletes(reg, mark) == []


def test_registry_that_forbids_deletes_gives_the_prune_error(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = registry_factory("anon")
    reg = registry_factory("anon", extra_config={"storage": {"delete": {"enabled": False}}})
    push(src.seed_url, "app", app_image(2, 0), "1")
    push(reg.seed_url, "m/app", app_image(2, 1), "old")
    cfg = settings_for(tmp_path, reg)
    assert main(["delete", "-c", str(cfg), f"{reg.host}/m/app:old"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("syncer: error: ")
    assert fetch_manifest_digest(reg.seed_url, "m/app", "old") == app_image(2, 1).digest

    # The same words as a refused prune (which prefixes them with "prune failed: ").
    entry = {"source": f"{src.host}/app", "destination": f"{reg.host}/m/app", "prune": True}
    pruning = write_sync_yaml(tmp_path / "prune.yaml", [entry], src, reg)
    report = asyncio.run(Runner(load_config(pruning)).run())
    reason = next(t.reason for t in report.entries[0].tags if t.tag == "old")
    assert reason == "prune failed: " + err.removeprefix("syncer: error: ")
    assert f"operation not supported by {reg.host}" in err


def test_missing_reference_and_bad_input(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    push(reg.seed_url, "app", app_image(3, 0), "1.0")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    assert main(["delete", "-c", str(cfg), f"{reg.host}/app:nope"]) == 1
    err = capsys.readouterr().err
    assert "app:nope: not found" in err and "nothing was deleted" in err
    assert deletes(reg, mark) == []
    exits_2_with_no_request(reg, capsys, ["delete", "-c", str(cfg)], [[f"{reg.host}/app:bad tag"]])


def test_delete_in_a_layout(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    one, two = app_image(4, 0, fmt="oci"), app_image(4, 1, fmt="oci")
    cfg, usb = layout_holding(reg, capsys, tmp_path, one, two)
    rows = run_json(capsys, "delete", "-c", str(cfg), f"oci:{usb}:app:1")
    assert [r["action"] for r in rows] == ["deleted"]
    index = json.loads((usb / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [two.digest]
