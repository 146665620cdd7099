"""`syncer search TERM`: `docker search`, plus ready-to-paste sync.yaml entries.

Only argument handling, settings lookup and printing live here; the index
protocol, filters and formats are in `syncer.registry.search`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from syncer.commands import summary
from syncer.commands._common import add_config_option
from syncer.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    ConfigError,
    SyncerError,
)
from syncer.registry import search as lib
from syncer.registry.credentials import resolve
from syncer.registry.options import RegistryConfig, TlsMode
from syncer.registry.origin import credentials_allowed
from syncer.service.logs import configure

_DESCRIPTION = """\
Search Docker Hub (or another index with the v1 search API, as `docker search` uses)
for repositories whose name or description matches TERM.

The index is --index, else `registries.docker.io.search_endpoint` from sync.yaml,
else https://index.docker.io. Credentials under `registries.docker.io.credentials`
are sent (HTTP Basic) only over https, to an index on this machine, or where
`registries.docker.io.tls` is insecure or disabled."""

_EPILOG = """\
--emit-sync-entry rule: each result is mirrored to DEST_PREFIX plus its Docker Hub
path, without the implicit `library/` of official images:
  centos    -> source: docker.io/library/centos  destination: DEST_PREFIX/centos
  user/app  -> source: docker.io/user/app        destination: DEST_PREFIX/user/app
Paste the output under `sync:` in sync.yaml.

exit codes: 0 success, 1 the index could not be searched, 2 usage error (or a bad
registries.docker.io entry in the file given with -c)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "search",
        help=summary("search"),
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("term", metavar="TERM", help="what to search for, e.g. centos")
    p.add_argument(
        "--limit",
        type=_limit,
        default=lib.DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N results, 1-{lib.MAX_LIMIT} (default {lib.DEFAULT_LIMIT}); "
        "filters apply after the limit, as in docker",
    )
    p.add_argument(
        "-f",
        "--filter",
        dest="filters",
        action="append",
        default=[],
        type=_filter,
        metavar="KEY=VALUE",
        help="is-official=true|false, is-automated=true|false, or stars=N (at least N "
        "stars); repeat to combine",
    )
    p.add_argument("--no-trunc", action="store_true", help="do not truncate descriptions")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="docker's table (default) or a JSON array with untruncated fields",
    )
    out.add_argument(
        "--emit-sync-entry",
        metavar="DEST_PREFIX",
        type=_prefix,
        help="print sync.yaml entries mirroring the results below DEST_PREFIX "
        "(e.g. registry.example.com/mirror) instead of the table; see the rule below",
    )
    p.add_argument("--index", metavar="URL", help="index to search, e.g. https://index.docker.io")
    add_config_option(p, "docker.io (its index)")
    p.set_defaults(func=run)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}; expected a number") from None
    if not 1 <= value <= lib.MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"limit {value} is outside the range of [1, {lib.MAX_LIMIT}]"
        )
    return value


def _filter(text: str) -> str:
    try:
        lib.parse_filters([text])
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _prefix(text: str) -> str:
    try:
        return lib.check_dest_prefix(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    try:
        # Per-flag checks ran in argparse; this catches conflicts between flags,
        # still before anything is contacted.
        lib.parse_filters(args.filters)
        settings = _docker_io_settings(args.config)
        endpoint = settings.search_endpoint if settings else None
        index = lib.index_base(args.index or endpoint or lib.DEFAULT_INDEX)
        credentials = _credentials(settings)
        tls = settings.tls if settings is not None else TlsMode.ENABLED
        if credentials is not None and not credentials_allowed(index + lib.SEARCH_PATH, tls):
            # Searching works anonymously; leaking the password would not be undone.
            _say(f"warning: not sending docker.io credentials over plain http to {index}")
            credentials = None
        # The transport's notes (retries) go to stderr, and only errors: stdout is the
        # table or JSON a script reads, and the final error says what failed.
        configure(level="error")
        results = asyncio.run(_search(args.term, index, args.limit, credentials, settings))
    except ConfigError as exc:
        return _fail(exc, EXIT_USAGE)
    except SyncerError as exc:
        return _fail(exc, EXIT_PARTIAL)
    results = lib.apply_filters(results, args.filters)
    if args.emit_sync_entry:
        text = lib.emit_sync_entries(results, args.emit_sync_entry)
    elif args.output == "json":
        text = lib.format_json(results)
    else:
        text = lib.format_table(results, no_trunc=args.no_trunc)
    if text:
        print(text)
    return EXIT_OK


async def _search(
    term: str,
    index: str,
    limit: int,
    credentials: tuple[str, str] | None,
    settings: RegistryConfig | None,
) -> list[lib.SearchResult]:
    # With a sync.yaml, docker.io's settings (TLS, retries) apply to its index too.
    return await lib.search(
        term, index_url=index, limit=limit, credentials=credentials, config=settings
    )


def _docker_io_settings(config: str | None) -> RegistryConfig | None:
    """docker.io's `registries:` entry from sync.yaml, or None when there is none."""
    # Imported here: the sync.yaml machinery is only needed when a file is read.
    from syncer.config.registryfile import registry_settings

    return registry_settings(config).entry("docker.io")


def _credentials(settings: RegistryConfig | None) -> tuple[str, str] | None:
    """docker.io credentials from sync.yaml, else from the docker config (`docker login`)."""
    cred = resolve("docker.io", settings.credentials if settings is not None else None)
    if cred is None or not cred.username or cred.password is None:
        return None  # an identity token alone cannot do Basic auth: search anonymously
    return cred.username, cred.password.get_secret_value()


def _fail(exc: SyncerError, code: int) -> int:
    # One line whatever the message holds, so scripts can grep it.
    _say("error: " + " ".join(str(exc).split()))
    return code


def _say(message: str) -> None:
    print(f"syncer: {message}", file=sys.stderr)
