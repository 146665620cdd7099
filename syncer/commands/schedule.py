"""`syncer schedule`: the long-running scheduler (see syncer/service/scheduler.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from syncer.commands import summary
from syncer.commands.sync import add_common, settings_from
from syncer.config.settings import default_config_path
from syncer.config.syncfile import load_config
from syncer.errors import EXIT_USAGE, ConfigError
from syncer.service.logs import configure
from syncer.sync.runner import RunOptions


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "schedule",
        help=summary("schedule"),
        description="Run sync entries on their `schedule:` (cron) or `interval:`. "
        "SIGTERM/SIGINT stop it gracefully; SIGHUP re-reads the config.",
    )
    add_common(p)
    p.add_argument("--run-now", action="store_true", help="also run every entry at start-up")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz, the status page (/, /status.json) and push events "
        "(POST /events/<sender>, see `events:` in sync.yaml) on this port",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument("--grace", type=float, default=30.0, help="seconds to let copies finish")
    p.add_argument("--concurrency", type=int, help="global limit of concurrent tag copies")
    p.set_defaults(func=run, report=None, only=None)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every `syncer` command line builds this parser,
    # and only the scheduler needs apscheduler and the metrics server.
    from syncer.service.scheduler import Scheduler, group_entries

    try:
        settings = settings_from(args)
        configure(settings.log_format, settings.log_level)
        path = default_config_path(settings)
        group_entries(load_config(path))  # fail fast, before anything starts
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scheduler = Scheduler(
        path,
        RunOptions(concurrency=settings.concurrency),
        run_now=args.run_now,
        grace_s=args.grace,
    )
    return asyncio.run(
        scheduler.run(metrics_port=args.metrics_port, metrics_host=args.metrics_host)
    )
