"""The scheduler under soak: `syncer schedule` as syncer/commands/schedule.py runs it, plus a
sampler that records the process's own resources every N finished runs.

    python -m bench.soak_probe CONFIG SAMPLES.jsonl RUNS EVERY

Run by bench/soak.py, not by hand. The sampler is one task that wakes every 50 ms; its own
cost is constant, so any growth in the samples is the scheduler's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from syncer.service.logs import configure
from syncer.service.scheduler import Scheduler
from syncer.sync.runner import RunOptions


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def sample(scheduler: Scheduler) -> dict[str, Any]:
    return {
        "runs": scheduler.runs_finished,
        "t": round(time.monotonic(), 3),
        "rss_kib": _rss_kib(),
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "gc_objects": len(gc.get_objects()),
    }


async def _sampler(scheduler: Scheduler, out: TextIO, runs: int, every: int) -> None:
    while scheduler.metrics_port is None:
        await asyncio.sleep(0.05)
    out.write(json.dumps({"port": scheduler.metrics_port}) + "\n")
    next_at = 0
    while True:
        if scheduler.runs_finished >= next_at:
            out.write(json.dumps(sample(scheduler)) + "\n")
            out.flush()
            next_at += every
            if scheduler.runs_finished >= runs:
                scheduler.stop()
                return
        await asyncio.sleep(0.05)


async def main(config: Path, samples: Path, runs: int, every: int) -> int:
    configure("json", "info")
    scheduler = Scheduler(config, RunOptions(), run_now=True, grace_s=5.0)
    with samples.open("w") as out:
        task = asyncio.create_task(_sampler(scheduler, out, runs, every))
        code = await scheduler.run(metrics_port=0, metrics_host="127.0.0.1")
        task.cancel()
    return code


if __name__ == "__main__":
    cfg, out, n, step = sys.argv[1:5]
    sys.exit(asyncio.run(main(Path(cfg), Path(out), int(n), int(step))))
