"""A layout on a read-only mount, on a full disk, or with a broken `index.json`: one error
line naming the path and the cause, exit 1, no traceback, `index.json` unchanged and no
temporary file left. Real mounts (a read-only bind mount, a 1 MiB tmpfs) in a private
mount namespace (`unshare -m`), so they vanish with the process."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.errors import DiskError
from syncer.registry import Descriptor, Reference
from syncer.store import OciLayout, atomic
from syncer.store.atomic import atomic_write, replacing
from tests.support.images import Image, make_image, make_layer, push, random_layer
from tests.support.registry import RegistryFactory
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[2]
APP = Reference("oci:x", "app")
ROFS = "Read-only file system; remount it read-write, or write somewhere else"
FULL = "No space left on device; free some space there and run again"


def _mounts_or_skip(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a read-only bind mount and a small tmpfs (unshare -m)")
    probe = tmp_path / "probe"
    probe.mkdir()
    got = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(probe)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount in a private mount namespace here: {got.stderr.strip()}")


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-euc", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _syncer(*args: object) -> str:
    return shlex.join([sys.executable, "-m", "syncer", *map(str, args)])


def _image(seed: int, size: int = 0) -> Image:
    layer = random_layer(size, seed) if size else make_layer({"a.txt": b"hello %d" % seed})
    return make_image([layer], fmt="oci")


def _layout(path: Path, images: dict[str, Image]) -> Path:
    async def write() -> None:
        layout = OciLayout(path, writable=True)
        for tag, image in images.items():
            for blob in image.blobs():
                desc = Descriptor(mediaType=blob.media_type, digest=blob.digest, size=blob.size)

                async def chunks(data: bytes = blob.data) -> AsyncIterator[bytes]:
                    yield data

                await layout.upload_blob(APP, desc, chunks)
            await layout.put_manifest(APP, tag, image.manifest, image.media_type)
        await layout.aclose()

    asyncio.run(write())
    return path


def _assert_unlocked(layout: Path) -> None:
    lock_file = layout / ".syncer.lock"
    if not lock_file.exists():
        return
    assert lock_file.read_bytes() == b""
    with lock_file.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held


def _temp_files(path: Path) -> list[Path]:
    return sorted(path.rglob(f"{atomic.TEMP_PREFIX}*"))


def _config(tmp_path: Path) -> Path:
    """Registry settings alone: all a one-off command on layouts reads."""
    cfg = tmp_path / "sync.yaml"
    cfg.write_text(json.dumps({"version": 1, "registries": {}}))
    return cfg


def _read_only_commands(tmp_path: Path, layout: Path, source: Path) -> dict[str, list[object]]:
    sync_cfg = tmp_path / "sync-ro.yaml"
    entries = [  # the writable layout, opened first, is released when the second fails
        {"source": f"oci:{source}:app", "destination": f"oci:{tmp_path / 'W'}:mirror"},
        {"source": f"oci:{source}:app", "destination": f"oci:{layout}:mirror"},
    ]
    sync_cfg.write_text(json.dumps({"version": 1, "sync": entries}))
    cfg = _config(tmp_path)
    return {
        "tag": ["tag", f"oci:{layout}:app:1", "stable", "-c", cfg],
        "delete": ["delete", "--force", f"oci:{layout}:app:1", "-c", cfg],
        "copy": ["copy", "-q", f"oci:{source}:app:1", f"oci:{layout}:app:2", "-c", cfg],
        "sync": ["sync", "-q", "-c", sync_cfg],
    }


@pytest.mark.parametrize("command", ["tag", "delete", "copy", "sync"])
def test_a_layout_on_a_read_only_mount_is_one_error_line(tmp_path: Path, command: str) -> None:
    _mounts_or_skip(tmp_path)
    layout = _layout(tmp_path / "L", {"1": _image(1)})
    source = _layout(tmp_path / "S", {"1": _image(2)})
    before = (layout / "index.json").read_bytes()
    args = _read_only_commands(tmp_path, layout, source)[command]
    got = _in_namespace(
        f"mount --bind {layout} {layout}; mount -o remount,bind,ro {layout}; {_syncer(*args)}"
    )
    assert got.returncode == 1, got.stderr
    assert "Traceback" not in got.stderr
    assert got.stderr.splitlines() == [f"syncer: error: {layout}: {ROFS}"]
    assert (layout / "index.json").read_bytes() == before
    assert _temp_files(layout) == []
    # The lock file stays (never unlinked); what matters is that no lock outlived the run:
    # the writable layout opened first was released, and says so (an empty lock file).
    for folder in (layout, tmp_path / "W"):
        _assert_unlocked(folder)


def _fill(mnt: Path, free: int) -> str:
    """A command that fills the file system at `mnt` (a file `filler`) to `free` bytes."""
    code = (
        "import os, sys; st = os.statvfs(sys.argv[1]); n = st.f_bavail * st.f_frsize; "
        "open(sys.argv[1] + '/filler', 'wb').write(bytes(n - int(sys.argv[2])))"
    )
    return shlex.join([sys.executable, "-c", code, str(mnt), str(free)])


def _on_full_tmpfs(tmp_path: Path, layout: Path, free: int, *commands: list[object]) -> Path:
    """Run `commands` on a copy of `layout` on a 1 MiB tmpfs with `free` bytes left; the
    layout afterwards is copied to the returned folder, with each command's exit code and
    stderr beside it."""
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    runs = "".join(
        f"{_syncer(*c)} 2>{out}/stderr{i} && echo 0 >{out}/rc{i} || echo $? >{out}/rc{i}\n"
        for i, c in enumerate(commands)
    )
    got = _in_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {mnt}\n"
        f"cp -a {layout} {mnt}/L\n"
        f"{_fill(mnt, free)}\n"
        f"{runs}rm {mnt}/filler\ncp -a {mnt}/L {out}/L\n"
    )
    assert got.returncode == 0, got.stderr
    return out


def test_tag_on_a_full_disk_is_one_error_line(tmp_path: Path) -> None:
    _mounts_or_skip(tmp_path)
    # 60 tags: an index.json of several pages, so one free page cannot hold its new copy.
    layout = _layout(tmp_path / "L", {f"t{i}": _image(1) for i in range(60)})
    before = (layout / "index.json").read_bytes()
    assert len(before) > 3 * 4096
    mounted = tmp_path / "mnt" / "L"
    out = _on_full_tmpfs(tmp_path, layout, 4096, ["tag", f"oci:{mounted}:app:t1", "new"])
    assert (out / "rc0").read_text() == "1\n"
    assert (out / "stderr0").read_text() == f"syncer: error: {mounted}/index.json: {FULL}\n"
    assert (out / "L" / "index.json").read_bytes() == before
    assert _temp_files(out / "L") == []


def test_copy_and_sync_on_a_full_disk_fail_the_tag_and_stop_writing(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    """A layer that does not fit fails its tag with the path and the cause; the run then
    writes no more to that layout: each later tag is `not tried`, and its source is not
    read (not one GET: no pull spent on a copy that cannot land)."""
    _mounts_or_skip(tmp_path)
    big = {"1": _image(2, 300_000), "2": _image(3, 300_000)}
    layout = _layout(tmp_path / "L", {"1": _image(1)})
    source = _layout(tmp_path / "S", big)
    reg = registry_factory("anon")
    for tag, image in big.items():
        push(reg.seed_url, "app", image, tag)
    before = (layout / "index.json").read_bytes()
    mounted = tmp_path / "mnt" / "L"
    entry = {"source": f"{reg.host}/app", "destination": f"oci:{mounted}:big"}
    sync_cfg = write_sync_yaml(tmp_path / "sync-full.yaml", [entry], reg)
    copy = ["copy", "-q", f"oci:{source}:app:1", f"oci:{mounted}:big:1", "-c", _config(tmp_path)]
    sync = ["sync", "-q", "--concurrency", "1", "-c", sync_cfg]
    mark = reg.mark()
    out = _on_full_tmpfs(tmp_path, layout, 64 * 1024, copy, sync)
    gets = {r.path.rpartition("/")[2] for r in reg.requests_since(mark) if r.method == "GET"}

    def lines(i: int) -> list[str]:
        err = (out / f"stderr{i}").read_text()
        assert "Traceback" not in err and "internal error" not in err, err
        return [line for line in err.splitlines() if line.startswith("syncer: ")]

    def layer(tag: str) -> str:
        return f"{mounted}/blobs/sha256/{big[tag].layers[0].digest.removeprefix('sha256:')}"

    assert (out / "rc0").read_text() == "1\n"
    assert lines(0) == [
        f"syncer: oci:{source}:app:1 -> oci:{mounted}:big:1 tag 1: {layer('1')}: {FULL}"
    ]
    assert (out / "rc1").read_text() == "1\n"
    failed, skipped = sorted(lines(1), key=lambda line: "not tried" in line)
    first = "1" if f" tag 1: {layer('1')}" in failed else "2"
    then = "2" if first == "1" else "1"
    prefix = f"syncer: {reg.host}/app -> oci:{mounted}:big tag "
    assert failed == f"{prefix}{first}: {layer(first)}: {FULL}"
    assert skipped == f"{prefix}{then}: not tried, as a write failed: {layer(first)}: {FULL}"
    assert {big[first].digest, big[first].layers[0].digest} <= gets
    assert not {big[then].digest, big[then].config.digest, big[then].layers[0].digest} & gets
    assert (out / "L" / "index.json").read_bytes() == before
    assert _temp_files(out / "L") == []
    for image in big.values():
        assert not (out / "L" / "blobs" / "sha256" / image.layers[0].digest[7:]).exists()


def test_a_bundle_onto_a_full_or_read_only_disk_is_one_error_line(tmp_path: Path) -> None:
    _mounts_or_skip(tmp_path)
    layout = _layout(tmp_path / "L", {"1": _image(1, 300_000)})
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    got = _in_namespace(
        f"mount --bind {ro} {ro}; mount -o remount,bind,ro {ro}\n"
        f"mount -t tmpfs -o size=1m tmpfs {full}; {_fill(full, 65536)}\n"
        f"{_syncer('bundle', '-q', layout, '-o', ro / 'b.tar')} || echo rc=$?\n"
        f"{_syncer('bundle', '-q', layout, '-o', full / 'b.tar')} || echo rc=$?\n"
        f"ls -A {full}\n"
    )
    assert got.stdout == "rc=1\nrc=1\nfiller\n", got.stderr
    assert got.stderr.splitlines() == [
        f"syncer: error: {ro / 'b.tar'}: {ROFS}; no bundle written",
        f"syncer: error: {full / 'b.tar'}: {FULL}; no bundle written",
    ]


def test_a_layout_without_index_json_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = _layout(tmp_path / "L", {"1": _image(1)})
    (layout / "index.json").unlink()
    cfg = str(_config(tmp_path))
    assert main(["tags", f"oci:{layout}:app", "-c", cfg]) == 1
    err = capsys.readouterr().err
    assert err == f"syncer: error: {layout}/index.json: missing; the layout is incomplete\n"


def test_an_index_json_that_is_a_directory_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = _layout(tmp_path / "L", {"1": _image(1)})
    (layout / "index.json").unlink()
    (layout / "index.json").mkdir()
    cfg = str(_config(tmp_path))
    assert main(["inspect", f"oci:{layout}:app:1", "-c", cfg]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"syncer: error: {layout}/index.json: is a directory, not a regular file; a layout's "
        "files must be regular files (or symlinks to them): put the layout's real file there\n"
    )


def test_replacing_leaves_no_temp_file_whatever_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    with pytest.raises(KeyError), replacing(target) as f:  # the caller's own failure
        f.write(b"new" * 100_000)
        raise KeyError("as it was")
    assert target.read_bytes() == b"old" and _temp_files(tmp_path) == []

    def broken(path: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(atomic, "fsync_dir", broken)
    with pytest.raises(DiskError) as caught:
        atomic_write(target, b"new")
    assert str(caught.value) == f"{tmp_path}: Input/output error"
    assert target.read_bytes() == b"new" and _temp_files(tmp_path) == []
