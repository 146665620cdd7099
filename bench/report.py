"""Summaries, targets and the printed table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from bench.scenarios import Sample
from bench.tools import TOOLS, Tool

SCENARIOS = ("full", "noop", "incremental", "bigblob", "scale")
MiB = 1 << 20


@dataclass(frozen=True)
class Summary:
    scenario: str
    tool: Tool
    runs: int
    tags: int
    repos: int
    wall_median_s: float
    wall_min_s: float
    wall_max_s: float
    cpu_median_s: float  # the tool's own user+system CPU
    registry_cpu_median_s: float  # both registries' CPU during the run
    src_requests: float  # medians over runs
    dst_requests: float
    requests_per_tag: float
    dst_writes: float
    uploaded_bytes: float
    expected_upload_bytes: int | None
    peak_rss_mib: float  # max over runs
    failures: int  # runs that exited non-zero, timed out, or left a wrong destination
    timed_out: int
    ratio: float | None = None  # syncer median / skopeo median, on syncer's row

    @property
    def tags_per_s(self) -> float:
        return self.tags / self.wall_median_s if self.wall_median_s else 0.0


def summarize(samples: list[Sample]) -> list[Summary]:
    out: list[Summary] = []
    for scenario in SCENARIOS:
        rows: dict[Tool, Summary] = {}
        for tool in TOOLS:
            ss = [s for s in samples if s.scenario == scenario and s.tool == tool]
            if not ss:
                continue
            walls = [s.wall_s for s in ss]
            med = statistics.median
            rows[tool] = Summary(
                scenario=scenario,
                tool=tool,
                runs=len(ss),
                tags=ss[0].tags,
                repos=ss[0].repos,
                wall_median_s=med(walls),
                wall_min_s=min(walls),
                wall_max_s=max(walls),
                cpu_median_s=med(s.cpu_s for s in ss),
                registry_cpu_median_s=med(s.traffic.registry_cpu_s for s in ss),
                src_requests=med(s.traffic.src_requests for s in ss),
                dst_requests=med(s.traffic.dst_requests for s in ss),
                requests_per_tag=med(s.traffic.requests for s in ss) / ss[0].tags,
                dst_writes=med(s.traffic.dst_writes for s in ss),
                uploaded_bytes=med(s.traffic.blob_bytes_uploaded for s in ss),
                # Each incremental run rebuilds a different slice: compare medians with medians.
                expected_upload_bytes=(
                    None
                    if ss[0].expected_upload_bytes is None
                    else int(med(s.expected_upload_bytes or 0 for s in ss))
                ),
                peak_rss_mib=max(s.rss_kib for s in ss) / 1024,
                failures=sum(bool(s.problems) for s in ss),
                timed_out=sum(s.timed_out for s in ss),
            )
        if "syncer" in rows and "skopeo" in rows and rows["skopeo"].wall_median_s:
            ratio: float | None = rows["syncer"].wall_median_s / rows["skopeo"].wall_median_s
            if rows["skopeo"].timed_out:
                ratio = None  # skopeo's time is only a lower bound: no honest ratio
            rows["syncer"] = Summary(**{**asdict(rows["syncer"]), "ratio": ratio})
        out += rows.values()
    return out


@dataclass(frozen=True)
class Target:
    name: str
    ok: bool
    measured: str


def _get(summaries: list[Summary], scenario: str, tool: Tool) -> Summary | None:
    return next((s for s in summaries if s.scenario == scenario and s.tool == tool), None)


def floor_s(s: Summary, startup_s: float, cores: int, *, own_cpu: bool = False) -> float:
    """A lower bound on syncer's wall time here: the CLI has to start before any request,
    and the registries' own CPU for the run has to fit on this machine's cores. With
    `own_cpu`, syncer's CPU after start-up has to fit there too."""
    work = s.registry_cpu_median_s
    if own_cpu:
        work += max(0.0, s.cpu_median_s - startup_s)
    return startup_s + work / cores


def evaluate(
    summaries: list[Summary],
    samples: list[Sample],
    *,
    startup_s: float | None = None,
    cores: int = 2,
) -> list[Target]:
    t: list[Target] = []

    def ratio_target(scenario: str, limit: float) -> None:
        s = _get(summaries, scenario, "syncer")
        other = _get(summaries, scenario, "skopeo")
        if s is None or s.ratio is None or other is None:
            return
        detail = f"{s.ratio:.2f}x"
        if s.ratio > limit and startup_s is not None:
            goal = limit * other.wall_median_s
            floor = floor_s(s, startup_s, cores)
            with_own = floor_s(s, startup_s, cores, own_cpu=True)
            detail += (
                f"; target {goal:.2f}s, floor here {floor:.2f}s = CLI start-up {startup_s:.2f}s"
                f" + registries' CPU {s.registry_cpu_median_s:.2f}s / {cores} cores"
                f" ({with_own:.2f}s adding syncer's own CPU after start-up)"
                + (" (target below the floor)" if floor > goal else "")
            )
        t.append(Target(f"{scenario}: syncer <= {limit}x skopeo wall", s.ratio <= limit, detail))

    for scenario in ("full", "noop", "incremental", "bigblob"):
        for tool in TOOLS:
            ss = [x for x in samples if x.scenario == scenario and x.tool == tool]
            if ss and any(x.verified for x in ss):
                bad = [p for x in ss for p in x.problems]
                t.append(
                    Target(
                        f"{scenario}: {tool} exits 0, destination digests == source",
                        not bad,
                        f"{len(ss) - sum(bool(x.problems) for x in ss)}/{len(ss)} runs ok"
                        + (f"; first problem: {bad[0]}" if bad else ""),
                    )
                )
    ratio_target("full", 0.35)
    ratio_target("noop", 0.4)
    noop = _get(summaries, "noop", "syncer")
    if noop is not None:
        budget = 2 * noop.tags + 2 * noop.repos
        worst = max(
            (x for x in samples if x.scenario == "noop" and x.tool == "syncer"),
            key=lambda x: x.traffic.requests,
        )
        tr = worst.traffic
        t.append(
            Target(
                "noop: syncer requests <= 2/tag + 2/repo",
                tr.requests <= budget,
                f"{tr.requests} requests (src+dst, worst run) for {noop.tags} tags in "
                f"{noop.repos} repos, budget {budget}; src {tr.src_methods}, dst {tr.dst_methods}",
            )
        )
        writes = max(
            x.traffic.dst_writes + x.traffic.src_writes
            for x in samples
            if x.scenario == "noop" and x.tool == "syncer"
        )
        t.append(
            Target("noop: syncer makes zero writes", writes == 0, f"{writes} writes (worst run)")
        )
    ratio_target("incremental", 0.4)
    inc = [x for x in samples if x.scenario == "incremental" and x.tool == "syncer"]
    if inc:
        mismatched = [x for x in inc if x.traffic.blob_bytes_uploaded != x.expected_upload_bytes]
        t.append(
            Target(
                "incremental: syncer uploads only the new blobs",
                not mismatched,
                "; ".join(
                    f"run {x.run}: {x.traffic.blob_bytes_uploaded} B uploaded in "
                    f"{x.traffic.blob_uploads} blobs, new {x.expected_upload_bytes} B"
                    for x in inc
                ),
            )
        )
    ratio_target("bigblob", 0.9)
    big = _get(summaries, "bigblob", "syncer")
    if big is not None:
        t.append(
            Target(
                "bigblob: syncer peak RSS < 60 MiB",
                big.peak_rss_mib < 60 and not big.failures,
                f"{big.peak_rss_mib:.0f} MiB (max over {big.runs} runs)",
            )
        )
    scale = _get(summaries, "scale", "syncer")
    if scale is not None:
        inproc = [
            x.syncer_duration_s
            for x in samples
            if x.scenario == "scale" and x.tool == "syncer" and x.syncer_duration_s
        ]
        inside = scale.tags / statistics.median(inproc) if inproc else 0.0
        ceiling = ""
        if startup_s is not None:
            ceiling = (
                f"; ceiling here {scale.tags / floor_s(scale, startup_s, cores):.0f} tags/s "
                f"from start-up {startup_s:.2f}s + registries' CPU "
                f"{scale.registry_cpu_median_s:.2f}s / {cores} cores"
            )
        t.append(
            Target(
                "scale: syncer >= 500 up-to-date tags/s",
                scale.tags_per_s >= 500 and not scale.failures,
                f"{scale.tags_per_s:.0f} tags/s ({scale.tags} tags in {scale.wall_median_s:.2f}s"
                " wall, CLI start-up included; "
                f"{inside:.0f} tags/s by syncer's own report duration){ceiling}",
            )
        )
    return t


def _mib(n: float) -> str:
    return f"{n / MiB:.1f}"


def table(summaries: list[Summary]) -> str:
    head = (
        "scenario", "tool", "runs", "wall s median (min-max)", "syncer/skopeo", "cpu s",
        "registries cpu s", "src req", "dst req", "req/tag", "dst writes", "uploaded MiB",
        "peak RSS MiB", "failed runs",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for s in summaries:
        wall = f"{s.wall_median_s:.2f} ({s.wall_min_s:.2f}-{s.wall_max_s:.2f})"
        if s.timed_out:
            wall = f">{s.wall_median_s:.0f} (capped)"
        ratio = "" if s.ratio is None else f"{s.ratio:.2f}x"
        up = _mib(s.uploaded_bytes)
        if s.expected_upload_bytes is not None:  # median over runs, like the measured value
            up += f" (new {_mib(s.expected_upload_bytes)})"
        rows.append(
            (
                s.scenario,
                s.tool,
                str(s.runs),
                wall,
                ratio,
                f"{s.cpu_median_s:.2f}",
                f"{s.registry_cpu_median_s:.2f}",
                f"{s.src_requests:g}",
                f"{s.dst_requests:g}",
                f"{s.requests_per_tag:.2f}",
                f"{s.dst_writes:g}",
                up,
                f"{s.peak_rss_mib:.0f}",
                str(s.failures),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def targets_text(targets: list[Target]) -> str:
    return "\n".join(f"{'PASS' if x.ok else 'FAIL'}  {x.name}: {x.measured}" for x in targets)


def to_json(
    summaries: list[Summary], targets: list[Target], samples: list[Sample]
) -> dict[str, Any]:
    return {
        "summary": [{**asdict(s), "tags_per_s": s.tags_per_s} for s in summaries],
        "targets": [asdict(x) for x in targets],
        "samples": [asdict(s) for s in samples],
    }
