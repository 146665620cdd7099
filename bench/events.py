"""Mirror on push, measured: a real distribution source posts notifications to `syncer schedule`
(interval 1h), and 100 pushes of new tags across 10 repositories are timed until each is at
the destination with the source's digest.

    .venv/bin/python -m bench.events                 # ~1 min
    .venv/bin/python -m bench.events --json bench/events.json

A benchmark, not a timed test. The pushes: 50 single pushes, each into a random repository
with a random pause of 0.2-0.6 s, and 5 bursts of 10 tags into one repository back to back.
Two more repositories are mirrored but never pushed to: no request may reach them.
Requests are counted from the registries' access logs by User-Agent (syncer's own only).
Latency is from the end of a push (its manifest PUT answered) to the moment a second
destination process on the same storage answers a HEAD with the pushed digest (so the
poller's own requests never count as syncer's).

Side by side: one no-op `syncer sync` over the same entries at the end gives what polling
costs per run; at an interval of 5 s (the same freshness), that is 720 runs an hour.

Targets: p95 under 5 s, every tag mirrored, no request for the idle repositories.
Exit status 0 when every target holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.scenarios import log
from tests.support.fleet import app_image
from tests.support.images import fetch_manifest_digest, push
from tests.support.registry import RunningRegistry, free_port, start_registry
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[1]
REPOS, IDLE, SEEDED = 10, 2, 5  # pushed-to repositories, never pushed to, tags already there
SINGLES, BURSTS, BURST = 50, 5, 10
TOKEN = "bench-events-token"
P95_TARGET_S = 5.0
POLL_S = 5.0
_LINE = re.compile(
    rb'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
    rb'\S+ "[^"]*" "(?P<agent>[^"]*)"'
)
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m bench.events", description=doc.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config)")
    p.add_argument("--seed", type=int, default=28)
    return p.parse_args(argv)


def syncer_requests(reg: RunningRegistry) -> list[tuple[str, str]]:
    """(method, path) of every request syncer made to `reg`'s main process so far."""
    reg.process.sync()  # flush the access log up to now
    out = []
    for line in reg.process.access_log.read_bytes().splitlines():
        m = _LINE.match(line)
        if m and m["agent"].startswith(b"syncer/"):
            out.append((m["method"].decode(), m["path"].decode()))
    return out


def summary(reqs: list[tuple[str, str]]) -> dict[str, int]:
    return {
        "requests": len(reqs),
        "writes": sum(1 for m, _ in reqs if m in WRITES),
        "manifest_heads": sum(1 for m, p in reqs if m == "HEAD" and "/manifests/" in p),
        "tag_lists": sum(1 for _, p in reqs if "/tags/list" in p),
    }


class Watcher(threading.Thread):
    """Polls a reader process of the destination until each pushed tag shows its digest."""

    def __init__(self, reader: RunningRegistry) -> None:
        super().__init__(daemon=True)
        self.reader = reader
        self.pending: dict[tuple[str, str], tuple[str, float]] = {}
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def expect(self, repo: str, tag: str, digest: str, pushed_at: float) -> None:
        with self.lock:
            self.pending[(repo, tag)] = (digest, pushed_at)

    def run(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not self.stop.is_set():
                with self.lock:
                    todo = dict(self.pending)
                for (repo, tag), (digest, pushed_at) in todo.items():
                    got = fetch_manifest_digest(
                        self.reader.url, f"mirror/{repo}", tag, client=client
                    )
                    if got == digest:
                        with self.lock:
                            self.seen[(repo, tag)] = time.monotonic() - pushed_at
                            del self.pending[(repo, tag)]
                time.sleep(0.02)


def config(tmp: Path, src: RunningRegistry, dst: RunningRegistry, repos: list[str]) -> Path:
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/mirror/{r}"} for r in repos
    ]
    path = write_sync_yaml(tmp / "sync.yaml", entries, src, dst, defaults={"interval": "1h"})
    doc = yaml.safe_load(path.read_text())
    doc["events"] = {
        "senders": {
            "registry": {"kind": "distribution", "registry": src.host, "secret": "${EV_TOKEN}"}
        }
    }
    path.write_text(json.dumps(doc))
    return path


def notifications(port: int) -> dict[str, Any]:
    endpoint = {
        "name": "syncer",
        "url": f"http://127.0.0.1:{port}/events/registry",
        "headers": {"Authorization": [f"Bearer {TOKEN}"]},
        "timeout": "2s",
        "threshold": 3,
        "backoff": "1s",
    }
    return {"notifications": {"endpoints": [endpoint]}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    started: list[RunningRegistry] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        src = start_registry(tmp, "anon", extra_config=notifications(port))
        quiet = start_registry(tmp, "anon", storage=src.root)  # same storage, sends no events
        dst = start_registry(tmp, "anon")
        reader = start_registry(tmp, "anon", storage=dst.root)
        started += [src, quiet, dst, reader]
        repos = [f"bench/app{i:02d}" for i in range(REPOS + IDLE)]
        for i, repo in enumerate(repos):
            for t in range(SEEDED):
                push(quiet.url, repo, app_image(i, t), f"seed{t}")
        cfg = config(tmp, src, dst, repos)
        env = {**os.environ, "EV_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        sync = [sys.executable, "-m", "syncer", "sync", "-c", str(cfg), "-q"]
        subprocess.run(sync, cwd=ROOT, env=env, check=True)  # the mirror starts current
        before_src, before_dst = len(syncer_requests(src)), len(syncer_requests(dst))

        logfile = tmp / "scheduler.log"
        cmd = [
            sys.executable, "-m", "syncer", "schedule", "-c", str(cfg), "--log-format", "json",
            "--metrics-port", str(port),
        ]  # fmt: skip
        with logfile.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"syncer schedule did not start:\n{logfile.read_text()}")
            time.sleep(0.1)

        watcher = Watcher(reader)
        watcher.start()
        plan: list[list[tuple[int, int]]] = []  # groups of (repo index, tag number)
        counter = Counter[int]()

        def next_tag(r: int) -> tuple[int, int]:
            counter[r] += 1
            return r, counter[r]

        for _ in range(SINGLES):
            plan.append([next_tag(rng.randrange(REPOS))])
        for _ in range(BURSTS):
            r = rng.randrange(REPOS)
            plan.insert(rng.randrange(len(plan)), [next_tag(r) for _ in range(BURST)])
        log(f"events: {sum(map(len, plan))} pushes into {REPOS} repositories, {BURSTS} bursts")
        t0 = time.monotonic()
        with httpx.Client(trust_env=False, timeout=60) as client:
            for group in plan:
                for r, n in group:
                    image = app_image(r, 100 + n, gen=n)
                    push(src.url, repos[r], image, f"v{n}", client=client)
                    watcher.expect(repos[r], f"v{n}", image.digest, time.monotonic())
                if len(group) == 1:
                    time.sleep(rng.uniform(0.2, 0.6))
        pushing_s = time.monotonic() - t0
        wait_until = time.monotonic() + 60
        while watcher.pending and time.monotonic() < wait_until:
            time.sleep(0.1)
        watcher.stop.set()
        watcher.join()
        event_src = syncer_requests(src)[before_src:]
        event_dst = syncer_requests(dst)[before_dst:]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text

        proc.terminate()
        proc.wait(timeout=60)
        proc = None
        mark_src, mark_dst = len(syncer_requests(src)), len(syncer_requests(dst))
        subprocess.run(sync, cwd=ROOT, env=env, check=True)  # one polling run, nothing new
        poll_src = syncer_requests(src)[mark_src:]
        poll_dst = syncer_requests(dst)[mark_dst:]

        latencies = list(watcher.seen.values())
        idle = [p for _, p in event_src if any(f"/{r}/" in p for r in repos[REPOS:])]
        runs = sum(1 for line in logfile.read_text().splitlines() if '"event run finished"' in line)
        per_hour = 3600 / POLL_S
        result: dict[str, Any] = {
            "pushes": sum(map(len, plan)),
            "mirrored": len(latencies),
            "pushing_s": round(pushing_s, 1),
            "latency_s": {
                "p50": round(statistics.median(latencies), 2) if latencies else None,
                "p95": round(percentile(latencies, 0.95), 2) if latencies else None,
                "max": round(max(latencies), 2) if latencies else None,
            },
            "event_runs": runs,
            "events": {"source": summary(event_src), "destination": summary(event_dst)},
            "idle_repository_requests": len(idle),
            "poll_run": {"source": summary(poll_src), "destination": summary(poll_dst)},
            "poll_5s_per_hour": {
                "source": round(len(poll_src) * per_hour),
                "destination": round(len(poll_dst) * per_hour),
            },
            "received": _metric(metrics, 'syncer_events_received_total{sender="registry"}'),
            "coalesced": _metric(metrics, 'syncer_events_coalesced_total{sender="registry"}'),
        }
        verdicts = {
            "p95": (
                bool(latencies) and percentile(latencies, 0.95) < P95_TARGET_S,
                f"p95 push-to-mirrored under {P95_TARGET_S:g} s",
            ),
            "all": (len(latencies) == result["pushes"], "every pushed tag mirrored"),
            "idle": (not idle, "no request for repositories without events"),
        }
        print(render(result))
        for ok, text in verdicts.values():
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        if args.json:
            args.json.write_text(json.dumps({**result, "verdicts": verdicts}, indent=2) + "\n")
        return 0 if all(ok for ok, _ in verdicts.values()) else 1
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        for reg in started:
            reg.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def render(r: dict[str, Any]) -> str:
    lat, ev, poll, hour = r["latency_s"], r["events"], r["poll_run"], r["poll_5s_per_hour"]
    return "\n".join(
        [
            f"pushes {r['pushes']} in {r['pushing_s']} s, mirrored {r['mirrored']}, "
            f"event runs {r['event_runs']}, events received {r['received']:g} "
            f"(coalesced {r['coalesced']:g})",
            f"push-to-mirrored  p50 {lat['p50']} s  p95 {lat['p95']} s  max {lat['max']} s",
            "                        requests  writes  manifest HEADs  tag lists",
            *(
                f"{name:<22} {s['requests']:>9} {s['writes']:>7} {s['manifest_heads']:>15}"
                f" {s['tag_lists']:>10}"
                for name, s in (
                    ("events, source", ev["source"]),
                    ("events, destination", ev["destination"]),
                    ("one poll run, source", poll["source"]),
                    ("one poll run, dest.", poll["destination"]),
                )
            ),
            f"polling every {POLL_S:g} s: {hour['source']} requests/h at the source, "
            f"{hour['destination']} at the destination, with nothing pushed",
            f"requests for idle repositories: {r['idle_repository_requests']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
