"""`syncer` command line. Each subcommand lives in `syncer/commands/`.

Exit codes (documented in docs/commands.md): 0 in sync / success, 1 some work failed
or is out of sync, 2 usage or configuration error (nothing was contacted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from syncer import __version__
from syncer.commands import bundle as bundle_cmd
from syncer.commands import copy as copy_cmd
from syncer.commands import delete as delete_cmd
from syncer.commands import digest as digest_cmd
from syncer.commands import inspect as inspect_cmd
from syncer.commands import login as login_cmd
from syncer.commands import schedule as schedule_cmd
from syncer.commands import search as search_cmd
from syncer.commands import sync as sync_cmd
from syncer.commands import tag as tag_cmd
from syncer.errors import EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    # argparse itself exits with 2 (EXIT_USAGE) on a usage error.
    parser = argparse.ArgumentParser(
        prog="syncer",
        description="Mirror container images between registries, copying only what is missing.",
    )
    parser.add_argument("--version", action="version", version=f"syncer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sync_cmd.register(sub)
    schedule_cmd.register(sub)
    inspect_cmd.register(sub)
    bundle_cmd.register(sub)
    login_cmd.register(sub)
    search_cmd.register(sub)
    copy_cmd.register(sub)
    tag_cmd.register(sub)
    delete_cmd.register(sub)
    digest_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("syncer: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
