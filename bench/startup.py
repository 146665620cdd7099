"""Start-up, and the fleet's full and no-op syncs, syncer and `skopeo sync` side by side.

    .venv/bin/python -m bench.startup [--runs 3] [--version-runs 11] [--json PATH]

A CronJob pays syncer's start-up on every run (issue 30 §2), and in a no-op run start-up is
most of the time. This prints `syncer --version` (median of N: the interpreter and what
the command line imports before it can answer) and, for each run, the 96-tag fleet's full
sync into a fresh destination and the no-op after it, for both tools back to back (who goes
first alternates), with each run's ratio and both tools' own CPU (steadier than wall time
when other work shares the cores). Targets: `--version` < 0.15 s, no-op <= 0.35x
skopeo and full <= 0.40x (ratio of the medians). Exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fleet import FleetSpec, build_fleet, seed_items
from bench.scenarios import Bench, Sample, log
from bench.tools import TIME, TOOLS, Job, Tool, clear_skopeo_cache, syncer_binary

VERSION_TARGET_S = 0.15
RATIO_TARGETS = {"full": 0.40, "noop": 0.35}


def version_walls(runs: int) -> list[float]:
    """Wall seconds of each `syncer --version`, as a user (or a CronJob) starts it."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([syncer_binary(), "--version"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return walls


def fleet_runs(bench: Bench, runs: int) -> None:
    src = bench.registry()
    bf = build_fleet(FleetSpec(repos=12, tags=8))
    seed_items(src.url, bf.fleet.items())
    log(f"fleet: {bf.tag_count} tags in {len(bf.fleet.repos)} repositories at {src.url}")
    repos = sorted(bf.fleet.repos)
    for run in range(runs):
        order: tuple[Tool, ...] = TOOLS if run % 2 == 0 else TOOLS[::-1]
        for tool in order:
            dst = bench.registry()
            try:
                job = Job(src, dst, repos)
                if tool == "skopeo":
                    clear_skopeo_cache()  # a cold full sync, as on a new mirror host
                expected, blobs = bf.digests(), bf.blob_digests()
                bench.measure(
                    "full", tool, run, job, tags=bf.tag_count, expected=expected, blobs=blobs
                )
                bench.measure("noop", tool, run, job, tags=bf.tag_count, expected=expected)
            finally:
                bench.drop(dst)


def _sample(samples: list[Sample], scenario: str, tool: Tool, run: int) -> Sample:
    return next(s for s in samples if (s.scenario, s.tool, s.run) == (scenario, tool, run))


def rows(samples: list[Sample], runs: int) -> list[dict[str, Any]]:
    """One row per scenario and run, then the medians: both tools' wall, their ratio,
    requests and destination writes, and whether both destinations matched the source."""
    out: list[dict[str, Any]] = []
    for scenario in RATIO_TARGETS:
        for run in range(runs):
            ours, theirs = (_sample(samples, scenario, t, run) for t in ("syncer", "skopeo"))
            out.append(
                {
                    "scenario": scenario,
                    "run": str(run + 1),
                    "syncer_s": ours.wall_s,
                    "skopeo_s": theirs.wall_s,
                    "ratio": ours.wall_s / theirs.wall_s,
                    "syncer_cpu_s": ours.cpu_s,
                    "skopeo_cpu_s": theirs.cpu_s,
                    "syncer_req": ours.traffic.requests,
                    "skopeo_req": theirs.traffic.requests,
                    "syncer_writes": ours.traffic.dst_writes,
                    "ok": not ours.problems and not theirs.problems,
                }
            )
        mine = [r for r in out if r["scenario"] == scenario]
        ours_s = statistics.median(r["syncer_s"] for r in mine)
        theirs_s = statistics.median(r["skopeo_s"] for r in mine)
        out.append(
            {
                "scenario": scenario,
                "run": "median",
                "syncer_s": ours_s,
                "skopeo_s": theirs_s,
                "ratio": ours_s / theirs_s,  # ratio of the medians, as bench.run reports
                "syncer_cpu_s": statistics.median(r["syncer_cpu_s"] for r in mine),
                "skopeo_cpu_s": statistics.median(r["skopeo_cpu_s"] for r in mine),
                "syncer_req": statistics.median(r["syncer_req"] for r in mine),
                "skopeo_req": statistics.median(r["skopeo_req"] for r in mine),
                "syncer_writes": statistics.median(r["syncer_writes"] for r in mine),
                "ok": all(r["ok"] for r in mine),
            }
        )
    return out


def table(version: list[float], fleet: list[dict[str, Any]]) -> str:
    v = sorted(version)
    lines = [
        f"syncer --version: median {statistics.median(v):.3f} s "
        f"(min {v[0]:.3f}, max {v[-1]:.3f}, {len(v)} runs)",
        "",
        "| scenario | run | syncer s | skopeo s | ratio | cpu s syncer / skopeo | requests "
        "syncer / skopeo | syncer writes | digests match |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in fleet:
        lines.append(
            f"| {r['scenario']} | {r['run']} | {r['syncer_s']:.2f} | {r['skopeo_s']:.2f} | "
            f"{r['ratio']:.2f}x | {r['syncer_cpu_s']:.2f} / {r['skopeo_cpu_s']:.2f} | "
            f"{r['syncer_req']:.0f} / "
            f"{r['skopeo_req']:.0f} | {r['syncer_writes']:.0f} | {'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def targets(version: list[float], fleet: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    median_v = statistics.median(version)
    out = [
        (f"syncer --version {median_v:.3f} s < {VERSION_TARGET_S} s", median_v < VERSION_TARGET_S)
    ]
    for r in fleet:
        if r["run"] == "median":
            goal = RATIO_TARGETS[r["scenario"]]
            out.append((f"{r['scenario']} {r['ratio']:.2f}x <= {goal}x skopeo", r["ratio"] <= goal))
        if not r["ok"]:
            out.append((f"{r['scenario']} run {r['run']}: a destination differs", False))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="fleet runs per tool (default 3)")
    p.add_argument("--version-runs", type=int, default=11, help="`syncer --version` runs")
    p.add_argument("--json", type=Path, help="write the rows and every sample here")
    args = p.parse_args(argv)
    if not Path(TIME).exists() or shutil.which("skopeo") is None:
        sys.exit(f"needs {TIME} and skopeo: apt-get install -y time skopeo")
    # As bench.run: an installed syncer comes byte-compiled, this checkout would not be.
    compileall.compile_dir(Path(__file__).parent.parent / "syncer", quiet=1)
    load_start = os.getloadavg()
    version = version_walls(args.version_runs)
    tmp = Path(tempfile.mkdtemp(prefix="syncer-startup-"))
    bench = Bench(tmp, timeout_s=900.0)
    try:
        fleet_runs(bench, args.runs)
        version += version_walls(args.version_runs)  # before and after the fleet's load
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    fleet = rows(bench.samples, args.runs)
    print(table(version, fleet))
    goals = targets(version, fleet)
    print("\n".join(f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in goals))
    load_end = os.getloadavg()
    cores = os.cpu_count()
    print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end ({cores} cores)")
    if args.json:
        samples = [
            {k: v for k, v in vars(s).items() if k != "traffic"} | {"traffic": vars(s.traffic)}
            for s in bench.samples
        ]
        doc = {
            "version_s": version,
            "rows": fleet,
            "samples": samples,
            "loadavg": [load_start, load_end],
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
