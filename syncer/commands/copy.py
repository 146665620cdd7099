"""`syncer copy SRC DST`: one image, or every tag of a repository, through the sync engine.

The command builds an in-memory sync.yaml of one entry and runs the same `Runner` as
`syncer sync`, so it has the same planner, copier, retries, mounts, progress, report and
exit codes, and no copy path of its own. An up-to-date tag costs one manifest HEAD at each
end and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syncer.commands import summary
from syncer.commands._common import add_config_options, fail, log_for_people, with_default_tag
from syncer.commands.sync import print_plan, summarize, until_terminated, write_report
from syncer.config.registryfile import registry_settings
from syncer.config.syncfile import LoadedConfig, SyncConfig
from syncer.config.yamlsource import validation_problems
from syncer.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    ConfigError,
    DiskError,
    InvalidReference,
    PlatformRequired,
)
from syncer.registry.client import RegistryClient
from syncer.store import parse_reference
from syncer.store.references import is_layout, is_whole_layout, split_layout
from syncer.sync.progress import for_terminal
from syncer.sync.report import RunReport, check_report_path
from syncer.sync.runner import Runner, RunOptions

_ARGUMENT = {"source": "SRC", "destination": "DST", "platforms": "--platform"}
_SPELLING = "SRC is REGISTRY/REPO[:TAG|@DIGEST] or oci:PATH:REPO[:TAG|@DIGEST]"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "copy",
        help=summary("copy"),
        description="Copy what is missing at DST, as `syncer sync` does for one entry. "
        "An up-to-date tag costs one manifest HEAD at each end and writes nothing.",
    )
    p.add_argument("source", metavar="SRC", help="e.g. docker.io/library/alpine:3.20")
    p.add_argument(
        "destination",
        metavar="DST",
        help="e.g. registry.example.com/mirror/alpine or oci:/media/usb/images; "
        "without a tag, SRC's tag",
    )
    p.add_argument(
        "--platform",
        action="append",
        metavar="OS/ARCH[/VARIANT]",
        help="copy only these platforms of an index (repeatable); default: all",
    )
    p.add_argument("--all-tags", action="store_true", help="every tag of SRC's repository")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--report", help="write a JSON report (as `syncer sync`) to this path")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_config_options(p)
    p.set_defaults(func=run)


def one_entry(args: argparse.Namespace) -> LoadedConfig:
    """The command line as a sync.yaml of one entry; ConfigError when it makes no sense."""
    source = args.source
    try:
        src = parse_reference(source)
    except InvalidReference as exc:
        raise ConfigError(f"SRC: {exc}; {_SPELLING}") from None
    if args.all_tags and (src.tag or src.digest):
        raise ConfigError(
            f"SRC {source!r} names a tag or digest, but --all-tags copies every tag of "
            "the repository; remove it, e.g. " + str(src.repo())
        )
    if not args.all_tags and src.tag is None and src.digest is None:
        source = str(with_default_tag(src))  # as `docker pull` does
    if src.digest and not src.tag and is_whole_layout(args.destination):
        raise ConfigError(
            f"SRC {source!r} is a digest without a tag, so DST must name the tag to "
            f"write it as, e.g. {args.destination}:REPO:TAG"
        )
    if is_whole_layout(args.destination) and src.registry == split_layout(args.destination)[0]:
        # `oci:L` keeps SRC's repository path: into SRC's own layout that is SRC itself,
        # as `oci:L:app` would be (the sync.yaml check sees only the `{path}` template).
        raise ConfigError(
            f"DST {args.destination!r} is the same as the source, so nothing would be copied; "
            "point DST at another layout or registry"
        )
    entry: dict[str, Any] = {"source": source, "destination": args.destination}
    if args.platform:
        entry["platforms"] = args.platform
    try:
        config = SyncConfig.model_validate({"version": 1, "sync": [entry]})
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(_explain(p.loc, p.message) for p in validation_problems(exc, SyncConfig, {}))
        ) from None
    return LoadedConfig(path=Path("<command line>"), config=config, entries=config.resolve())


def _explain(loc: tuple[str | int, ...], message: str) -> str:
    names = [_ARGUMENT[str(part)] for part in loc if str(part) in _ARGUMENT]
    return f"{names[0]}: {message}" if names else message


def run(args: argparse.Namespace) -> int:
    try:
        loaded = one_entry(args)
        lookup = registry_settings(args.config)
        if args.report:
            check_report_path(Path(args.report))
        # Both ends' settings now: a bad entry is exit 2 before any request.
        ends = [r.registry for e in loaded.entries for r in (e.source, e.destination)]
        lookup.entries([r for r in ends if not is_layout(r)])
    except ConfigError as exc:
        return fail(exc, EXIT_USAGE)
    log_for_people()  # progress bars, the table and the `syncer:` lines say the rest
    options = RunOptions(dry_run=args.dry_run)
    try:
        with for_terminal(quiet=args.quiet or args.dry_run) as progress:
            report = asyncio.run(_copy(loaded, options, RegistryClient(lookup), progress))
    except ConfigError as exc:  # e.g. SRC names a folder that is no OCI layout
        return fail(exc, EXIT_USAGE)
    except DiskError as exc:  # e.g. DST is a layout on a read-only mount
        return fail(exc, EXIT_PARTIAL)
    except asyncio.CancelledError:
        print(
            "syncer: stopped; no tag points at incomplete content, a re-run finishes the copy",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    written = not args.report or write_report(report, Path(args.report))
    print_plan(report, args.output)
    summarize(report)
    if report.status == "ok" and written:
        return EXIT_OK
    return EXIT_USAGE if _wants_platform(report) else EXIT_PARTIAL


def _wants_platform(report: RunReport) -> bool:
    """Every failure is a docker-archive DST refusing an index: --platform is the fix."""
    errors = [e["error"] for entry in report.entries for e in entry.errors]
    return bool(errors) and not report.errors and all(map(PlatformRequired.explains, errors))


async def _copy(
    loaded: LoadedConfig, options: RunOptions, client: RegistryClient, progress: Any
) -> RunReport:
    try:
        return await until_terminated(Runner(loaded, options, client=client, progress=progress))
    finally:
        await client.aclose()
