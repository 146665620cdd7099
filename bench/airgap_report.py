"""The air-gapped rows as a table, and issue 16's performance targets over them."""

from __future__ import annotations

from bench.airgap import MiB, Row


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def airgap_table(rows: list[Row]) -> str:
    """Median per (scenario, tool), in the order first seen; ratios against syncer's own
    registry-to-registry full sync."""
    keys = list(dict.fromkeys((r.scenario, r.tool) for r in rows))
    full = _median([r.wall_s for r in rows if r.scenario == "full reg->reg"])
    head = (
        f"| {'Scenario':<16} | {'Tool':<10} | {'Wall':>7} | {'vs reg->reg':>11} | "
        f"{'Src req':>7} | {'Writes':>6} | {'Written':>9} | {'Peak RSS':>8} | Notes |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(9)) + "|"]
    for scenario, tool in keys:
        rs = [r for r in rows if (r.scenario, r.tool) == (scenario, tool)]
        wall = _median([r.wall_s for r in rs])
        ratio = f"{wall / full:.2f}x" if full and not scenario.startswith("big") else ""
        bad = sum(bool(r.problems) for r in rs)
        note = rs[-1].note + (f" FAILED {bad}/{len(rs)}: {rs[-1].problems[:1]}" if bad else "")
        lines.append(
            f"| {scenario:<16} | {tool:<10} | {wall:6.2f}s | {ratio:>11} | "
            f"{int(_median([r.src_requests for r in rs])):>7} | "
            f"{int(_median([r.writes for r in rs])):>6} | "
            f"{_median([r.out_bytes for r in rs]) / MiB:7.1f}Mi | "
            f"{max(r.rss_kib for r in rs) / 1024:6.0f}Mi | {note} |"
        )
    return "\n".join(lines)


def airgap_targets(rows: list[Row], tags: int) -> list[tuple[str, bool, str]]:
    """(name, ok, measured) for each of issue 16's performance targets."""
    out: list[tuple[str, bool, str]] = []

    def wall(scenario: str) -> float:
        return _median([r.wall_s for r in rows if (r.scenario, r.tool) == (scenario, "syncer")])

    full = wall("full reg->reg")
    for scenario in ("export", "import"):
        if full and wall(scenario):
            ratio = wall(scenario) / full
            out.append(
                (f"{scenario}: <= 1.2x syncer's reg->reg full sync", ratio <= 1.2, f"{ratio:.2f}x")
            )
    re = [r for r in rows if r.scenario == "re-export"]
    if re:
        blobs = max(r.blob_writes for r in re)
        per_tag = max(r.src_requests for r in re) / tags
        out.append(("re-export: no blob written", blobs == 0, f"{blobs} blob files written"))
        out.append(("re-export: <= 2 source requests per tag", per_tag <= 2, f"{per_tag:.2f}"))
    for r in rows:
        if r.scenario == "delta bundle" and r.expected_bytes:
            ratio = r.out_bytes / r.expected_bytes
            detail = f"{ratio:.3f}x ({r.out_bytes} / {r.expected_bytes} bytes)"
            # An empty tar (a failed run) is no delta at all, not a small one.
            out.append(("delta bundle: <= 1.1x the new layers' bytes", 0 < ratio <= 1.1, detail))
    peak = max((r.rss_kib for r in rows if r.tool == "syncer"), default=0) / 1024
    out.append(("peak RSS < 150 MiB (1 GiB blob included)", 0 < peak < 150, f"{peak:.0f} MiB"))
    bad = [f"{r.scenario}/{r.tool}: {r.problems[0]}" for r in rows if r.problems]
    out.append(
        ("every copy verified (digests equal the source's)", not bad, "; ".join(bad[:3]) or "all")
    )
    return out
