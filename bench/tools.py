"""Run syncer and skopeo the way a user would, each under `/usr/bin/time -v`.

Each tool gets its own config for the same job (the same source repositories, every tag,
every platform), and both land in the same destination names: skopeo's `sync` without
`--scoped` writes `<dest-prefix>/<last path component of the source repo>`, so syncer's
entries are written to those names too, and one verification covers both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tests.support.registry import RunningRegistry

Tool = Literal["syncer", "skopeo"]
TOOLS: tuple[Tool, ...] = ("syncer", "skopeo")
TIME = "/usr/bin/time"
_RSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
_CPU_RE = re.compile(r"(?:User|System) time \(seconds\): ([\d.]+)")


@dataclass(frozen=True)
class Job:
    src: RunningRegistry
    dst: RunningRegistry
    repos: list[str]  # source repositories; every tag of each is mirrored
    prefix: str = "mirror"

    def dest_repo(self, repo: str) -> str:
        return f"{self.prefix}/{repo.rsplit('/', 1)[-1]}"


@dataclass
class ToolRun:
    tool: Tool
    wall_s: float
    cpu_s: float  # user + system, from /usr/bin/time
    rss_kib: int
    returncode: int
    timed_out: bool = False
    report: dict[str, Any] | None = None  # syncer's --report
    output_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def syncer_config(job: Job) -> dict[str, Any]:
    return {
        "version": 1,
        "registries": {job.src.host: {"tls": "disabled"}, job.dst.host: {"tls": "disabled"}},
        "sync": [
            {
                "source": f"{job.src.host}/{repo}",
                "destination": f"{job.dst.host}/{job.dest_repo(repo)}",
            }
            for repo in job.repos
        ],
    }


def skopeo_config(job: Job) -> dict[str, Any]:
    # images-by-tag-regex ".*" is skopeo's "every tag of this repo": like syncer's entries it
    # lists the tags at run time instead of trusting a list written beforehand.
    return {
        job.src.host: {
            "tls-verify": False,
            "images-by-tag-regex": {repo: ".*" for repo in job.repos},
        }
    }


def clear_skopeo_cache() -> list[Path]:
    """Remove containers/image's blob-info cache (it remembers where blobs were seen).

    As root it lives in /var/lib/containers/cache, otherwise in
    $XDG_DATA_HOME (default ~/.local/share)/containers/cache; both are cleared."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    removed = []
    for d in (Path("/var/lib/containers/cache"), data_home / "containers/cache"):
        for f in d.glob("blob-info-cache-v1.*"):
            f.unlink()
            removed.append(f)
    return removed


def _env() -> dict[str, str]:
    # No SYNCER_* overrides from the caller's shell, and no proxy for loopback traffic.
    drop = ("SYNCER_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def syncer_binary() -> str:
    # The venv's console script, next to the interpreter running the bench.
    return str(Path(sys.executable).parent / "syncer")


def run_tool(
    tool: Tool,
    job: Job,
    workdir: Path,
    label: str,
    timeout: float,
    *,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ToolRun:
    """Run one tool for `job`. `prefix` wraps the command (a profiler), `env` adds variables."""
    workdir.mkdir(parents=True, exist_ok=True)
    report_path = workdir / f"{label}-{tool}-report.json"
    if tool == "syncer":
        cfg = workdir / f"{label}-sync.yaml"
        cfg.write_text(yaml.safe_dump(syncer_config(job), sort_keys=False))
        report_path.unlink(missing_ok=True)
        cmd = [syncer_binary(), "sync", "-c", str(cfg), "--report", str(report_path)]
        cmd += ["--log-format", "json", "-q"]
    else:
        cfg = workdir / f"{label}-skopeo.yaml"
        cfg.write_text(yaml.safe_dump(skopeo_config(job), sort_keys=False))
        cmd = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all"]
        cmd += ["--preserve-digests", "--dest-tls-verify=false", str(cfg)]
        cmd += [f"{job.dst.host}/{job.prefix}"]
    return measure_command(
        tool, [*prefix, *cmd], workdir / f"{label}-{tool}", timeout, report_path, env or {}
    )


def measure_command(
    tool: Tool, cmd: list[str], stem: Path, timeout: float, report: Path, env: dict[str, str]
) -> ToolRun:
    time_file = stem.with_suffix(".time")
    out_file = stem.with_suffix(".out")
    timed_out = False
    with out_file.open("wb") as out:
        start = time.perf_counter()
        # Own session: on a timeout (or our Ctrl-C) the whole group, tool included, is ended.
        proc = subprocess.Popen(
            [TIME, "-v", "-o", str(time_file), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**_env(), **env},
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        wall = time.perf_counter() - start
    text = time_file.read_text(errors="replace") if time_file.exists() else ""
    m = _RSS_RE.search(text)
    parsed: dict[str, Any] | None = None
    if tool == "syncer" and report.exists():
        parsed = json.loads(report.read_text())
    return ToolRun(
        tool=tool,
        wall_s=wall,
        cpu_s=sum(float(x) for x in _CPU_RE.findall(text)),
        rss_kib=int(m[1]) if m else 0,
        returncode=proc.returncode if not timed_out else -9,
        timed_out=timed_out,
        report=parsed,
        output_tail=out_file.read_text(errors="replace")[-3000:],
    )
