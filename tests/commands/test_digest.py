"""`syncer digest` against real registries: one HEAD (no pull quota spent); --platform
reads the index once and names the child."""

from __future__ import annotations

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
from tests.support.fault_proxy import FaultProxyFactory, behind
from tests.support.fleet import app_image, tag_item
from tests.support.images import Index, push
from tests.support.registry import RegistryFactory


@pytest.mark.parametrize("variant", VARIANTS)
def test_digest_is_one_head(
    registry_factory: RegistryFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    variant: str,
) -> None:
    reg = registry_factory(variant)
    multi = tag_item(0, 2)
    assert isinstance(multi, Index)
    push(reg.seed_url, "library/alpine", multi, "3.20")
    cfg = settings_for(tmp_path, reg)
    mark = reg.mark()
    rows = run_json(capsys, "digest", "-c", str(cfg), f"{reg.host}/library/alpine:3.20")
    assert rows == [
        {
            "reference": f"{reg.host}/library/alpine:3.20",
            "digest": multi.digest,
            "media_type": multi.media_type,
        }
    ]
    assert kinds(served(reg, mark)) == ["HEAD manifest"]

    mark = reg.mark()
    rows = run_json(
        capsys,
        "digest",
        "-c",
        str(cfg),
        f"{reg.host}/library/alpine:3.20",
        "--platform",
        "linux/arm64",
    )
    assert [(r["platform"], r["digest"]) for r in rows] == [
        ("linux/arm64", multi.children[1].digest)
    ]
    assert kinds(served(reg, mark)) == ["GET manifest"]


def test_digest_spends_no_pull_quota(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = registry_factory("anon")
    image = app_image(1, 0)
    push(reg.seed_url, "app", image, "1.0")
    proxy = fault_proxy_factory(reg, ratelimit=3)  # counts GETs as Docker Hub does
    cfg = settings_for(tmp_path, behind(reg, proxy))
    assert main(["digest", "-c", str(cfg), f"{proxy.host}/app:1.0"]) == 0
    assert capsys.readouterr().out.split()[-2:] == [image.digest, image.media_type]
    assert proxy.ratelimit == 3
    # --platform on a single image: that image is the answer; reading it is one pull.
    rows = run_json(
        capsys, "digest", "-c", str(cfg), f"{proxy.host}/app:1.0", "--platform", "linux/amd64"
    )
    assert rows[0]["digest"] == image.digest
    assert proxy.ratelimit == 2


def test_not_found_and_bad_input(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    push(reg.seed_url, "app", tag_item(0, 2), "2.0")
    cfg = settings_for(tmp_path, reg)
    assert main(["digest", "-c", str(cfg), f"{reg.host}/app:nope"]) == 1
    assert "app:nope: not found" in capsys.readouterr().err
    assert main(["digest", "-c", str(cfg), f"{reg.host}/app:2.0", "--platform", "linux/s390x"]) == 1
    err = capsys.readouterr().err
    assert "no linux/s390x image in the index (it has linux/amd64, linux/arm64)" in err
    bad = [[f"{reg.host}/app:bad tag"], [f"{reg.host}/app:2.0", "--platform", "linux"]]
    exits_2_with_no_request(reg, capsys, ["digest", "-c", str(cfg)], bad)


def test_digest_in_a_layout(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry_factory("anon")
    image = app_image(2, 0, fmt="oci")
    cfg, usb = layout_holding(reg, capsys, tmp_path, image)
    rows = run_json(capsys, "digest", "-c", str(cfg), f"oci:{usb}:app:1")
    assert rows[0]["digest"] == image.digest


def test_a_malformed_registry_answer_is_exit_1_and_bad_input_is_exit_2(
    registry_factory: RegistryFactory,
    fault_proxy_factory: FaultProxyFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = registry_factory("anon")
    push(reg.seed_url, "app", app_image(0, 0), "1.0")
    # The registry's tag list names a tag no reference can hold: its fault, not the user's.
    proxy = fault_proxy_factory(reg, extra_listed={"tags": ["-not/a tag"]})
    cfg = settings_for(tmp_path, behind(reg, proxy))
    capsys.readouterr()
    assert main(["tags", "-c", str(cfg), f"{proxy.host}/app"]) == 1
    assert "-not/a tag" in capsys.readouterr().err
    assert main(["delete", "-c", str(cfg), "--dry-run", f"{proxy.host}/app:1.0"]) == 1
    capsys.readouterr()
    # The user's own malformed input stays exit 2, before any request.
    mark = reg.mark()
    for argv in (
        ["digest", f"{proxy.host}/app:1.0", "--platform", "linux/"],
        ["tag", f"{proxy.host}/app:1.0", "bad:tag"],
        ["inspect", f"{proxy.host}/App:1.0"],
        ["catalog", proxy.host, "--filter", "("],
    ):
        assert main([*argv, "-c", str(cfg)]) == 2, argv
        assert capsys.readouterr().err.startswith("syncer: error: "), argv
    assert reg.requests_since(mark) == []
