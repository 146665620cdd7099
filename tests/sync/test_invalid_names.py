"""A listed name syncer cannot use fails on its own; the rest of the entry proceeds.

distribution refuses such names itself, so the fault proxy adds them to real listings,
as a registry with other rules (ECR allows 300-character tags) would list them."""

from __future__ import annotations

import json
from pathlib import Path

from syncer.cli import main
from syncer.config.patterns import destination_tags
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml

LONG_TAG = "v1-" + "x" * 197  # 200 characters: ECR takes it, the tag grammar allows 128


def test_an_overlong_listed_tag_fails_alone_and_the_entry_still_copies_and_prunes(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "v1")
    push(src.seed_url, "app", app_image(0, 1), "v2")
    push(dst.seed_url, "m/app", app_image(1, 0), "stale")  # gone from the source: pruned
    proxy = fault_proxy_factory(src, extra_listed={"tags": [LONG_TAG]})
    via = behind(src, proxy)
    entry = {"source": f"{via.host}/app", "destination": f"{dst.host}/m/app", "prune": True}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [entry], via, dst)
    report_path = tmp_path / "report.json"

    assert main(["sync", "-c", str(cfg), "--report", str(report_path), "-q"]) == 1

    report = json.loads(report_path.read_text())
    assert report["status"] == "partial"
    (e,) = report["entries"]
    assert (e["tags_copied"], e["tags_failed"], e["tags_pruned"]) == (2, 1, 1)
    outcomes = {t["tag"]: t for t in e["tags"]}
    assert outcomes[LONG_TAG]["action"] == "failed"
    reason = outcomes[LONG_TAG]["reason"]
    assert reason.startswith("invalid tag: tag 'v1-xxx")
    assert reason.endswith("is 200 characters; at most 128 allowed")
    assert e["errors"] == [{"tag": LONG_TAG, "error": reason}]
    assert outcomes["stale"]["action"] == "pruned"
    assert fetch_manifest_digest(dst.url, "m/app", "v1") == app_image(0, 0).digest
    assert fetch_manifest_digest(dst.url, "m/app", "v2") == app_image(0, 1).digest
    assert fetch_manifest_digest(dst.url, "m/app", "stale") is None
    assert proxy.counts["listing-extended"] == 1
    # The bad name was never asked for: one HEAD per good tag, none for it.
    assert proxy.counts["HEAD manifest"] == 2


def test_an_invalid_repository_from_the_catalog_fails_alone(
    registry_factory: RegistryFactory, fault_proxy_factory: FaultProxyFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "team/api", app_image(0, 0), "1")
    push(src.seed_url, "team/web", app_image(1, 0), "1")
    proxy = fault_proxy_factory(src, extra_listed={"catalog": ["team/Web-Old"]})
    via = behind(src, proxy)
    entry = {"source": f"{via.host}/team/*", "destination": f"{dst.host}/mirror/team"}
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [entry], via, dst)
    report_path = tmp_path / "report.json"

    assert main(["sync", "-c", str(cfg), "--report", str(report_path), "-q"]) == 1

    report = json.loads(report_path.read_text())
    assert report["status"] == "partial"
    by_source = {e["source"]: e for e in report["entries"]}
    assert sorted(by_source) == [
        f"{via.host}/team/Web-Old",
        f"{via.host}/team/api",
        f"{via.host}/team/web",
    ]
    bad = by_source[f"{via.host}/team/Web-Old"]
    (error,) = bad["errors"]
    assert not error["tag"]  # the whole (would-be) entry, not one of its tags
    assert "repository path component 'Web-Old' must be lowercase" in error["error"]
    assert by_source[f"{via.host}/team/api"]["tags_copied"] == 1
    assert by_source[f"{via.host}/team/web"]["tags_copied"] == 1
    assert fetch_manifest_digest(dst.url, "mirror/team/web", "1") == app_image(1, 0).digest
    assert proxy.counts["listing-extended"] == 1


def test_a_tag_template_that_makes_a_tag_too_long_fails_that_tag_only() -> None:
    ok, long = "1.0", "v" * 125
    names, invalid = destination_tags("{tag}-mirror", [ok, long, "-bad"])
    assert names == {ok: "1.0-mirror"}
    assert invalid[long].startswith("invalid destination tag (tag_template): tag 'vvv")
    assert invalid[long].endswith("is 132 characters; at most 128 allowed")
    assert invalid["-bad"].startswith("invalid tag: tag '-bad' must match")
