"""`syncer schedule` and metrics: triggers, no overlap, signals, reload, /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from syncer.cli import main
from syncer.config.schedules import cron_trigger, parse_duration
from syncer.config.syncfile import LoadedConfig, load_config
from syncer.errors import ConfigError
from syncer.service.scheduler import Scheduler
from syncer.sync.report import RunReport
from syncer.sync.runner import RunOptions
from tests.support.fleet import Fleet, assert_no_broken_tags, make_fleet, wait_for_requests
from tests.support.images import fetch_manifest_digest
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_durations_and_cron() -> None:
    assert parse_duration("45s") == 45
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    for bad in ("", "30", "5x", "-1s", "0s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    start = datetime(2026, 11, 28, 10, 7, tzinfo=UTC)
    trig = cron_trigger("*/30 * * * *")
    assert trig.get_next_fire_time(None, start) == datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
    # Cron's weekday 0 is Sunday (APScheduler's own 0 would be Monday).
    sunday = cron_trigger("0 3 * * 0").get_next_fire_time(None, start)
    assert sunday is not None and sunday.strftime("%a %H:%M") == "Sun 03:00"
    with pytest.raises(ValueError, match="5-field"):
        cron_trigger("* * *")
    with pytest.raises(ValueError, match="time zone"):
        cron_trigger("* * * * *", "Mars/Olympus")


def fleet_config(
    src: RunningRegistry, dst: RunningRegistry, tmp: Path, when: dict[str, str], repos: int = 2
) -> Path:
    fleet = make_fleet(repos, 2)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    return write_sync_yaml(tmp / "sync.yaml", entries, src, dst, defaults=when)


async def test_interval_fires_and_metrics_match(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {"interval": "400ms"})
    sched = Scheduler(cfg, RunOptions())
    task = asyncio.create_task(sched.run(metrics_port=0, metrics_host="127.0.0.1"))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if sched.runs_finished >= 2:
            break
    assert sched.runs_finished >= 2
    async with httpx.AsyncClient() as c:
        health = await c.get(f"http://127.0.0.1:{sched.metrics_port}/healthz")
        metrics = (await c.get(f"http://127.0.0.1:{sched.metrics_port}/metrics")).text
    sched.stop()
    assert await task == 0
    assert health.status_code == 200
    copied = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("syncer_tags_copied_total{")
    )
    assert copied == 4  # the first run copied all 4 tags, later runs none
    assert 'syncer_runs_total{status="ok"}' in metrics
    assert fetch_manifest_digest(dst.url, "m/fleet/app0", "1.0")


async def test_no_overlap_when_a_run_outlasts_the_interval(
    registry_factory: RegistryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {"interval": "200ms"})
    active, peak = 0, 0

    class SlowRunner:
        def __init__(self, loaded: LoadedConfig, options: RunOptions) -> None:
            pass

        async def run(self) -> RunReport:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.9)
            active -= 1
            return RunReport(started="now")

    monkeypatch.setattr("syncer.service.scheduler.Runner", SlowRunner)
    sched = Scheduler(cfg, RunOptions())
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(2.0)
    sched.stop()
    assert await task == 0
    assert peak == 1
    assert sched.skipped >= 2
    assert sched.runs_finished >= 1


async def test_reload_rejects_bad_config_and_keeps_the_old(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {"schedule": "*/5 * * * *"})
    sched = Scheduler(cfg, RunOptions())
    sched.install(load_config(cfg))
    before = [(j.id, j.name) for j in sched._aps.get_jobs()]
    good = cfg.read_text()
    cfg.write_text(good.replace("*/5 * * * *", "not a cron"))
    assert sched.reload() is False
    assert [(j.id, j.name) for j in sched._aps.get_jobs()] == before
    cfg.write_text(good.replace("*/5 * * * *", "0 * * * *"))
    assert sched.reload() is True
    assert [j.name for j in sched._aps.get_jobs()] == ["cron '0 * * * *' (UTC)"]


def test_schedule_without_any_schedule_is_a_config_error(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {})
    assert main(["schedule", "-c", str(cfg)]) == 2
    assert "interval: 30m" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        Scheduler(cfg, RunOptions()).install(load_config(cfg))


def sigterm_mid_copy(
    registry_factory: RegistryFactory, tmp_path: Path, grace: str
) -> tuple[list[dict[str, object]], int, Path, RunningRegistry, Fleet]:
    """`syncer schedule --grace GRACE`, SIGTERM once the first blob PUT arrived: (its log
    events, the fleet's complete tags at the destination, the config, dst, the fleet)."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(3, 3, app_size=4 * 1024 * 1024)
    fleet.push(src.seed_url)
    entries = [
        {"source": f"{src.host}/{r}", "destination": f"{dst.host}/m/{r}"} for r in fleet.repos
    ]
    cfg = write_sync_yaml(
        tmp_path / "sync.yaml", entries, src, dst, defaults={"schedule": "0 0 1 1 *"}
    )
    args = ["schedule", "-c", str(cfg), "--run-now", "--grace", grace, "--log-format", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncer.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_requests(dst, "PUT", "/blobs/")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # Every line is a JSON object: no raw traceback (apscheduler's) in between.
    logged = [json.loads(line) for line in err.splitlines()]
    assert "stopping: no new runs; waiting for running copies" in [e["event"] for e in logged]
    return logged, assert_no_broken_tags(fleet, dst.url, "m/"), cfg, dst, fleet


def test_sigterm_with_no_grace_cancels_and_leaves_destination_consistent(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    logged, complete, cfg, dst, fleet = sigterm_mid_copy(registry_factory, tmp_path, "0")
    assert complete < fleet.tag_count
    assert [e["event"] for e in logged if e["level"] == "warning"] == [
        "grace period over: cancelled running copies",
        "scheduled run cancelled",
    ]
    # A one-shot run afterwards finishes the job.
    assert main(["sync", "-c", str(cfg), "-q"]) == 0
    for repo, tag, item in fleet.items():
        assert fetch_manifest_digest(dst.url, f"m/{repo}", tag) == item.digest


def test_sigterm_within_grace_lets_the_running_copy_finish(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    logged, complete, *_, fleet = sigterm_mid_copy(registry_factory, tmp_path, "60")
    assert complete == fleet.tag_count
    (finished,) = [e for e in logged if e["event"] == "scheduled run finished"]
    assert (finished["copied"], finished["failed"]) == (fleet.tag_count, 0), finished
    assert not [e for e in logged if e["level"] in ("warning", "error")], logged


def test_sync_metrics_file_matches_report(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {})
    report, prom = tmp_path / "r.json", tmp_path / "m" / "syncer.prom"
    args = ["sync", "-c", str(cfg), "-q", "--report", str(report), "--metrics-file", str(prom)]
    assert main(args) == 0
    data = json.loads(report.read_text())
    text = prom.read_text()
    for entry in data["entries"]:
        for name in ("tags_copied", "blobs_copied", "bytes_copied", "tags_checked"):
            line = (
                f'syncer_{name}_total{{destination="{entry["destination"]}",'
                f'source="{entry["source"]}"}} {float(entry[name])}'
            )
            assert line in text, line


async def test_sighup_reloads_and_a_bad_config_keeps_the_old(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    cfg = fleet_config(src, dst, tmp_path, {"schedule": "*/5 * * * *"})
    sched = Scheduler(cfg, RunOptions())
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(0.2)
    names = lambda: [j.name for j in sched._aps.get_jobs()]  # noqa: E731
    assert names() == ["cron '*/5 * * * *' (UTC)"]
    good = cfg.read_text()
    cfg.write_text(good.replace("*/5 * * * *", "99 * * * *"))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.2)
    assert names() == ["cron '*/5 * * * *' (UTC)"]
    cfg.write_text(good.replace("*/5 * * * *", "0 3 * * *"))
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.2)
    assert names() == ["cron '0 3 * * *' (UTC)"]
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == 0


def test_pushgateway_receives_the_run_metrics(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pushed: list[tuple[str, str, bytes]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            pushed.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src, dst = registry_factory("anon"), registry_factory("anon")
        cfg = fleet_config(src, dst, tmp_path, {})
        gateway = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["sync", "-c", str(cfg), "-q", "--pushgateway", gateway]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert len(pushed) == 1
    method, path, body = pushed[0]
    assert (method, path) == ("PUT", "/metrics/job/syncer")
    assert b"syncer_tags_copied_total" in body
    assert b'syncer_runs_total{status="ok"} 1.0' in body
