"""`syncer bundle LAYOUT -o OUT.tar [--since EARLIER.tar ...]`: a layout in one tar file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from syncer.commands import summary
from syncer.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, SyncerError
from syncer.store.bundle import BundleJob, BundleResult, PackProgress, Silent, pack


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bundle", help=summary("bundle"), description=summary("bundle"))
    p.add_argument("layout", help="the layout directory, e.g. /media/usb/bundle")
    p.add_argument("-o", "--out", required=True, help="the tar to write, e.g. /media/usb/b.tar")
    p.add_argument(
        "--since",
        action="append",
        default=[],
        metavar="EARLIER.tar",
        help="leave out the blobs these earlier bundles carried (repeatable): a delta",
    )
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


class _Bar:
    """One byte bar on stderr, for a person at a terminal."""

    def __init__(self) -> None:
        # Imported here: runs off a terminal never pay for rich.
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self._bars = Progress(
            "packing",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bars.add_task("packing", total=None)

    def start(self, total_bytes: int) -> None:
        self._bars.update(self._task, total=total_bytes)
        self._bars.start()

    def advance(self, n: int) -> None:
        self._bars.advance(self._task, n)

    def stop(self) -> None:
        self._bars.stop()


def run(args: argparse.Namespace) -> int:
    bar: _Bar | Silent = Silent() if args.quiet or not sys.stderr.isatty() else _Bar()
    progress: PackProgress = bar
    job = BundleJob(Path(args.layout), Path(args.out), tuple(Path(s) for s in args.since), progress)
    try:
        result = pack(job)
    except ConfigError as exc:
        print(f"syncer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SyncerError, OSError) as exc:
        print(f"syncer: error: {exc}; no bundle written", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        bar.stop()
    _print(job, result, args.output)
    return EXIT_OK


def _print(job: BundleJob, result: BundleResult, output: str) -> None:
    data: dict[str, Any] = {"bundle": str(job.out), **dataclasses.asdict(result)}
    data["since"] = [str(p) for p in job.since]
    if output == "json":
        print(json.dumps(data, indent=2))
        return
    delta = f", {result.left_out} blobs left out (in {len(job.since)} earlier)" if job.since else ""
    print(
        f"{job.out}: {result.manifests} manifests, {result.blobs} blobs "
        f"({result.blob_bytes} bytes){delta}; {result.tar_bytes} bytes written"
    )
