"""Whole namespaces, renames and pruning against real registries."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError
from syncer.sync.runner import Runner, RunOptions
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


def seed(reg: RunningRegistry, repos: dict[str, list[str]]) -> None:
    for n, (repo, tags) in enumerate(repos.items()):
        for t, tag in enumerate(tags):
            push(reg.seed_url, repo, app_image(n, t), tag)


async def test_glob_source_with_repository_filter(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    seed(
        src,
        {
            "team/api": ["1"],
            "team/web": ["1", "2"],
            "team/sub/tool": ["1"],
            "team/legacy": ["1"],
            "other/db": ["1"],
        },
    )
    entry = {
        "source": f"{src.host}/team/*",
        "destination": f"{dst.host}/mirror/team",
        "repositories": {"deny": ["team/legacy"]},
    }
    report = await Runner(
        load_config(write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst))
    ).run()
    assert report.status == "ok"
    assert sorted(e.destination for e in report.entries) == [
        f"{dst.host}/mirror/team/api",
        f"{dst.host}/mirror/team/sub/tool",
        f"{dst.host}/mirror/team/web",
    ]
    assert report.totals.tags_copied == 4
    assert fetch_manifest_digest(dst.url, "mirror/team/sub/tool", "1") == app_image(2, 0).digest
    assert fetch_manifest_digest(dst.url, "mirror/team/legacy", "1") is None


async def test_glob_on_a_registry_that_forbids_catalog(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("token"), registry_factory("anon")
    entry = {"source": f"{src.host}/team/*", "destination": f"{dst.host}/m"}
    # Anonymous: the token server grants pulls on repositories, never the catalog.
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst, creds=False)
    report = await Runner(load_config(cfg)).run()
    assert report.status == "failed"
    assert "_catalog" in report.entries[0].errors[0]["error"]


async def test_renames_with_placeholders_and_tag_template(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    seed(src, {"library/alpine": ["3.20"], "team/a/b": ["1"]})
    entries = [
        {
            "source": f"{src.host}/library/alpine",
            "destination": f"{dst.host}/hub/{{repo}}",
            "tag_template": "{tag}-mirror",
        },
        {"source": f"{src.host}/team/*", "destination": f"{dst.host}/flat/{{repo}}"},
    ]
    report = await Runner(
        load_config(write_sync_yaml(tmp_path / "s.yaml", entries, src, dst))
    ).run()
    assert report.status == "ok", report.to_json()
    assert fetch_manifest_digest(dst.url, "hub/alpine", "3.20-mirror") == app_image(0, 0).digest
    assert fetch_manifest_digest(dst.url, "hub/alpine", "3.20") is None
    assert fetch_manifest_digest(dst.url, "flat/b", "1") == app_image(1, 0).digest
    # Second run: the renamed tag is recognised as up to date.
    report = await Runner(
        load_config(write_sync_yaml(tmp_path / "s.yaml", entries, src, dst))
    ).run()
    assert report.totals.tags_up_to_date == 2 and report.totals.tags_copied == 0


async def test_prune_is_safe_capped_and_dry_runnable(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    seed(src, {"app": ["1", "2", "3", "4"]})
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app"}
    await Runner(load_config(write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst))).run()
    # Extra destination tags: one is a referrer tag (protected), one shares a kept manifest.
    push(dst.seed_url, "m/app", app_image(9, 9), "sha256-abc.sig")
    push(dst.seed_url, "m/app", app_image(0, 0), "alias-of-1")
    pruning = {
        **entry,
        "tags": {"allow": ["[12]"]},  # 3 and 4 are now filtered out
        "prune": True,
        "prune_max": 1,
    }
    cfg = write_sync_yaml(tmp_path / "p.yaml", [pruning], src, dst)
    report = await Runner(load_config(cfg), RunOptions(dry_run=True)).run()
    assert sorted(t.tag for t in report.entries[0].tags if t.action == "would_prune") == ["3"]
    assert fetch_manifest_digest(dst.url, "m/app", "3") is not None

    mark = dst.mark()
    report = await Runner(load_config(cfg)).run()
    actions = {t.tag: t.action for t in report.entries[0].tags}
    assert actions["3"] == "pruned" and actions["4"] == "prune_skipped"  # prune_max: 1
    assert report.entries[0].counters.tags_pruned == 1
    assert fetch_manifest_digest(dst.url, "m/app", "3") is None
    assert fetch_manifest_digest(dst.url, "m/app", "1") == app_image(0, 0).digest
    assert fetch_manifest_digest(dst.url, "m/app", "sha256-abc.sig") is not None
    assert sum(1 for r in dst.requests_since(mark) if r.method == "DELETE") == 1

    # alias-of-1 shares tag 1's manifest: deleting it by digest would delete tag 1.
    cfg = write_sync_yaml(tmp_path / "p2.yaml", [{**pruning, "prune_max": 50}], src, dst)
    report = await Runner(load_config(cfg)).run()
    actions = {t.tag: t.action for t in report.entries[0].tags}
    assert actions["alias-of-1"] == "prune_skipped"
    assert actions["4"] == "pruned"
    assert fetch_manifest_digest(dst.url, "m/app", "1") == app_image(0, 0).digest


async def test_prune_on_registry_without_deletes_is_a_clear_error(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    dst = registry_factory("anon", extra_config={"storage": {"delete": {"enabled": False}}})
    seed(src, {"app": ["1"]})
    push(dst.seed_url, "m/app", app_image(5, 5), "old")
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app", "prune": True}
    report = await Runner(
        load_config(write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst))
    ).run()
    errors = report.entries[0].errors
    assert errors and errors[0]["tag"] == "old" and "prune failed" in errors[0]["error"]
    assert report.entries[0].counters.tags_copied == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"source": "docker.io/*", "destination": "h.io/m"},
            r"sync\[0\]: source 'docker.io/\*': docker.io \(catalog: dockerhub\) lists "
            "repositories one namespace at a time and has no _catalog; name the namespace "
            r"before the glob, e.g. docker.io/bitnami/\*",
        ),
        ({"source": "h.io/team/*", "destination": "h.io/m:tag"}, "names a tag"),
        (
            {"source": "h.io/a", "destination": "h.io/b", "repositories": {"allow": ["x"]}},
            "glob source",
        ),
        ({"source": "h.io/a", "destination": "h.io/b", "tag_template": "{tag}/x"}, "valid tag"),
        ({"source": "h.io/a", "destination": "h.io/b", "prune_max": 0}, "prune_max"),
    ],
)
def test_namespace_config_errors(entry: dict[str, object], message: str, tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "sync": [entry]}))
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_cli_prints_prune_plan(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    seed(src, {"app": ["1"]})
    push(dst.seed_url, "m/app", app_image(5, 5), "gone")
    entry = {"source": f"{src.host}/app", "destination": f"{dst.host}/m/app", "prune": True}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], src, dst)
    assert main(["sync", "-c", str(cfg), "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[2:4] == ["gone", "would_prune"] for line in out.splitlines())
