"""One writer per layout, with real processes: two pods' entrypoints (each pid 1 in its own
PID namespace) on one volume, `syncer tag` against a running copy, N processes racing to take
over a dead writer's lock; and the index merge that is the second line of defence."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from syncer.errors import ConfigError
from syncer.registry import Reference
from syncer.store import OciLayout
from syncer.store import lock as layout_lock
from tests.support.fleet import make_fleet
from tests.support.images import make_image, make_layer
from tests.support.layout_lock import env, holder_text
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

REF_NAME = "org.opencontainers.image.ref.name"
UNSHARE = ["unshare", "-pf", "--mount-proc"]


def _refs(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]}


def _namespaces() -> None:
    """Skip, saying why, where this box cannot give each process its own PID namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed: cannot start a writer in its own PID namespace")
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"unshare -pf --mount-proc not permitted here: {probe.stderr.strip()}")


def _syncer(*args: str) -> list[str]:
    """`syncer ARGS` as PID 1 of a new PID namespace: a pod's ENTRYPOINT."""
    return [*UNSHARE, sys.executable, "-m", "syncer", *args]


def _pod(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `syncer ARGS` as a pod (see `_syncer`) to its end."""
    return subprocess.run(
        _syncer(*args), env=env(), capture_output=True, text=True, timeout=timeout
    )


def _child(pid: int) -> int:
    """The process unshare forked (syncer, pid 1 inside), by its pid out here."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.005)
    raise AssertionError("unshare started no child")


def test_two_pods_on_one_volume_and_syncer_tag_during_a_copy(
    anon_registry: RunningRegistry, tmp_path: Path
) -> None:
    _namespaces()
    fleet = make_fleet(2, 60, prefix="team")  # 60 tags in each repository, a third indexes
    fleet.push(anon_registry.seed_url)
    layout = tmp_path / "shared"
    src = anon_registry.host
    entry = {"source": "a.test/a", "destination": "b.test/b"}  # only `registries:` is read
    settings = write_sync_yaml(tmp_path / "s.yaml", [entry], anon_registry)
    copy = ["copy", "--all-tags", "-q", "-c", str(settings)]
    seed = _pod("copy", "-q", "-c", str(settings), f"{src}/team/app0:1.0", f"oci:{layout}")
    assert seed.returncode == 0, seed.stderr

    first = subprocess.Popen(
        _syncer(*copy, f"{src}/team/app0", f"oci:{layout}"),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        syncer_pid = _child(first.pid)
        deadline = time.monotonic() + 60
        while not holder_text(layout) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        # Hold the first writer still with its lock taken (a slow copy, made certain).
        os.kill(syncer_pid, signal.SIGSTOP)
        assert first.poll() is None, "the first copy ended before it could be paused"

        second = _pod(*copy, f"{src}/team/app1", f"oci:{layout}")
        assert second.returncode == 2, second.stderr
        assert (
            f"syncer: error: {layout}: another syncer is writing this layout (pid 1 on "
            f"{socket.gethostname()} since " in second.stderr
        )
        assert "wait for it to finish and run again, or stop it" in second.stderr
        assert holder_text(layout).startswith(f"pid 1 on {socket.gethostname()} since ")

        tag = _pod("tag", "-c", str(settings), f"oci:{layout}:team/app0:1.0", "stable")
        assert tag.returncode == 2, tag.stderr
        assert f"syncer: error: {layout}: another syncer is writing this layout" in tag.stderr

        # Reading takes no lock: `syncer tags` answers while the writer holds the layout.
        tags = _pod("tags", "-c", str(settings), f"oci:{layout}:team/app0", "--output", "json")
        assert tags.returncode == 0, tags.stderr
        os.kill(syncer_pid, signal.SIGCONT)
        _out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    app0 = {f"team/app0:{t}": i.digest for t, i in fleet.repos["team/app0"].items()}
    assert _refs(layout) == app0, "the first copy's 60 tags, all of them"
    assert holder_text(layout) == ""

    # Once the first is done, the second writer runs, and both repositories' tags are there.
    again = _pod(*copy, f"{src}/team/app1", f"oci:{layout}", timeout=300)
    assert again.returncode == 0, again.stderr
    app1 = {f"team/app1:{t}": i.digest for t, i in fleet.repos["team/app1"].items()}
    assert _refs(layout) == {**app0, **app1}
    assert len(_refs(layout)) == 120


def _race(
    layouts: list[str], start: Barrier, results: multiprocessing.Queue[tuple[int, int]]
) -> None:
    """One racer: at each round's start, try to take that round's layout, and hold what it
    won until every racer has tried, so a second winner can only be a lock that did not
    exclude."""
    for i, layout in enumerate(layouts):
        start.wait()
        try:
            won = layout_lock.acquire(Path(layout))
        except ConfigError:
            results.put((i, 0))
            start.wait()
            continue
        results.put((i, 1))
        start.wait()
        layout_lock.release(won)


def test_racers_taking_over_a_dead_writers_lock_exactly_one_wins(tmp_path: Path) -> None:
    racers, rounds = 3, 1000  # the old lock lost this race about once in 100 rounds
    dead = subprocess.Popen(["true"])
    dead.wait()
    layouts = []
    for i in range(rounds):
        layout = tmp_path / f"l{i}"
        layout.mkdir()
        # A dead writer's lock, as an older syncer left it (its pid, which no longer runs).
        (layout / ".syncer.lock").write_text(f"{dead.pid}\n")
        layouts.append(str(layout))
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(racers)
    results: multiprocessing.Queue[tuple[int, int]] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(layouts, start, results)) for _ in range(racers)]
    for p in procs:
        p.start()
    wins = [0] * rounds
    try:
        for _ in range(racers * rounds):
            i, won = results.get(timeout=120)
            wins[i] += won
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * racers
    wrong = {i: n for i, n in enumerate(wins) if n != 1}
    assert wrong == {}, f"rounds without exactly one winner (round: winners): {wrong}"


async def test_each_write_merges_into_index_json_as_it_is_now(tmp_path: Path) -> None:
    """Two writers the lock did not keep apart (as on an NFS mount without locking): each
    write re-reads index.json and changes only its own entry, so none is lost, and each
    writer's own reads (tags, digests its repositories reach) include the other's."""
    layout = tmp_path / "l"
    one, two = Reference.parse("x.test/one"), Reference.parse("x.test/two")
    first = OciLayout(layout, writable=True)
    second = OciLayout(layout, writable=True)  # same process: the lock is shared, not taken
    images = [make_image([make_layer({"f": bytes([n])})], fmt="oci") for n in range(3)]
    for image in images:
        for blob in image.blobs():
            path = first.blob_path(blob.digest)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob.data)

    async def put(store: OciLayout, repo: Reference, tag: str, n: int) -> None:
        await store.put_manifest(repo, tag, images[n].manifest, images[n].media_type)

    await put(first, one, "a", 0)
    assert await first.list_tags(one) == ["a"]
    await put(second, two, "b", 1)
    await put(first, one, "c", 2)
    assert _refs(layout) == {
        "one:a": images[0].digest,
        "two:b": images[1].digest,
        "one:c": images[2].digest,
    }
    assert await first.catalog(one) == ["one", "two"]
    info = await first.head_manifest(two.with_digest(images[1].digest))
    assert info is not None and info.digest == images[1].digest
    await second.delete_manifest(one, images[0].digest)
    await put(first, two, "d", 0)
    assert _refs(layout) == {
        "two:b": images[1].digest,
        "one:c": images[2].digest,
        "two:d": images[0].digest,
    }
    assert await first.head_manifest(one.with_digest(images[0].digest)) is None
    await first.aclose()
    await second.aclose()
