"""Air-gapped scenarios: export to an OCI layout, import from it, re-export, bundles.

Measured against syncer's own registry-to-registry full sync in the same run (the ratios
issue 16 sets), and next to skopeo where it does the same job: `skopeo sync --dest dir` /
`--src dir` (one directory per tag, blobs not shared) and `skopeo copy ... oci:` tag by tag
(which converts Docker v2 manifests to OCI, so its digests differ from the source's).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.bigblob import push_big_image
from bench.fleet import BenchFleet, rebuild, seed_items
from bench.measure import WRITES, blob_size, upload_digest, verify
from bench.scenarios import Bench, log
from bench.tools import Tool, ToolRun, clear_skopeo_cache, measure_command, syncer_binary
from tests.support.registry import LoggedRequest, RunningRegistry

REF_NAME = "org.opencontainers.image.ref.name"
MiB = 1 << 20
Digests = dict[tuple[str, str], str]  # (repository, tag) -> manifest digest
Files = dict[str, tuple[int, int, int]]  # path -> (inode, mtime, size)


@dataclass(frozen=True)
class Row:
    scenario: str
    tool: str  # syncer, skopeo-dir, skopeo-oci
    wall_s: float
    rss_kib: int
    src_requests: int  # at the source registry, when there is one
    writes: int  # registry writes, or files (re)written in a layout, or 1 for a tar
    out_bytes: int  # bytes written into a layout or tar, or uploaded to a registry
    problems: list[str]
    note: str = ""
    blob_writes: int = 0  # files written under a layout's blobs/
    expected_bytes: int = 0  # what a delta should weigh: the new layers and configs


def mirror(repo: str) -> str:
    """The destination name both tools produce (skopeo sync keeps the last component)."""
    return f"mirror/{repo.rsplit('/', 1)[-1]}"


def layout_digests(layout: Path) -> Digests:
    if not (layout / "index.json").exists():
        return {}
    out = {}
    for m in json.loads((layout / "index.json").read_text()).get("manifests", []):
        repo, _, tag = (m.get("annotations") or {}).get(REF_NAME, "").rpartition(":")
        if repo:
            out[(repo, tag)] = m["digest"]
    return out


def files(root: Path) -> Files:
    """A file written again (rename over it) shows up with a new inode or mtime."""
    if not root.exists():
        return {}
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def written(before: Files, after: Files) -> list[str]:
    return sorted(k for k, v in after.items() if before.get(k) != v)


def uploaded_bytes(reqs: list[LoggedRequest], dst: RunningRegistry) -> int:
    return sum(blob_size(dst, d) for d in map(upload_digest, reqs) if d is not None)


@dataclass
class Trip:
    """Runs commands for one round of the trip and keeps the rows."""

    bench: Bench
    src: RunningRegistry
    repos: list[str]
    label: str
    rows: list[Row] = field(default_factory=list)

    @property
    def work(self) -> Path:
        path = self.bench.tmp / "airgap"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, scenario: str, tool: str, res: ToolRun, **measured: Any) -> None:
        """Record one command's row: its time and memory, plus what was `measured`."""
        row = Row(scenario, tool, res.wall_s, res.rss_kib, **measured)
        self.rows.append(row)
        log(
            f"{row.scenario:<15} {row.tool:<10} {row.wall_s:7.2f}s  src req {row.src_requests}"
            f"  writes {row.writes}  out {row.out_bytes / MiB:.1f} MiB"
            f"  rss {row.rss_kib / 1024:.0f} MiB"
            + (f"  PROBLEMS: {row.problems[:2]}" if row.problems else "")
        )

    def run(self, name: str, tool: Tool, cmd: list[str]) -> ToolRun:
        stem = self.work / f"{self.label}-{name}"
        return measure_command(tool, cmd, stem, self.bench.timeout_s, stem.with_suffix(".r"), {})

    def syncer(self, name: str, sync: list[dict[str, str]], hosts: list[str]) -> ToolRun:
        cfg = self.work / f"{self.label}-{name}.yaml"
        config = {
            "version": 1,
            "registries": {h: {"tls": "disabled"} for h in hosts},
            "sync": sync,
        }
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.run(name, "syncer", [syncer_binary(), "sync", "-c", str(cfg), "-q"])

    def export(self, name: str, layout: Path) -> ToolRun:
        sync = [
            {"source": f"{self.src.host}/{r}", "destination": f"oci:{layout}:{mirror(r)}"}
            for r in self.repos
        ]
        return self.syncer(name, sync, [self.src.host])

    def into(self, name: str, store: str, dst: RunningRegistry) -> ToolRun:
        """Import from `store` (`oci:PATH` or `oci-archive:FILE`) into `dst`."""
        sync = [
            {"source": f"{store}:{mirror(r)}", "destination": f"{dst.host}/{mirror(r)}"}
            for r in self.repos
        ]
        return self.syncer(name, sync, [dst.host])

    def to_registry(
        self,
        scenario: str,
        tool: str,
        copy: Callable[[RunningRegistry], ToolRun],
        expected: Digests,
        dst: RunningRegistry | None = None,
    ) -> RunningRegistry:
        """Run `copy` into `dst` (a fresh registry by default) and verify it."""
        dst = dst or self.bench.registry()
        mark_src, mark_dst = self.src.mark(), dst.mark()
        res = copy(dst)
        reqs = dst.requests_since(mark_dst)
        problems = _exit(res) + verify(dst, {(mirror(r), t): d for (r, t), d in expected.items()})
        self.add(
            scenario,
            tool,
            res,
            src_requests=len(self.src.requests_since(mark_src)),
            writes=sum(r.method in WRITES for r in reqs),
            out_bytes=uploaded_bytes(reqs, dst),
            problems=problems[:5],
        )
        return dst

    def to_disk(
        self,
        scenario: str,
        tool: str,
        out: Path,
        run: Callable[[], ToolRun],
        *,
        note: str = "",
        expected: Digests | None = None,
        expected_bytes: int = 0,
    ) -> ToolRun:
        """Run an export or bundle writing `out`; count what it wrote."""
        before = files(out) if out.is_dir() else {}
        mark = self.src.mark()
        res = run()
        after = (
            files(out)
            if out.is_dir()
            else ({out.name: (0, 0, out.stat().st_size)} if out.exists() else {})
        )
        changed = written(before, after)
        problems = _exit(res)
        if expected is not None:
            got = layout_digests(out)
            problems += [
                f"{k}: {got.get(k)} != {v}" for k, v in sorted(expected.items()) if got.get(k) != v
            ]
        self.add(
            scenario,
            tool,
            res,
            src_requests=len(self.src.requests_since(mark)),
            writes=len(changed),
            out_bytes=sum(after[k][2] for k in changed),
            problems=problems[:5],
            note=note,
            blob_writes=sum(k.startswith("blobs/") for k in changed),
            expected_bytes=expected_bytes,
        )
        return res


def _exit(res: ToolRun) -> list[str]:
    return [] if res.ok else [f"exit {res.returncode}: {res.output_tail[-300:]}"]


def airgap_fleet(bench: Bench, src: RunningRegistry, bf: BenchFleet, runs: int) -> list[Row]:
    """Per run: reg->reg full (the yardstick), export, re-export, import; skopeo's dir
    export and import (and, first run only, `skopeo copy` to `oci:` tag by tag); then a
    full bundle, 10% of the tags rebuilt, an incremental export, a delta
    bundle, and on the far side the full archive into an empty registry and the delta on top."""
    rows: list[Row] = []
    for run in range(runs):
        rows += _fleet_round(bench, src, bf, run)
    return rows


def _fleet_round(bench: Bench, src: RunningRegistry, bf: BenchFleet, run: int) -> list[Row]:
    repos = sorted(bf.fleet.repos)
    trip = Trip(bench, src, repos, f"r{run}")
    expected = bf.digests()
    in_layout = {(mirror(r), t): d for (r, t), d in expected.items()}
    reg_sync = [{"source": f"{src.host}/{r}", "destination": "DST/" + mirror(r)} for r in repos]

    def full(dst: RunningRegistry) -> ToolRun:
        sync = [{**e, "destination": e["destination"].replace("DST", dst.host)} for e in reg_sync]
        return trip.syncer("full", sync, [src.host, dst.host])

    bench.drop(trip.to_registry("full reg->reg", "syncer", full, expected))

    layout = trip.work / f"r{run}-layout"
    trip.to_disk(
        "export", "syncer", layout, lambda: trip.export("export", layout), expected=in_layout
    )
    trip.to_disk(
        "re-export",
        "syncer",
        layout,
        lambda: trip.export("reexport", layout),
        note=f"{bf.tag_count} tags",
        expected=in_layout,
    )
    bench.drop(
        trip.to_registry(
            "import", "syncer", lambda d: trip.into("import", f"oci:{layout}", d), expected
        )
    )

    skdir = trip.work / f"r{run}-skopeo-dir"
    skcfg = trip.work / f"r{run}-skopeo.yaml"
    regex = {r: ".*" for r in repos}
    skcfg.write_text(
        yaml.safe_dump({src.host: {"tls-verify": False, "images-by-tag-regex": regex}})
    )
    clear_skopeo_cache()
    sk = ["skopeo", "sync", "--all", "--preserve-digests"]
    trip.to_disk(
        "export",
        "skopeo-dir",
        skdir,
        lambda: trip.run(
            "skopeo-export",
            "skopeo",
            [*sk, "--src", "yaml", "--dest", "dir", str(skcfg), str(skdir)],
        ),
        note="a directory per tag, blobs not shared",
    )

    def skopeo_import(dst: RunningRegistry) -> ToolRun:
        clear_skopeo_cache()
        cmd = [
            *sk,
            "--src",
            "dir",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
            str(skdir),
            f"{dst.host}/mirror",
        ]
        return trip.run("skopeo-import", "skopeo", cmd)

    bench.drop(trip.to_registry("import", "skopeo-dir", skopeo_import, expected))

    if run == 0:
        oci = trip.work / f"r{run}-skopeo-oci"
        copy = "skopeo copy -q --all --src-tls-verify=false"
        script = " && ".join(
            f"{copy} docker://{src.host}/{r}:{t} oci:{oci}:{mirror(r)}:{t}"
            for (r, t) in sorted(expected)
        )
        trip.to_disk(
            "export",
            "skopeo-oci",
            oci,
            lambda: trip.run("skopeo-oci", "skopeo", ["sh", "-c", script]),
            note="skopeo copy per tag; Docker v2 rewritten as OCI, digests change",
        )

    _bundle_round(trip, bf, layout, run, expected)
    return trip.rows


def _bundle_round(trip: Trip, bf: BenchFleet, layout: Path, run: int, before: Digests) -> None:
    bundle = [syncer_binary(), "bundle", str(layout), "-o"]
    full_tar = trip.work / f"r{run}-full.tar"
    trip.to_disk(
        "bundle", "syncer", full_tar, lambda: trip.run("bundle", "syncer", [*bundle, str(full_tar)])
    )
    rb = rebuild(bf, 0.10, run + 1)
    seed_items(trip.src.url, rb.items)
    after = bf.digests()
    trip.to_disk(
        "export incr.",
        "syncer",
        layout,
        lambda: trip.export("export-incr", layout),
        note=f"{len(rb.items)} tags rebuilt",
        expected={(mirror(r), t): d for (r, t), d in after.items()},
    )
    delta = trip.work / f"r{run}-delta.tar"
    trip.to_disk(
        "delta bundle",
        "syncer",
        delta,
        lambda: trip.run("delta", "syncer", [*bundle, str(delta), "--since", str(full_tar)]),
        note=f"new layers and configs: {rb.new_blob_bytes / MiB:.1f} MiB",
        expected_bytes=rb.new_blob_bytes,
    )
    dst = trip.to_registry(
        "archive import",
        "syncer",
        lambda d: trip.into("archive-import", f"oci-archive:{full_tar}", d),
        before,
    )
    trip.to_registry(
        "delta import",
        "syncer",
        lambda d: trip.into("delta-import", f"oci-archive:{delta}", d),
        after,
        dst=dst,
    )
    trip.bench.drop(dst)


def airgap_bigblob(bench: Bench, src: RunningRegistry, size: int) -> list[Row]:
    """The 1 GiB layer through every leg: export, bundle, import from the layout and from
    the archive. The number to watch is peak RSS."""
    repo, tag = "big/airgap", "1"
    image = push_big_image(src.url, repo, tag, size, seed=20240602)
    expected = {(repo, tag): image.digest}
    trip = Trip(bench, src, [repo], "big")
    layout = trip.work / "big-layout"
    trip.to_disk(
        "big export",
        "syncer",
        layout,
        lambda: trip.export("big-export", layout),
        expected={(mirror(repo), tag): image.digest},
    )
    bench.drop(
        trip.to_registry(
            "big import", "syncer", lambda d: trip.into("big-import", f"oci:{layout}", d), expected
        )
    )
    tar = trip.work / "big.tar"
    trip.to_disk(
        "big bundle",
        "syncer",
        tar,
        lambda: trip.run(
            "big-bundle", "syncer", [syncer_binary(), "bundle", str(layout), "-o", str(tar)]
        ),
    )
    bench.drop(
        trip.to_registry(
            "big archive imp.",
            "syncer",
            lambda d: trip.into("big-archive", f"oci-archive:{tar}", d),
            expected,
        )
    )
    tar.unlink(missing_ok=True)
    shutil.rmtree(layout, ignore_errors=True)
    return trip.rows
