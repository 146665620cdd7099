"""Benchmark syncer against `skopeo sync` on real loopback registries.

    .venv/bin/python -m bench.run [--quick] [--runs N] [--json bench/results.json]

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from bench.airgap import Row, airgap_bigblob, airgap_fleet
from bench.airgap_report import airgap_table, airgap_targets
from bench.fleet import FleetSpec, MiB, build_fleet, seed_items
from bench.report import evaluate, summarize, table, targets_text, to_json
from bench.scenarios import Bench, bigblob_scenario, fleet_scenarios, log, scale_scenario
from bench.tools import TIME, syncer_binary

SCENARIO_NAMES = ("fleet", "bigblob", "scale", "airgap")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 run, smaller fleet (~3 minutes)")
    p.add_argument("--runs", type=int, help="runs per scenario and tool (default 3, quick 1)")
    p.add_argument("--json", type=Path, help="write results (summary, targets, samples) here")
    p.add_argument(
        "--only",
        choices=SCENARIO_NAMES,
        action="append",
        help="run only these scenario groups (repeatable; default all)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    return p.parse_args(argv)


def _versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError as exc:
            return f"unavailable: {exc}"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""
        )

    return {
        "syncer": first_line([syncer_binary(), "--version"]),
        "skopeo": first_line(["skopeo", "--version"]),
        "docker-registry": first_line(["docker-registry", "--version"]),
        "python": sys.version.split()[0],
        "syncer_commit": first_line(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"]),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
    }


def cli_startup_s(runs: int = 5) -> float:
    """Median wall time of `syncer --version`: the interpreter plus every import, which
    each run pays before its first request."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([syncer_binary(), "--version"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so `finally` cleans up.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    groups = set(args.only or SCENARIO_NAMES)
    if not Path(TIME).exists():
        sys.exit(f"{TIME} is missing: apt-get install -y time")
    if shutil.which("skopeo") is None:
        sys.exit("skopeo is missing: apt-get install -y skopeo")
    spec = FleetSpec(repos=6, tags=6) if args.quick else FleetSpec(repos=12, tags=8)
    big_size = 1024 * MiB  # the RSS target is about 1 GiB, so quick copies 1 GiB too
    scale = (20, 100)  # 2,000 tags in both modes: the target is about that many
    skopeo_cap = 90.0 if args.quick else 240.0
    signal.signal(signal.SIGTERM, _on_sigterm)

    # An installed syncer (pip, the Docker image) comes byte-compiled; this checkout is an
    # editable install, and PYTHONDONTWRITEBYTECODE (set on these machines) would otherwise
    # make every run compile syncer's sources again.
    compileall.compile_dir(Path(__file__).parent.parent / "syncer", quiet=1)
    tmp = Path(tempfile.mkdtemp(prefix="syncer-bench-"))
    bench = Bench(tmp, timeout_s=900.0)
    started = time.perf_counter()
    meta: dict[str, Any] = {
        "quick": args.quick,
        "runs": runs,
        "versions": _versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # Other work on this 2-core machine skews wall times; keep the load next to them.
        "loadavg_start": os.getloadavg(),
    }
    airgap_rows: list[Row] = []
    try:
        if groups & {"fleet", "bigblob", "airgap"}:
            src = bench.registry()
            log(f"source registry {src.url}, work dir {tmp}")
        if groups & {"fleet", "airgap"}:
            t0 = time.perf_counter()
            bf = build_fleet(spec)
            t1 = time.perf_counter()
            seed_items(src.url, bf.fleet.items())
            meta["fleet"] = {
                "repos": spec.repos,
                "tags": bf.tag_count,
                "indexes": sum(1 for _, _, i in bf.fleet.items() if hasattr(i, "children")),
                "distinct_blobs": len(bf.blob_digests()),
                "blob_mib": round(bf.fleet.blob_bytes() / MiB, 1),
            }
            log(
                f"fleet: {meta['fleet']} built in {t1 - t0:.1f}s, "
                f"seeded in {time.perf_counter() - t1:.1f}s"
            )
        if "fleet" in groups:
            fleet_scenarios(bench, src, bf, runs)
        if "airgap" in groups:
            airgap_rows += airgap_fleet(bench, src, bf, runs)
            airgap_rows += airgap_bigblob(bench, src, big_size)
        if "bigblob" in groups:
            meta["bigblob_bytes"] = big_size
            bigblob_scenario(bench, src, big_size, runs)
        if "scale" in groups:
            meta["scale_tags"] = scale[0] * scale[1]
            meta["skopeo_scale_cap_s"] = skopeo_cap
            scale_scenario(bench, *scale, runs, skopeo_cap)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        bench.close()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        meta["elapsed_s"] = round(time.perf_counter() - started, 1)
        meta["loadavg_end"] = os.getloadavg()

    summaries = summarize(bench.samples)
    meta["cli_startup_s"] = startup = cli_startup_s()
    meta["cores"] = cores = os.cpu_count() or 1
    targets = evaluate(summaries, bench.samples, startup_s=startup, cores=cores)
    if bench.samples:
        print(f"\nsyncer vs skopeo sync ({'quick, ' if args.quick else ''}{runs} run(s) each)")
        print(table(summaries))
        print()
        print(targets_text(targets))
    print(
        f"\nelapsed {meta['elapsed_s']}s; load average at start {meta['loadavg_start'][0]:.2f}, "
        f"at end {meta['loadavg_end'][0]:.2f} ({cores} cores; registries run on them too); "
        f"CLI start-up (`syncer --version`, median of 5) {startup:.2f}s"
    )
    airgap_ok = True
    if airgap_rows:
        print("\nair-gapped trip (medians; ratios against syncer's registry-to-registry full sync)")
        print(airgap_table(airgap_rows))
        goals = airgap_targets(airgap_rows, meta["fleet"]["tags"])
        print("\n".join(f"{'PASS' if ok else 'FAIL'}  {name}: {got}" for name, ok, got in goals))
        airgap_ok = all(ok for _, ok, _ in goals)
        meta["airgap"] = {"rows": [asdict(r) for r in airgap_rows], "targets": goals}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"meta": meta, **to_json(summaries, targets, bench.samples)}, indent=2)
        )
        print(f"wrote {args.json}")
    return 0 if airgap_ok and all(t.ok for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
