"""Shared by the one-off command tests (copy, tag, delete, digest): a sync.yaml that only
carries registry settings, and request tallies from the access logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncer.cli import main
from tests.support.images import Image, push
from tests.support.registry import LoggedRequest, RunningRegistry
from tests.support.syncer_setup import registry_settings

VARIANTS = ["anon", "basic", "token", "tls"]
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


def settings_for(tmp_path: Path, *regs: RunningRegistry) -> Path:
    """A sync.yaml of registry settings alone (credentials, CA, fast retries) for `regs`,
    with no `sync:`: all a one-off command needs, and no warning for its absence."""
    doc = {"version": 1, "registries": {r.host: registry_settings(r) for r in regs}}
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def served(reg: RunningRegistry, mark: int) -> list[LoggedRequest]:
    """Requests the registry served since `mark`, without the 401 challenges that an
    authenticated registry answers before the client shows its credentials."""
    return [r for r in reg.requests_since(mark) if r.status != 401]


def kinds(requests: list[LoggedRequest]) -> list[str]:
    out = []
    for r in requests:
        what = "blob" if "/blobs/" in r.path else "manifest" if "/manifests/" in r.path else r.path
        out.append(f"{r.method} {what}")
    return sorted(out)


def run_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    capsys.readouterr()
    assert main([*args, "--output", "json"]) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def exits_2_with_no_request(
    reg: RunningRegistry,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    bad_arguments: list[list[str]],
) -> None:
    """Each bad argument list is exit 2 with one `syncer: error:` line, and `reg` logs
    not one request for any of them."""
    mark = reg.mark()
    for bad in bad_arguments:
        assert main([*command, *bad]) == 2, bad
        assert capsys.readouterr().err.startswith("syncer: error: ")
    assert reg.requests_since(mark) == []


def layout_holding(
    reg: RunningRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path, *images: Image
) -> tuple[Path, Path]:
    """(settings file, layout folder) with `images` tagged app:1, app:2... at `reg` and,
    copied there by `syncer copy --all-tags`, in the layout."""
    for i, image in enumerate(images, 1):
        push(reg.seed_url, "app", image, str(i))
    cfg = settings_for(tmp_path, reg)
    usb = tmp_path / "usb"
    run_json(capsys, "copy", "-c", str(cfg), "--all-tags", f"{reg.host}/app", f"oci:{usb}")
    return cfg, usb
