"""kill -9 of a real `syncer sync` writing a layout, at several moments: every ref left
in index.json points at complete content, and the next run finishes the job."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml

REF_NAME = "org.opencontainers.image.ref.name"
ROOT = Path(__file__).resolve().parents[2]


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"{digest} is incomplete"
    return data


def _complete(layout: Path, digest: str) -> None:
    """`digest`'s manifest, and everything it references, are in place and intact."""
    manifest = json.loads(_blob(layout, digest))
    for child in manifest.get("manifests", []):
        _complete(layout, child["digest"])
    for desc in [manifest.get("config"), *manifest.get("layers", [])]:
        if desc:
            assert len(_blob(layout, desc["digest"])) == desc["size"]


def _refs(layout: Path) -> dict[str, str]:
    if not (layout / "index.json").exists():
        return {}
    index = json.loads((layout / "index.json").read_text())
    return {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]}


def test_kill_9_at_any_moment_leaves_complete_refs(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src = registry_factory("anon")
    want = {}
    for t in range(24):
        image = app_image(t % 4, t, app_size=400_000)
        push(src.seed_url, f"app{t % 4}", image, f"v{t}")
        want[f"app{t % 4}:v{t}"] = image.digest
    layout = tmp_path / "bundle"
    cfg = write_sync_yaml(
        tmp_path / "s.yaml", [{"source": f"{src.host}/*", "destination": f"oci:{layout}"}], src
    )
    cmd = [sys.executable, "-m", "syncer", "sync", "-c", str(cfg), "-q", "--concurrency", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = 0
    lock = layout / ".syncer.lock"
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill once this process holds the layout (startup takes a while on a loaded box).
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if lock.exists() and lock.read_text().startswith(f"pid {proc.pid} on "):
                break
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        refs = _refs(layout)
        for name, digest in refs.items():
            assert want[name] == digest
            _complete(layout, digest)
        if len(refs) == len(want):
            break
    assert kills >= 1, "the run finished before any kill; the fleet is too small"
    # The next run takes over the dead writer's lock and finishes.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _refs(layout) == want
    for digest in want.values():
        _complete(layout, digest)
    assert not list(layout.rglob(".tmp-*"))
    assert (layout / ".syncer.lock").read_text() == "", "released"
