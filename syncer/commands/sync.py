"""`syncer sync` and `syncer check`: run the main job once."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from syncer.commands import summary
from syncer.config.settings import Settings, default_config_path, load_settings
from syncer.config.syncfile import LoadedConfig, load_config
from syncer.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, DiskError, redact_url
from syncer.registry.ratelimit import Budgets
from syncer.service.logs import configure
from syncer.sync.outcome import Outcome
from syncer.sync.progress import for_terminal
from syncer.sync.report import RunReport, check_report_path
from syncer.sync.runner import Runner, RunOptions
from syncer.sync.shard import parse_shard, shard_from_env

log = structlog.get_logger("syncer")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="sync.yaml path (default: $SYNCER_CONFIG, ./sync.yaml)")
    p.add_argument("--log-format", choices=["auto", "console", "json"], help="default: auto")
    p.add_argument("--log-level", help="debug, info, warning, error (default: info)")
    p.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in ("sync", "check"):
        p = sub.add_parser(name, help=summary(name), description=summary(name))
        add_common(p)
        if name == "sync":
            p.add_argument("--dry-run", action="store_true", help="check and print the plan only")
        p.add_argument("--report", help="write a JSON report to this path")
        p.add_argument("--only", help="only entries whose source or destination matches REGEX")
        p.add_argument("--concurrency", type=int, help="global limit of concurrent tag copies")
        p.add_argument(
            "--shard",
            help="I/N (0-based): handle only this share of the tags; default from "
            "JOB_COMPLETION_INDEX and JOB_COMPLETIONS (Kubernetes Indexed Jobs)",
        )
        p.add_argument(
            "--output",
            choices=["table", "json"],
            default="table",
            help="plan format for --dry-run / check",
        )
        p.add_argument("--metrics-file", help="write Prometheus metrics (textfile collector)")
        p.add_argument("--pushgateway", help="push Prometheus metrics to this Pushgateway URL")
        p.set_defaults(func=run, check=name == "check")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for key in ("config", "log_format", "log_level", "concurrency", "report"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "verbose", False):
        overrides["log_level"] = "debug"
    elif getattr(args, "quiet", False):
        overrides["log_level"] = "warning"
    return load_settings(**overrides)


def load(args: argparse.Namespace) -> tuple[Settings, LoadedConfig]:
    """Settings and config, or ConfigError before anything is contacted."""
    settings = settings_from(args)
    configure(settings.log_format, settings.log_level)
    return settings, load_config(default_config_path(settings))


def run(args: argparse.Namespace) -> int:
    try:
        settings, loaded = load(args)
        only = re.compile(args.only) if args.only else None
        shard = parse_shard(args.shard) if args.shard else shard_from_env(os.environ)
        if settings.report is not None:
            check_report_path(settings.report)
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except re.error as exc:
        print(f"syncer: error: --only: invalid regex: {exc}", file=sys.stderr)
        return EXIT_USAGE
    dry_run = bool(args.check or getattr(args, "dry_run", False))
    options = RunOptions(
        dry_run=dry_run,
        only=only,
        concurrency=settings.concurrency,
        shard=shard,
        budgets=Budgets(),  # the process's: one per registry
    )
    try:
        with for_terminal(quiet=args.quiet or dry_run) as progress:
            report = asyncio.run(until_terminated(Runner(loaded, options, progress=progress)))
    except ConfigError as exc:  # e.g. an unreadable ca_file, found when first used
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DiskError as exc:  # a destination layout that cannot be opened for writing
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except asyncio.CancelledError:
        print(
            "syncer: stopped by SIGTERM; no tag points at incomplete content, "
            "the next run finishes the job",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    written = settings.report is None or write_report(report, settings.report)
    publish_metrics(report, args, loaded)
    if dry_run:
        print_plan(report, args.output)
    summarize(report)
    if args.check:
        return EXIT_PARTIAL if report.pending or report.status != "ok" or not written else EXIT_OK
    return EXIT_OK if report.status == "ok" and written else EXIT_PARTIAL


def write_report(report: RunReport, path: Path) -> bool:
    """The `--report` file; False, with one error line, when it could not be written
    (its path was checked before the run, so only something changed since lands here)."""
    try:
        report.write(path)
    except OSError as exc:
        print(f"syncer: error: --report {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


async def until_terminated(runner: Runner) -> RunReport:
    """Run; on SIGTERM (Kubernetes stopping the pod) cancel cleanly instead of being killed."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await runner.run()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def publish_metrics(report: RunReport, args: argparse.Namespace, loaded: LoadedConfig) -> None:
    if not (args.metrics_file or args.pushgateway):
        return
    from syncer.service.metrics import (
        Metrics,  # prometheus_client: only runs that publish pay for it
    )

    metrics = Metrics()
    metrics.observe(report, loaded)  # the config gives schedules and the budget reserve
    if args.metrics_file:
        metrics.write_textfile(Path(args.metrics_file))
    if args.pushgateway:
        try:
            metrics.push(args.pushgateway)
        except OSError as exc:  # the sync itself succeeded; say so, don't crash
            log.error(
                "pushing metrics failed", gateway=redact_url(args.pushgateway), error=str(exc)
            )


def summarize(report: RunReport) -> None:
    t = report.totals
    log.info(
        "sync finished" if not report.dry_run else "check finished",
        status=report.status,
        duration_s=round(report.duration_s, 2),
        tags_checked=t.tags_checked,
        up_to_date=t.tags_up_to_date,
        copied=t.tags_copied,
        failed=t.tags_failed,
        deferred=t.tags_deferred,
        blobs_copied=t.blobs_copied,
        blobs_mounted=t.blobs_mounted,
        bytes_copied=t.bytes_copied,
    )
    for scope, cap in report.bandwidth.items():
        for direction in ("download", "upload"):
            if (moved := cap.get(direction)) and moved["bytes"]:
                log.info(
                    "bandwidth",
                    scope=scope,
                    direction=direction,
                    cap=cap["cap"],
                    effective_mib_s=round(moved["bytes_per_s"] / 2**20, 2),
                    limited_s=moved["limited_s"],
                )
    for entry in report.entries:
        for err in entry.errors:
            print(
                f"syncer: {entry.source} -> {entry.destination}"
                f"{' tag ' + err['tag'] if err['tag'] else ''}: {err['error']}",
                file=sys.stderr,
            )


def print_plan(report: RunReport, output: str) -> None:
    if output == "json":
        print(json.dumps(report.to_json(), indent=2))
        return
    rows = [("SOURCE", "DESTINATION", "TAG", "ACTION", "REASON")]
    for e in report.entries:
        for t in e.tags:
            # The printed plan says what a real run would do with the tag.
            action = Outcome.COPY if t.action == Outcome.PLANNED else t.action
            reason = f"{t.reason}; " if t.reason else ""
            subset = f"{reason}subset of {t.subset_of}" if t.subset_of else t.reason
            rows.append((e.source, e.destination, t.tag, action, subset))
        for err in e.errors:
            if not err["tag"]:
                rows.append((e.source, e.destination, "-", Outcome.FAILED, err["error"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
