"""`syncer copy` against real registries and layouts: the sync engine for one image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from syncer.cli import main
from tests.commands.oneoff_support import (
    VARIANTS,
    WRITES,
    kinds,
    run_json,
    served,
    settings_for,
)
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import app_image, tag_item
from tests.support.images import Index, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory


@pytest.mark.parametrize("variant", VARIANTS)
def test_copy_one_tag_then_up_to_date_costs_two_heads(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    variant: str,
) -> None:
    src, dst = registry_factory(variant), registry_factory(variant)
    image = app_image(0, 0)
    push(src.seed_url, "library/app", image, "1.0")
    cfg = settings_for(tmp_path, src, dst)
    report = tmp_path / "report.json"
    doc = run_json(
        capsys,
        "copy",
        "-c",
        str(cfg),
        f"{src.host}/library/app:1.0",
        f"{dst.host}/m/app",
        "--report",
        str(report),
        "-q",
    )
    tags = doc["entries"][0]["tags"]
    assert [(t["tag"], t["action"], t["destination_digest"]) for t in tags] == [
        ("1.0", "copied", image.digest)
    ]
    assert doc["totals"]["blobs_copied"] == len(image.blobs())
    assert doc["totals"]["bytes_copied"] == sum(b.size for b in image.blobs())
    assert json.loads(report.read_text())["totals"] == doc["totals"]
    assert fetch_manifest_digest(dst.seed_url, "m/app", "1.0") == image.digest

    s0, d0 = src.mark(), dst.mark()
    assert main(["copy", "-c", str(cfg), f"{src.host}/library/app:1.0", f"{dst.host}/m/app"]) == 0
    # One manifest HEAD per registry. A new process holds no token or session yet, so an
    # authenticated registry first answers that HEAD with its 401 challenge (measured: 1).
    challenges = 0 if variant in ("anon", "tls") else 1
    for reg, mark in ((src, s0), (dst, d0)):
        logged = reg.requests_since(mark)
        assert kinds(served(reg, mark)) == ["HEAD manifest"], logged
        assert len(logged) == 1 + challenges, logged
    assert not any(r.method in WRITES for r in dst.requests_since(d0))
    assert "up_to_date" in capsys.readouterr().out


def test_all_tags_mounts_and_digest_source(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    items = {"1.0": app_image(1, 0), "1.1": app_image(1, 1, fmt="oci"), "2.0": tag_item(1, 2)}
    for tag, item in items.items():
        push(src.seed_url, "app", item, tag)
    cfg = settings_for(tmp_path, src, dst)
    doc = run_json(
        capsys, "copy", "-c", str(cfg), "--all-tags", f"{src.host}/app", f"{dst.host}/a/app"
    )
    assert sorted(t["tag"] for t in doc["entries"][0]["tags"]) == ["1.0", "1.1", "2.0"]
    for tag, item in items.items():
        assert fetch_manifest_digest(dst.url, "a/app", tag) == item.digest

    # A second repository in the same registry: every blob is mounted, none travels.
    doc = run_json(
        capsys, "copy", "-c", str(cfg), "--all-tags", f"{dst.host}/a/app", f"{dst.host}/b/app"
    )
    distinct = {b.digest for i in items.values() for b in i.blobs()}
    assert doc["totals"]["blobs_mounted"] == len(distinct)
    assert doc["totals"]["bytes_copied"] == 0

    # A digest with a destination tag: the engine's pinned source, no source HEAD needed.
    multi = items["2.0"]
    assert isinstance(multi, Index)
    s0 = src.mark()
    doc = run_json(
        capsys, "copy", "-c", str(cfg), f"{src.host}/app@{multi.digest}", f"{dst.host}/a/app:stable"
    )
    assert [t["action"] for t in doc["entries"][0]["tags"]] == ["copied"]
    assert fetch_manifest_digest(dst.url, "a/app", "stable") == multi.digest
    assert "HEAD manifest" not in kinds(served(src, s0))


def test_platform_filter_copies_one_child(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    multi = tag_item(0, 2)
    assert isinstance(multi, Index)
    push(src.seed_url, "app", multi, "2.0")
    cfg = settings_for(tmp_path, src, dst)
    args = [
        "copy",
        "-c",
        str(cfg),
        f"{src.host}/app:2.0",
        f"{dst.host}/app",
        "--platform",
        "linux/arm64",
    ]
    doc = run_json(capsys, *args)
    assert doc["totals"]["blobs_copied"] == len(multi.children[1].blobs())
    assert fetch_manifest_digest(dst.url, "app", multi.children[1].digest) is not None
    assert fetch_manifest_digest(dst.url, "app", multi.children[0].digest) is None
    doc = run_json(capsys, *args)  # a filtered copy of the same source is up to date
    assert [t["action"] for t in doc["entries"][0]["tags"]] == ["up_to_date"]


def test_copy_to_and_from_a_layout(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(2, 0, fmt="oci")
    push(src.seed_url, "library/alpine", image, "3.20")
    cfg = settings_for(tmp_path, src, dst)
    usb = tmp_path / "usb" / "images"
    # docker pull, to a disk: the layout keeps the source's repository path.
    run_json(capsys, "copy", "-c", str(cfg), f"{src.host}/library/alpine:3.20", f"oci:{usb}")
    index = json.loads((usb / "index.json").read_text())
    assert [
        (m["digest"], m["annotations"]["org.opencontainers.image.ref.name"])
        for m in index["manifests"]
    ] == [(image.digest, "library/alpine:3.20")]
    # docker push, from the disk, under a new tag; then up to date without a write.
    run_json(
        capsys, "copy", "-c", str(cfg), f"oci:{usb}:library/alpine:3.20", f"{dst.host}/alpine:prod"
    )
    assert fetch_manifest_digest(dst.url, "alpine", "prod") == image.digest
    d0 = dst.mark()
    doc = run_json(
        capsys, "copy", "-c", str(cfg), f"oci:{usb}:library/alpine:3.20", f"{dst.host}/alpine:prod"
    )
    assert [t["action"] for t in doc["entries"][0]["tags"]] == ["up_to_date"]
    assert kinds(dst.requests_since(d0)) == ["HEAD manifest"]


def test_missing_source_tag_is_exit_1(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = settings_for(tmp_path, src, dst)
    d0 = dst.mark()
    assert main(["copy", "-c", str(cfg), f"{src.host}/app:nope", f"{dst.host}/app"]) == 1
    err = capsys.readouterr().err
    assert "app:nope not found at source" in err
    # Off a terminal too, log lines are console text beside the table and `syncer:` lines.
    assert [line for line in err.splitlines() if line.startswith("{")] == [], err
    assert not any(r.method in WRITES for r in dst.requests_since(d0))


@pytest.mark.parametrize(
    ("src_text", "dst_text", "extra", "message"),
    [
        ("{src}/App:1", "{dst}/app", [], "SRC"),
        ("{src}/app:1", "{dst}/app@sha256:" + "0" * 64, [], "DST: found"),
        ("{src}/app:1", "{dst}/app", ["--all-tags"], "--all-tags copies every tag"),
        ("{src}/app:1", "{dst}/app", ["--platform", "linux"], "--platform"),
        ("{src}/app:1", "{src}/app:1", [], "same as the source"),
        ("oci:{layout}:app:1", "oci:{layout}:app", [], "same as the source"),
        ("oci:{layout}:app:1", "oci:{layout}", [], "same as the source"),
        ("oci:{layout}:app", "oci:{layout}", ["--all-tags"], "same as the source"),
    ],
)
def test_bad_input_is_exit_2_before_any_request(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    src_text: str,
    dst_text: str,
    extra: list[str],
    message: str,
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = settings_for(tmp_path, src, dst)
    s0, d0 = src.mark(), dst.mark()
    layout = tmp_path / "usb"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    names = {"src": src.host, "dst": dst.host, "layout": layout}
    args = [src_text.format(**names), dst_text.format(**names)]
    assert main(["copy", "-c", str(cfg), *args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("syncer: error: ") and message in err, err
    assert src.requests_since(s0) == [] and dst.requests_since(d0) == []


def test_interrupted_copy_never_moves_the_tag_and_a_rerun_finishes(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    old, new = app_image(3, 0), app_image(3, 1)
    push(src.seed_url, "app", new, "1.0")
    push(dst.seed_url, "app", old, "1.0")
    # The destination refuses every blob upload after the first: the copy stops mid-way.
    proxy = fault_proxy_factory(dst, error_burst=(503, 1000), error_paths=r"/blobs/uploads/.+")
    cfg = settings_for(tmp_path, src, behind(dst, proxy))
    args = ["copy", "-c", str(cfg), f"{src.host}/app:1.0", f"{proxy.host}/app", "-q"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "503" in err
    # Off a terminal too, log lines are console text beside the table and `syncer:` lines.
    assert [line for line in err.splitlines() if line.startswith("{")] == [], err
    assert "[error    ] tag failed" in err
    assert fetch_manifest_digest(dst.url, "app", "1.0") == old.digest  # not moved
    assert not any(m == "PUT" and "/manifests/" in p for m, p, _ in proxy.requests)
    proxy.error_burst = None
    assert main(args) == 0
    assert fetch_manifest_digest(dst.url, "app", "1.0") == new.digest


def test_dry_run_json_is_the_plan_and_writes_nothing(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(4, 0), "latest")
    cfg = settings_for(tmp_path, src, dst)
    d0 = dst.mark()
    doc = run_json(
        capsys, "copy", "-c", str(cfg), f"{src.host}/app", f"{dst.host}/app", "--dry-run"
    )
    assert doc["dry_run"] is True and doc["status"] == "ok"
    assert set(doc) >= {"entries", "totals", "status", "dry_run"}
    entry = doc["entries"][0]
    assert (entry["source"], entry["destination"]) == (
        f"{src.host}/app:latest",
        f"{dst.host}/app:latest",
    )
    assert [(t["tag"], t["action"]) for t in entry["tags"]] == [("latest", "planned")]
    assert not any(r.method in WRITES for r in dst.requests_since(d0))


def test_readme_workflow_pull_to_disk_tag_push_catalog(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/commands.md "One-off commands", with a local registry standing in for docker.io."""
    hub, far = registry_factory("anon"), registry_factory("tls")
    alpine = tag_item(0, 2)
    push(hub.seed_url, "library/alpine", alpine, "3.20")
    cfg = settings_for(tmp_path, hub, far)
    usb = tmp_path / "media" / "usb" / "images"
    base = ["-c", str(cfg)]
    run_json(capsys, "copy", *base, f"{hub.host}/library/alpine:3.20", f"oci:{usb}")
    run_json(capsys, "tag", *base, f"oci:{usb}:library/alpine:3.20", "prod")
    far_mark = far.mark()
    run_json(capsys, "copy", *base, f"oci:{usb}:library/alpine:prod", f"{far.host}/library/alpine")
    assert not any("/blobs/" in r.path and r.method == "GET" for r in far.requests_since(far_mark))
    assert run_json(capsys, "catalog", *base, far.host) == [{"repository": "library/alpine"}]
    rows = run_json(capsys, "tags", *base, f"{far.host}/library/alpine")
    assert [(r["tag"], r["digest"]) for r in rows] == [("prod", alpine.digest)]


def test_a_bad_destination_entry_or_a_missing_file_is_exit_2_before_any_request(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "1.0")
    cfg = settings_for(tmp_path, src, dst)
    doc = yaml.safe_load(cfg.read_text())
    doc["registries"][dst.host]["tls_mode"] = "on"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    s0, d0 = src.mark(), dst.mark()
    assert main(["copy", "-c", str(cfg), f"{src.host}/app:1.0", f"{dst.host}/app"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"syncer: error: {cfg}:") and f'["{dst.host}"].tls_mode' in err, err
    missing = tmp_path / "nosuch.yaml"
    assert main(["copy", "-c", str(missing), f"{src.host}/app:1.0", f"{dst.host}/app"]) == 2
    assert capsys.readouterr().err.startswith(f"syncer: error: {missing}: file not found")
    assert src.requests_since(s0) == [] and dst.requests_since(d0) == []


def test_a_credentials_only_file_gives_no_warning_and_a_problem_elsewhere_names_both_entries(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("basic"), registry_factory("basic")
    push(src.seed_url, "app", app_image(0, 0), "1.0")
    cfg = settings_for(tmp_path, src, dst)  # version: and registries: only
    assert "sync" not in yaml.safe_load(cfg.read_text())
    capsys.readouterr()
    assert main(["copy", "-q", "-c", str(cfg), f"{src.host}/app:1.0", f"{dst.host}/app"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["tag", "-c", str(cfg), f"{dst.host}/app:1.0", "stable"]) == 0
    assert capsys.readouterr().err == ""

    cfg.write_text(cfg.read_text() + "colour: blue\n")  # `syncer check` rejects it
    assert main(["copy", "-q", "-c", str(cfg), f"{src.host}/app:1.0", f"{dst.host}/app"]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert warnings == [
        f"syncer: warning: {cfg} has problems this command does not depend on "
        f'(`syncer check -c {cfg}` lists them); only its registries["{src.host}"] and '
        f'registries["{dst.host}"] entries were used'
    ]


def test_a_report_path_that_cannot_be_written_is_exit_2_before_any_request(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "1.0")
    cfg = settings_for(tmp_path, src, dst)
    folder = tmp_path / "reports"
    folder.mkdir()
    s0, d0 = src.mark(), dst.mark()
    for path, message in (
        (folder, f"--report {folder}: is a directory; give a file path whose parent folder"),
        (tmp_path / "nope" / "r.json", f"--report {tmp_path / 'nope' / 'r.json'}: folder "),
    ):
        argv = ["copy", "-q", "-c", str(cfg), f"{src.host}/app:1.0", f"{dst.host}/app"]
        assert main([*argv, "--report", str(path)]) == 2
        assert capsys.readouterr().err.startswith(f"syncer: error: {message}")
    assert src.requests_since(s0) == [] and dst.requests_since(d0) == []
    assert not (tmp_path / "nope").exists()  # never created behind the user's back
    assert list(folder.iterdir()) == []  # no temp file left

    report = folder / "r.json"
    assert main([*argv, "--report", str(report)]) == 0
    assert json.loads(report.read_text())["status"] == "ok"
    assert [p.name for p in folder.iterdir()] == ["r.json"]
