"""The demo's air-gapped leg: the mirror exported to a layout, bundled into one tar, and
imported from that tar into a registry that never saw the mirror; then next month's delta.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.images import fetch_manifest_digest, make_image, make_layer, push
from tests.support.registry import RunningRegistry, start_registry

REPOS = ["mirror/alpine", "mirror/nginx", "mirror/acme-api"]


def _run(*args: str) -> str:
    cmd = [sys.executable, "-m", "syncer.cli", *args]
    print(f"\n$ syncer {' '.join(args)}", flush=True)
    done = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"syncer {args[0]} exited {done.returncode}")
    return done.stdout


def _digests(reg: RunningRegistry, prefix: str = "") -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    with httpx.Client(trust_env=False, timeout=30) as client:
        for repo in REPOS:
            resp = client.get(f"{reg.url}/v2/{prefix}{repo}/tags/list")
            for tag in sorted((resp.json().get("tags") or []) if resp.status_code == 200 else []):
                out[f"{repo}:{tag}"] = fetch_manifest_digest(
                    reg.url, f"{prefix}{repo}", tag, client=client
                )
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    print(f"\n--- {path}\n{text}---")
    return path


def leg(work: Path, mirror: RunningRegistry, stops: list[Callable[[], None]]) -> int:
    """Connected side: mirror -> layout -> bundle. Far side: bundle -> a new registry."""
    far = start_registry(work, "anon")
    stops.append(far.stop)
    usb = work / "usb"
    usb.mkdir()
    print(f"\n=== air-gapped leg: {mirror.url} -> {usb} -> far registry {far.url}")
    export = _write(
        work / "export.yaml",
        f"version: 1\nregistries:\n  {mirror.host}: {{tls: disabled}}\nsync:\n"
        f"  - source: {mirror.host}/mirror/*\n    destination: oci:{usb}/layout\n",
    )
    imported = _write(
        work / "import.yaml",
        f"version: 1\nregistries:\n  {far.host}: {{tls: disabled}}\nsync:\n"
        f"  - source: oci-archive:{usb}/full.tar\n    destination: {far.host}/far\n",
    )
    quiet = ("--log-format", "console", "-q")
    _run("sync", "-c", str(export), *quiet)
    _run("bundle", f"{usb}/layout", "-o", f"{usb}/full.tar")
    _run("sync", "-c", str(imported), *quiet)
    same = _digests(mirror) == _digests(far, "far/")
    print(
        f"far side after the full bundle: {len(_digests(far, 'far/'))} tags, digests equal: {same}"
    )

    # Next month: one new tag at the mirror; the delta carries only its new blobs.
    base = make_layer({"etc/os-release": b"ID=demo\n"})
    new = make_image([base, make_layer({"app/api": b"v1.2.0\n" * 4096})], fmt="oci")
    push(mirror.seed_url, "mirror/acme-api", new, "v1.2.0")
    _run("sync", "-c", str(export), *quiet)
    delta = json.loads(
        _run(
            "bundle",
            f"{usb}/layout",
            "-o",
            f"{usb}/delta.tar",
            "--since",
            f"{usb}/full.tar",
            "--output",
            "json",
        )
    )
    imported.write_text(imported.read_text().replace("full.tar", "delta.tar"))
    _run("sync", "-c", str(imported), *quiet)
    same_after = _digests(mirror) == _digests(far, "far/")
    full_size = (usb / "full.tar").stat().st_size
    print(
        f"delta: {delta['tar_bytes']} bytes (full bundle {full_size}), "
        f"{delta['blobs']} new blobs, {delta['left_out']} left out; digests equal: {same_after}"
    )
    return 0 if same and same_after else 1
