"""What the one-off commands share: `-c/--config` for registry settings, `--output
table|json`, running a coroutine over the stores, and the table printer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from syncer.config.registryfile import registry_settings
from syncer.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, ConfigError, SyncerError
from syncer.registry.client import RegistryClient
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference
from syncer.service.logs import configure
from syncer.store import Stores
from syncer.store.ocilayout import LAYOUT_FILE
from syncer.store.references import is_archive, is_layout, layout_path, parse_reference

T = TypeVar("T")
RegistryLookup = Callable[[str], RegistryConfig]
StoreCommand = Callable[[Stores, argparse.Namespace], Awaitable[Any]]


def add_config_options(p: argparse.ArgumentParser) -> None:
    add_config_option(p)
    p.add_argument("--output", choices=["table", "json"], default="table")


def add_config_option(p: argparse.ArgumentParser, what: str = "the contacted registries") -> None:
    """`-c/--config`, the same words for every command that reads `registries:` alone."""
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"sync.yaml giving the `registries:` settings of {what}, read strictly "
        "(default: $SYNCER_CONFIG or ./sync.yaml if present, where a problem is only a warning)",
    )


def store_command(p: argparse.ArgumentParser, func: StoreCommand) -> None:
    """`-c/--config` and `--output`, and `func` run over the stores when chosen."""
    add_config_options(p)
    p.set_defaults(func=lambda args: run_on_stores(args, func))


def log_for_people() -> None:
    """Warnings and errors only, as console lines on stderr even off a terminal: a one-off
    command's machine-readable output is `--output json` (and `--report`), and its log lines
    sit between human ones (the table, the `syncer:` lines), where JSON would be noise."""
    configure("console", "warning")


def fail(exc: BaseException, code: int) -> int:
    print(f"syncer: error: {exc}", file=sys.stderr)
    return code


def run_on_stores(args: argparse.Namespace, func: StoreCommand) -> int:
    """Exit 2 for bad input (found before any request), 1 for a failure, else 0.

    Only ConfigError is bad input: commands read their arguments through `argument` and
    `user_input`, so an InvalidReference or ValueError from a registry's answer mid-command
    (a tag list naming an impossible tag, malformed JSON) is that registry's failure."""
    log_for_people()
    try:
        lookup = registry_settings(args.config)
        data = asyncio.run(_with_stores(lookup, func, args))
    except ConfigError as exc:
        return fail(exc, EXIT_USAGE)
    except (SyncerError, ValueError) as exc:
        return fail(exc, EXIT_PARTIAL)
    print_data(data, args.output)
    return EXIT_OK


async def _with_stores(lookup: RegistryLookup, func: StoreCommand, args: argparse.Namespace) -> Any:
    stores = Stores(RegistryClient(lookup))  # registries and `oci:` layouts alike
    try:
        return await func(stores, args)
    finally:
        await stores.aclose()


def print_data(data: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(data, indent=2))
    else:
        print_table(data)


def print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    table = [[k.upper() for k in keys]]
    for r in rows:
        table.append([_cell(r.get(k)) for k in keys])
    widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def argument(text: str) -> Reference:
    """A reference the user typed, with `latest` when it names no tag or digest;
    ConfigError (exit 2) when it is malformed."""
    return with_default_tag(user_input(parse_reference, text))


def with_default_tag(ref: Reference) -> Reference:
    """`latest` when `ref` names no tag or digest, as docker does: the one place it is added."""
    return ref if ref.identifier is not None else ref.with_tag("latest")


def user_input(check: Callable[[str], T], text: str) -> T:
    """`check(text)` for text the user typed: its InvalidReference or ValueError is a
    ConfigError (exit 2), never mistaken for a registry's bad answer."""
    try:
        return check(text)
    except ValueError as exc:  # InvalidReference is a ValueError too
        raise ConfigError(str(exc)) from None


def open_for_writing(stores: Stores, ref: Reference) -> None:
    """A layout that `ref` writes to must exist already: a one-off `tag` or `delete`
    never creates an empty layout by mistake."""
    if is_layout(ref.registry):
        if not is_archive(ref.registry) and not (Path(layout_path(ref)) / LAYOUT_FILE).is_file():
            raise ConfigError(
                f"{layout_path(ref)}: no OCI image layout here ({LAYOUT_FILE} missing)"
            )
        stores.open_layouts([], [ref], create=True)  # an oci-archive: read-only, refused
