"""The scenarios: each runs both tools against the same source and a fresh destination."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bigblob import push_big_image
from bench.fleet import (
    BenchFleet,
    rebuild,
    scale_names,
    seed_items,
    seed_scale,
    tiny_image,
)
from bench.measure import Traffic, Window, verify
from bench.tools import TOOLS, Job, Tool, clear_skopeo_cache, run_tool
from tests.support.images import Image
from tests.support.registry import RunningRegistry, start_registry


@dataclass
class Sample:
    scenario: str
    tool: Tool
    run: int
    tags: int
    repos: int
    wall_s: float
    cpu_s: float
    rss_kib: int
    returncode: int
    timed_out: bool
    traffic: Traffic
    problems: list[str]  # verification failures; empty = destination matches the source
    verified: bool  # whether a verification was done at all
    expected_upload_bytes: int | None = None
    syncer_totals: dict[str, Any] | None = None
    syncer_duration_s: float | None = None
    output_tail: str = ""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """Owns every registry and directory it creates; `close()` removes them all."""

    tmp: Path
    timeout_s: float
    samples: list[Sample] = field(default_factory=list)
    live: list[RunningRegistry] = field(default_factory=list)

    def registry(self) -> RunningRegistry:
        # The registries as deployed run Go's default collector, not the suite's GOGC=400
        # (tests/support/registry.py): figures stay comparable with earlier runs.
        os.environ.setdefault("GOGC", "100")
        reg = start_registry(self.tmp, "anon")
        self.live.append(reg)
        return reg

    def drop(self, reg: RunningRegistry) -> None:
        """Stop a registry and delete its storage (a copied 1 GiB blob must not linger)."""
        reg.stop()
        self.live.remove(reg)
        shutil.rmtree(reg.workdir, ignore_errors=True)

    def close(self) -> None:
        for reg in list(self.live):
            with contextlib.suppress(Exception):
                self.drop(reg)

    def measure(
        self,
        scenario: str,
        tool: Tool,
        run: int,
        job: Job,
        *,
        tags: int,
        expected: dict[tuple[str, str], str] | None = None,
        blobs: dict[str, int] | None = None,
        expected_upload: int | None = None,
        timeout_s: float | None = None,
    ) -> Sample:
        window = Window(job.src, job.dst)
        res = run_tool(
            tool, job, self.tmp / "runs", f"{scenario}-{run}", timeout_s or self.timeout_s
        )
        traffic = window.close()
        problems: list[str] = []
        if not res.ok:
            problems.append(f"exit {res.returncode}{' (timed out)' if res.timed_out else ''}")
        if expected is not None:
            dest = {(job.dest_repo(r), t): d for (r, t), d in expected.items()}
            problems += verify(job.dst, dest, blobs)
        totals = (res.report or {}).get("totals")
        sample = Sample(
            scenario=scenario,
            tool=tool,
            run=run,
            tags=tags,
            repos=len(job.repos),
            wall_s=res.wall_s,
            cpu_s=res.cpu_s,
            rss_kib=res.rss_kib,
            returncode=res.returncode,
            timed_out=res.timed_out,
            traffic=traffic,
            problems=problems[:20],
            verified=expected is not None,
            expected_upload_bytes=expected_upload,
            syncer_totals=totals,
            syncer_duration_s=(res.report or {}).get("duration_s"),
            output_tail="" if res.ok else res.output_tail,
        )
        self.samples.append(sample)
        log(
            f"{scenario:<12} {tool:<7} run {run}: {res.wall_s:7.2f}s (cpu {res.cpu_s:.2f}s)  "
            f"req {traffic.src_requests}+{traffic.dst_requests}  writes {traffic.dst_writes}  "
            f"up {traffic.blob_bytes_uploaded / 2**20:.1f} MiB  rss {res.rss_kib / 1024:.0f} MiB  "
            f"registries cpu {traffic.registry_cpu_s:.2f}s"
            + (f"  PROBLEMS: {problems[:3]}" if problems else "")
        )
        return sample


def _order(run: int) -> tuple[Tool, ...]:
    # Alternate who goes first, so warm caches (page cache, source registry) favour neither.
    return TOOLS if run % 2 == 0 else TOOLS[::-1]


def fleet_scenarios(bench: Bench, src: RunningRegistry, bf: BenchFleet, runs: int) -> None:
    """full -> no-op per tool on a fresh destination; then 10% rebuilt -> incremental."""
    repos = sorted(bf.fleet.repos)
    tags = bf.tag_count
    for run in range(runs):
        dests: dict[Tool, RunningRegistry] = {}
        for tool in _order(run):
            dst = dests[tool] = bench.registry()
            job = Job(src, dst, repos)
            if tool == "skopeo":
                clear_skopeo_cache()  # a cold full sync, as on a new mirror host
            expected, blobs = bf.digests(), bf.blob_digests()
            bench.measure("full", tool, run, job, tags=tags, expected=expected, blobs=blobs)
            bench.measure("noop", tool, run, job, tags=tags, expected=expected)
        rb = rebuild(bf, 0.10, run)
        seed_items(src.url, rb.items)
        log(
            f"rebuilt {len(rb.items)} tags: {len(rb.new_layers)} new layers "
            f"({sum(rb.new_layers.values()) / 2**20:.1f} MiB), {len(rb.new_configs)} configs"
        )
        for tool in _order(run):
            job = Job(src, dests[tool], repos)
            bench.measure(
                "incremental",
                tool,
                run,
                job,
                tags=tags,
                expected=bf.digests(),
                blobs={**rb.new_layers, **rb.new_configs},
                expected_upload=rb.new_blob_bytes,
            )
        for dst in dests.values():
            bench.drop(dst)


def bigblob_scenario(bench: Bench, src: RunningRegistry, size: int, runs: int) -> None:
    repo, tag = "big/blob", "1"
    started = time.perf_counter()
    image: Image = push_big_image(src.url, repo, tag, size, seed=20240601)
    took = time.perf_counter() - started
    log(f"seeded {image.layers[0].size / 2**30:.2f} GiB layer in {took:.1f}s")
    # The seeded GiB is still dirty in the page cache: its writeback would slow whichever
    # tool goes first (measured: the first run of each bench was 20-40% slower).
    os.sync()
    blobs = {b.digest: b.size for b in image.blobs()}
    for run in range(runs):
        for tool in _order(run):
            dst = bench.registry()
            try:
                if tool == "skopeo":
                    clear_skopeo_cache()
                bench.measure(
                    "bigblob",
                    tool,
                    run,
                    Job(src, dst, [repo]),
                    tags=1,
                    expected={(repo, tag): image.digest},
                    blobs=blobs,
                    expected_upload=sum(blobs.values()),
                )
            finally:
                bench.drop(dst)


def scale_scenario(bench: Bench, repos: int, tags: int, runs: int, skopeo_cap_s: float) -> None:
    """No-op over many tiny tags. Both ends are seeded directly with identical bytes (the
    tools' copying is measured elsewhere); what is timed is checking that all is current."""
    src, dst = bench.registry(), bench.registry()
    image = tiny_image()
    names = scale_names(repos, tags, "scale")
    started = time.perf_counter()
    seed_scale(src.url, names, image)
    job = Job(src, dst, sorted(names))
    seed_scale(dst.url, {job.dest_repo(r): t for r, t in names.items()}, image)
    log(f"seeded {repos * tags} tags at both ends in {time.perf_counter() - started:.1f}s")
    expected = {(r, t): image.digest for r, ts in names.items() for t in ts}
    skopeo_capped = False
    for run in range(runs):
        for tool in _order(run):
            if tool == "skopeo" and skopeo_capped:
                continue  # one capped run says enough; don't spend the budget again
            s = bench.measure(
                "scale",
                tool,
                run,
                job,
                tags=repos * tags,
                timeout_s=skopeo_cap_s if tool == "skopeo" else None,
            )
            skopeo_capped = skopeo_capped or (tool == "skopeo" and s.timed_out)
    # Checked once at the end (2,000 HEADs are not free): nobody changed anything.
    problems = verify(dst, {(job.dest_repo(r), t): d for (r, t), d in expected.items()})
    if problems:
        log(f"scale destination changed: {problems[:3]}")
        for s in bench.samples:
            if s.scenario == "scale":
                s.problems += problems[:5]
    bench.drop(src)
    bench.drop(dst)
