"""Soak `syncer schedule`: 1,000 or more scheduled runs against loopback registries, with
the process's RSS, open descriptors, asyncio tasks and threads sampled every 50 runs.

    .venv/bin/python -m bench.soak                       # 1,000 runs at interval 1s (~20 min)
    .venv/bin/python -m bench.soak --runs 200 --every 20 # a shorter look (~4 min)
    .venv/bin/python -m bench.soak --json bench/soak.json

A benchmark, not a timed test. While the scheduler runs, the driver (this process)
- pushes a changed tag to the source every `--change-every` seconds (the rest of the runs
  find nothing to do: no-op runs),
- makes one source fail now and then: a burst of 503s at a fault proxy in front of it,
  long enough that the transport's retries give up and that entry fails that run,
- polls /healthz and /metrics every 2 s, as Kubernetes' probes and Prometheus would.
At the end every source tag must be at the destination with the source's digest.

Targets: RSS growth under 2 MiB from run 100 to the last run; descriptors and tasks flat
(the highest sample after run 100 at most 2 above the run-100 sample). Exit status 0 when
every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.scenarios import log
from tests.support.fault_proxy import FaultProxy, behind
from tests.support.fleet import make_fleet, tag_item
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RunningRegistry, start_registry
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[1]
REPOS, TAGS = 4, 3  # the last repository is reached through the fault proxy
FLAKY = REPOS - 1
RSS_BUDGET_KIB = 2 * 1024
FLAT_SLACK = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="scheduled runs (default 1000)")
    p.add_argument("--every", type=int, default=50, help="sample every N runs (default 50)")
    p.add_argument("--interval", default="1s", help="the entries' interval (default 1s)")
    p.add_argument("--change-every", type=float, default=5.0, help="seconds between changes")
    p.add_argument("--fail-every", type=float, default=23.0, help="seconds between outages")
    p.add_argument("--json", type=Path, help="write the samples and verdicts here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    return p.parse_args(argv)


def _config(
    tmp: Path,
    src: RunningRegistry,
    flaky: RunningRegistry,
    dst: RunningRegistry,
    interval: str,
    repos: list[str],
) -> Path:
    entries = [
        {
            "source": f"{(flaky if i == FLAKY else src).host}/{repo}",
            "destination": f"{dst.host}/mirror/{repo}",
        }
        for i, repo in enumerate(repos)
    ]
    return write_sync_yaml(
        tmp / "sync.yaml", entries, src, flaky, dst, defaults={"interval": interval}
    )


def _samples(path: Path) -> tuple[int | None, list[dict[str, Any]]]:
    if not path.exists():
        return None, []
    port, rows = None, []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "port" in row:
            port = row["port"]
        else:
            rows.append(row)
    return port, rows


def verdicts(rows: list[dict[str, Any]], runs: int) -> dict[str, tuple[bool, str]]:
    """The targets, judged from run 100 (or the first sample after it) to the last sample."""
    base = next((r for r in rows if r["runs"] >= min(100, runs // 10)), None)
    if base is None or rows[-1]["runs"] < runs:
        last = rows[-1]["runs"] if rows else 0
        return {"completed": (False, f"only {last} of {runs} runs were sampled")}
    after = [r for r in rows if r["runs"] >= base["runs"]]
    growth = rows[-1]["rss_kib"] - base["rss_kib"]
    fds = max(r["fds"] for r in after) - base["fds"]
    tasks = max(r["tasks"] for r in after) - base["tasks"]
    threads = max(r["threads"] for r in after) - base["threads"]
    since = f"from run {base['runs']} to run {rows[-1]['runs']}"
    return {
        "rss": (growth < RSS_BUDGET_KIB, f"RSS grew {growth / 1024:+.2f} MiB {since} (< 2 MiB)"),
        "fds": (fds <= FLAT_SLACK, f"descriptors at most {fds:+d} over run {base['runs']}"),
        "tasks": (tasks <= FLAT_SLACK, f"asyncio tasks at most {tasks:+d} over run {base['runs']}"),
        "threads": (threads <= FLAT_SLACK, f"threads at most {threads:+d} over run {base['runs']}"),
    }


def _statuses(logfile: Path) -> dict[str, int]:
    """How the scheduled runs ended, from the scheduler's own JSON log lines."""
    out: dict[str, int] = {}
    for line in logfile.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "scheduled run finished":
                out[event["status"]] = out.get(event["status"], 0) + 1
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'runs':>6} {'elapsed s':>9} {'RSS MiB':>8} {'fds':>4} {'tasks':>5} "
        f"{'threads':>7} {'gc objects':>10}"
    )
    t0 = rows[0]["t"] if rows else 0.0
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['runs']:>6} {r['t'] - t0:>9.0f} {r['rss_kib'] / 1024:>8.2f} {r['fds']:>4} "
            f"{r['tasks']:>5} {r['threads']:>7} {r['gc_objects']:>10}"
        )
    return "\n".join(lines)


class Driver:
    """Changes the source and makes the flaky source fail while the scheduler runs."""

    def __init__(self, src: RunningRegistry, flaky: FaultProxy, repos: list[str]) -> None:
        self.src, self.flaky, self.repos = src, flaky, repos
        self.generation = 0
        self.changes = self.outages = self.probes = self.probe_failures = 0

    def change(self) -> None:
        self.generation += 1
        r = self.generation % REPOS
        t = self.generation % TAGS
        push(self.src.seed_url, self.repos[r], tag_item(r, t, self.generation), f"1.{t}")
        self.changes += 1

    def outage(self) -> None:
        # More 503s than the transport's retries of one request: that entry fails this run.
        self.flaky.error_burst = (503, 12)
        self.outages += 1

    def probe(self, client: httpx.Client, port: int) -> None:
        for path in ("/healthz", "/metrics"):
            self.probes += 1
            try:
                if client.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code != 200:
                    self.probe_failures += 1
            except httpx.HTTPError:
                self.probe_failures += 1


def soak(args: argparse.Namespace, tmp: Path) -> int:
    src, dst = start_registry(tmp, "anon"), start_registry(tmp, "anon")
    proxy = FaultProxy(src.url).start()
    try:
        fleet = make_fleet(REPOS, TAGS, prefix="soak")
        fleet.push(src.seed_url)
        repos = list(fleet.repos)
        cfg = _config(tmp, src, behind(src, proxy), dst, args.interval, repos)
        samples, logfile = tmp / "samples.jsonl", tmp / "scheduler.log"
        cmd = [
            sys.executable,
            "-m",
            "bench.soak_probe",
            str(cfg),
            str(samples),
            str(args.runs),
            str(args.every),
        ]
        log(f"soak: {args.runs} runs at interval {args.interval}, sampled every {args.every}")
        driver = Driver(src, proxy, repos)
        t0 = time.monotonic()
        with logfile.open("wb") as out, httpx.Client() as client:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            deadline = t0 + args.runs * 3 + 120
            next_change, next_outage, next_probe, next_note = t0 + 3, t0 + args.fail_every, t0, t0
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    now = time.monotonic()
                    port, rows = _samples(samples)
                    if port is not None and now >= next_probe:
                        driver.probe(client, port)
                        next_probe = now + 2
                    if now >= next_change:
                        driver.change()
                        next_change = now + args.change_every
                    if now >= next_outage:
                        driver.outage()
                        next_outage = now + args.fail_every
                    if rows and now >= next_note:
                        r = rows[-1]
                        log(
                            f"run {r['runs']}: RSS {r['rss_kib'] / 1024:.2f} MiB, "
                            f"{r['fds']} fds, {r['tasks']} tasks"
                        )
                        next_note = now + 60
                    time.sleep(0.2)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        wall = time.monotonic() - t0
        proxy.error_burst = None
        _, rows = _samples(samples)
        # The last changes may have landed after the final run: one one-shot sync settles them.
        settle = subprocess.run(
            [sys.executable, "-m", "syncer", "sync", "-c", str(cfg), "-q"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        wrong = [
            f"{repo}:{tag}"
            for repo in repos
            for tag in (f"1.{t}" for t in range(TAGS))
            if fetch_manifest_digest(dst.url, f"mirror/{repo}", tag)
            != fetch_manifest_digest(src.url, repo, tag)
        ]
        checks = verdicts(rows, args.runs)
        checks["exit"] = (proc.returncode == 0, f"scheduler exit status {proc.returncode}")
        checks["probes"] = (
            driver.probe_failures == 0,
            f"{driver.probes} probes, {driver.probe_failures} failed",
        )
        checks["mirror"] = (
            not wrong and settle.returncode == 0,
            f"destination == source for {REPOS * TAGS} tags"
            + (f"; wrong: {', '.join(wrong)}" if wrong else ""),
        )
        statuses = _statuses(logfile)
        print(table(rows))
        print(
            f"\n{len(rows) and rows[-1]['runs']} runs in {wall:.0f} s; {driver.changes} "
            f"changed tags pushed, {driver.outages} outages of the flaky source; "
            f"scheduler log {logfile.stat().st_size / 1024:.0f} KiB; runs by status: "
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        )
        for ok, text in checks.values():
            print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "samples": rows,
                        "wall_s": wall,
                        "changes": driver.changes,
                        "outages": driver.outages,
                        "statuses": statuses,
                        "checks": {k: {"ok": ok, "text": t} for k, (ok, t) in checks.items()},
                    },
                    indent=2,
                )
            )
        return 0 if all(ok for ok, _ in checks.values()) else 1
    finally:
        proxy.stop()
        src.stop()
        dst.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="syncer-soak-"))
    try:
        return soak(args, tmp)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
