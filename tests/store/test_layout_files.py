"""A layout whose files are not regular files: a FIFO (which would block a read forever) or a
symlink to /dev/zero (which would never end one), as index.json, oci-layout or a blob. Each
command exits within seconds with an error naming the file, in bounded memory."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncer.registry import Descriptor, Reference
from syncer.store import OciLayout
from tests.support.images import Image, make_image, make_layer
from tests.support.layout_lock import env

TIMEOUT = 20  # seconds; each run takes about one
MAX_RSS = 200 * 1024  # KiB: a run's peak; an unbounded read of /dev/zero goes far past
ADDRESS_SPACE = 2 * 1024**3  # the ceiling each run gets, so a regression cannot eat the box


@dataclass
class Run:
    returncode: int
    stderr: str
    seconds: float
    max_rss_kib: int


def _run(args: list[str], cwd: Path) -> Run:
    """`syncer ARGS` in a real process, killed after TIMEOUT; its own peak memory."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    err = cwd / "stderr.txt"
    start = time.monotonic()
    with err.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", *args],
            cwd=cwd,
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=f,
            preexec_fn=limit,
        )
    peak = 0
    while True:
        peak = max(peak, _high_water_kib(proc.pid))
        pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > TIMEOUT:
            proc.kill()
            _pid, status, _usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Run(proc.returncode, err.read_text(), time.monotonic() - start, peak)


def _high_water_kib(pid: int) -> int:
    """The process's peak RSS since its exec. Not wait4's ru_maxrss: that also counts the
    pages of this (large, late in a suite) test process that the fork shared before exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie has no memory lines


async def _write(layout: Path) -> Image:
    image = make_image([make_layer({"a.txt": b"hello" * 1000})], fmt="oci")
    store = OciLayout(layout, writable=True)
    repo = Reference.parse("x.test/app")
    for blob in image.blobs():

        async def data(b: bytes = blob.data) -> AsyncIterator[bytes]:
            yield b

        desc = Descriptor(mediaType=blob.media_type, digest=blob.digest, size=blob.size)
        await store.upload_blob(repo, desc, lambda d=data: d())  # type: ignore[misc]
    await store.put_manifest(repo, "1", image.manifest, image.media_type)
    await store.aclose()
    return image


def _break(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


KINDS = {"fifo": "a FIFO", "devzero": "a character device"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Image]:
    layout = tmp_path_factory.mktemp("pristine") / "l"
    return layout, asyncio.run(_write(layout))


def _commands(layout: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "tags": ["tags", f"oci:{layout}:app"],
        "bundle": ["bundle", str(layout), "-o", str(tmp / "out.tar"), "-q"],
        "copy": ["copy", "-q", f"oci:{layout}:app:1", f"oci:{tmp / 'dest'}:app:1"],
    }


def _dest_tags(tmp: Path) -> list[object]:
    index = tmp / "dest" / "index.json"
    return json.loads(index.read_text())["manifests"] if index.exists() else []


def _check(run: Run, code: int, message: str) -> None:
    assert run.seconds < TIMEOUT, f"killed after {TIMEOUT} s: {run.stderr[-500:]}"
    assert run.returncode == code, run.stderr
    assert message in run.stderr
    assert "internal error" not in run.stderr
    assert run.max_rss_kib < MAX_RSS, f"peak {run.max_rss_kib} KiB"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", ["index.json", "oci-layout"])
def test_metadata_that_is_not_a_regular_file_is_a_clear_error(
    pristine: tuple[Path, Image], tmp_path: Path, name: str, kind: str
) -> None:
    layout = tmp_path / "l"
    shutil.copytree(pristine[0], layout, symlinks=True)
    _break(layout / name, kind)
    message = f"{layout}/{name}: is {KINDS[kind]}, not a regular file"
    # A broken oci-layout is a layout that cannot be opened (exit 2, as no oci-layout is);
    # a broken index.json is a layout whose content fails (exit 1, as index.json not JSON).
    code = 2 if name == "oci-layout" else 1
    for command, args in _commands(layout, tmp_path).items():
        run = _run(args, tmp_path)
        # copy names the entry first, as for any failed entry
        _check(run, code, message if command == "copy" else f"syncer: error: {message}")
        if command == "bundle":
            assert not (tmp_path / "out.tar").exists()
    assert _dest_tags(tmp_path) == [], "nothing copied"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("which", ["layer", "manifest"])
def test_a_blob_that_is_not_a_regular_file_fails_naming_it(
    pristine: tuple[Path, Image], tmp_path: Path, which: str, kind: str
) -> None:
    layout = tmp_path / "l"
    shutil.copytree(pristine[0], layout, symlinks=True)
    image = pristine[1]
    digest = image.blobs()[1].digest if which == "layer" else image.digest
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    _break(path, kind)
    commands = _commands(layout, tmp_path)
    if which == "manifest":  # `tags` reads each manifest for its platforms
        _check(_run(commands["tags"], tmp_path), 1, f"syncer: error: {path}: is {KINDS[kind]}")
    bundle = _run(commands["bundle"], tmp_path)
    _check(bundle, 1, f"{'blob' if which == 'layer' else 'manifest'} {digest} in {layout}: missing")
    assert not (tmp_path / "out.tar").exists()
    _check(_run(commands["copy"], tmp_path), 1, f"{path}: is {KINDS[kind]}, not a regular file")
    assert _dest_tags(tmp_path) == [], "nothing copied"
