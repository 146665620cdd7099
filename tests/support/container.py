"""Build the project's image with scripts/build-image and run commands inside it with buildah.

No container runtime can start here (crun and runc cannot set rlimits or cgroups in this
sandbox), but buildah's chroot isolation can: `buildah run --isolation chroot` runs a process
in the container's root file system with the host's (loopback) network. What a kubelet adds
is done by hand in `Container`: the volume mounts, the user, and a read-only root, which is
the container's own overlay mount remounted read-only once the mount points exist (as a
runtime creates them in the writable layer before the process starts).

Everything lives in a storage of its own (`STORE`), never the user's: images, containers and
the stand-in base, which survives between sessions so a warm run skips mmdebstrap and import.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syncer-test-image"
TOOLS = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "podman": "podman"}
_RUNTIME_NAMES = ("buildah", "memfd:buildah")  # buildah's own processes around the command


def require_tools() -> None:
    missing = [pkg for prog, pkg in TOOLS.items() if shutil.which(prog) is None]
    if missing:
        pytest.skip(
            f"image tests need {', '.join(missing)} "
            f"(apt-get install --no-install-recommends buildah mmdebstrap podman uidmap; "
            f"SYNCER_LARGE_TOOLS=1 scripts/setup does it)"
        )
    if os.geteuid() != 0:
        pytest.skip("image tests need root: buildah's chroot isolation and mounts")


def engine_env() -> dict[str, str]:
    """buildah and podman on the test storage, with the settings that work in this sandbox."""
    STORE.mkdir(parents=True, exist_ok=True)
    storage = STORE / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{STORE / "graph"}"\n'
        f'runroot = "{STORE / "run"}"\n',
        encoding="utf-8",
    )
    # podman otherwise sets rlimits that this sandbox refuses (pull, load and import work).
    conf = STORE / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n", encoding="utf-8")
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_CONF": str(conf),
        "BUILDAH_ISOLATION": "chroot",
        "SYNCER_BASE_CACHE": str(STORE / "base"),
    }


def engine(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True)
class BuiltImage:
    name: str
    image_id: str
    base: str  # the PYTHON_IMAGE it was built on
    config: dict[str, Any]  # the OCI image config (Env, User, Entrypoint, Labels, ...)
    size: int  # bytes, uncompressed layers, as podman reports it
    base_size: int
    build_seconds: float
    log: str
    env: dict[str, str] = field(repr=False)

    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})


def build_image(name: str) -> BuiltImage:
    """scripts/build-image --local-base: the stand-in base and the project's Dockerfile."""
    env = engine_env()
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-image"), "--local-base", "--tag", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    seconds = time.monotonic() - started
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    info = json.loads(engine("buildah", "inspect", "--type", "image", name, env=env))
    config = info["OCIv1"]["config"]
    base = next(a.split("=", 1)[1] for a in log.split() if a.startswith("PYTHON_IMAGE="))

    def size(image: str) -> int:
        return int(engine("podman", "image", "inspect", "--format", "{{.Size}}", image, env=env))

    return BuiltImage(
        name=name,
        image_id=info["FromImageID"],
        base=base,
        config=config,
        size=size(name),
        base_size=size(base),
        build_seconds=seconds,
        log=log,
        env=env,
    )


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool


class Container:
    """A working container of `image`: mounts prepared, root optionally read-only."""

    def __init__(self, image: BuiltImage, mounts: Sequence[Mount], *, read_only_root: bool):
        self.image = image
        self.env = image.env
        self.mounts = list(mounts)
        self.name = engine("buildah", "from", "--pull-never", image.name, env=self.env).strip()
        self.root = Path(engine("buildah", "mount", self.name, env=self.env).strip())
        # The mount points, as a runtime creates them before the process starts: the
        # volumes' targets and the files buildah itself binds (hosts, resolv.conf, ...).
        for m in self.mounts:
            target = self.root / m.target.lstrip("/")
            if m.source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        self.run(["true"], user="0:0")
        self.read_only_root = read_only_root
        self.run_dir: Path | None = None
        if read_only_root:
            subprocess.run(["mount", "-o", "remount,ro", str(self.root)], check=True)
            # buildah creates /run/.containerenv for every run and removes it afterwards; on a
            # read-only /run that removal fails and buildah exits 2 whatever the command did.
            # So /run (buildah's, no volume of the manifest) stays writable: a folder of ours.
            self.run_dir = Path(tempfile.mkdtemp(prefix="syncer-ctr-run-"))
            subprocess.run(
                ["mount", "--bind", str(self.run_dir), str(self.root / "run")], check=True
            )

    def argv(self, command: Sequence[str], user: str, env: dict[str, str]) -> list[str]:
        argv = ["buildah", "run", "--isolation", "chroot", "--user", user]
        for m in self.mounts:
            argv += ["--volume", f"{m.source}:{m.target}{':ro' if m.read_only else ''}"]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.name, "--", *command]

    def run(
        self,
        command: Sequence[str],
        *,
        user: str = "65532:65532",
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, user, env or {}),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def popen(
        self, command: Sequence[str], *, user: str, env: dict[str, str], log: Path
    ) -> Iterator[Process]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.argv(command, user, env), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        running = Process(proc, log)
        try:
            yield running
        finally:
            if proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    running.signal(signal.SIGKILL)
                proc.kill()
            proc.wait(timeout=30)

    def remove(self) -> None:
        if self.run_dir is not None:
            subprocess.run(["umount", str(self.root / "run")], check=False)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.read_only_root:
            subprocess.run(["mount", "-o", "remount,rw", str(self.root)], check=False)
        subprocess.run(["buildah", "rm", self.name], env=self.env, capture_output=True)


@dataclass
class Process:
    """A command running inside a container; `signal` reaches the command itself, as the
    kubelet's signal reaches the container's PID 1 (buildah run does not forward any)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def command_pid(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in descendants(self.proc.pid):
                with contextlib.suppress(OSError):
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    if not comm.startswith(_RUNTIME_NAMES):
                        return pid
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no command under buildah run {self.proc.pid}:\n{self.output()}")

    def signal(self, sig: int) -> None:
        os.kill(self.command_pid(), sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")
