"""Bandwidth cap: the fleet's full sync uncapped and under `defaults: {bandwidth: RATE}`.

`python -m bench.bandwidth [--rate-mib 20] [--runs 1]` seeds the benchmark fleet (bench/fleet.py)
into a loopback source, then per run copies it into a fresh destination with `--concurrency 16`,
once uncapped and once capped. Achieved rate = blob bytes downloaded (the report's `bandwidth`
section, else `totals.bytes_copied`) over the report's `duration_s` (the transfer, without the
CLI's start-up); the capped row's ratio to the cap should be within 10%."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.fleet import FleetSpec, build_fleet, seed_items
from bench.measure import Window, verify
from bench.scenarios import Bench, log
from bench.tools import Job, measure_command, syncer_binary, syncer_config

MiB = 2**20


def _run(bench: Bench, job: Job, label: str, rate_mib: int | None) -> dict[str, Any]:
    cfg = syncer_config(job)
    if rate_mib is not None:
        cfg["defaults"] = {"bandwidth": f"{rate_mib}MiB/s"}
    work = bench.tmp / "runs"
    work.mkdir(parents=True, exist_ok=True)
    path, report = work / f"{label}-sync.yaml", work / f"{label}-report.json"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [syncer_binary(), "sync", "-c", str(path), "--report", str(report)]
    cmd += ["--log-format", "json", "-q", "--concurrency", "16"]
    window = Window(job.src, job.dst)
    res = measure_command("syncer", cmd, work / label, bench.timeout_s, report, {})
    traffic = window.close()
    rep = res.report or {}
    duration = float(rep.get("duration_s") or res.wall_s)
    proc = (rep.get("bandwidth") or {}).get("process", {})
    down = proc.get("download", {})
    moved = int(down.get("bytes") or (rep.get("totals") or {}).get("bytes_copied") or 0)
    limited = sum(float(proc.get(d, {}).get("limited_s", 0.0)) for d in ("download", "upload"))
    return {
        "row": label,
        "cap": f"{rate_mib} MiB/s" if rate_mib else "none",
        "exit": res.returncode,
        "wall_s": res.wall_s,
        "duration_s": duration,
        "mib": moved / MiB,
        "mib_s": moved / MiB / duration if duration else 0.0,
        "ratio": (moved / MiB / duration / rate_mib) if rate_mib and duration else None,
        "limited_s": limited,
        "rss_mib": res.rss_kib / 1024,
        "requests": traffic.src_requests + traffic.dst_requests,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| row | cap | exit | wall s | xfer s | MiB down | MiB/s | /cap | limited s | RSS MiB |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['row']} | {r['cap']} | {r['exit']} | {r['wall_s']:.2f} | {r['duration_s']:.2f} "
            f"| {r['mib']:.1f} | {r['mib_s']:.1f} | {ratio} | {r['limited_s']:.2f} "
            f"| {r['rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate-mib", type=int, default=20)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="syncer-bwbench-"))
    bench = Bench(tmp, timeout_s=600.0)
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        src = bench.registry()
        bf = build_fleet(FleetSpec(repos=12, tags=8))
        seed_items(src.url, bf.fleet.items())
        log(f"fleet seeded: {bf.fleet.blob_bytes() / MiB:.1f} MiB")
        repos = sorted(bf.fleet.repos)
        for run in range(args.runs):
            for rate in (None, args.rate_mib):
                dst = bench.registry()
                job = Job(src, dst, repos)
                row = _run(bench, job, f"{'capped' if rate else 'uncapped'}-{run}", rate)
                want = {(job.dest_repo(r), t): d for (r, t), d in bf.digests().items()}
                row["problems"] = len(verify(dst, want, bf.blob_digests()))
                log(str(row))
                rows.append(row)
                bench.drop(dst)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows))
    print(f"\nload average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f}")
    capped = [r for r in rows if r["ratio"] is not None]
    ok = all(r["exit"] == 0 and not r["problems"] for r in rows)
    ok = ok and all(0.9 <= r["ratio"] <= 1.1 for r in capped)
    print(f"{'PASS' if ok else 'FAIL'}  capped rate within 10% of the cap, every copy verified")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
