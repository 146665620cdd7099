"""`syncer` command line. Each subcommand lives in `syncer/commands/`.

Exit codes (documented in docs/commands.md): 0 in sync / success, 1 some work failed
or is out of sync, 2 usage or configuration error (nothing was contacted).

Only the chosen subcommand's module is imported, when argparse reaches it: a CronJob's
`syncer sync` pays for the sync engine alone, and `syncer --version` for nothing but this.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from syncer import __version__
from syncer.commands import COMMANDS

Loader = Callable[[str], ModuleType]

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # generic only to type checkers
    _SubParsers = argparse._SubParsersAction


class _Commands(_SubParsers):
    """The subcommands, listed from `COMMANDS`; each one's parser is built by its module's
    `register` when argparse first looks that command up (its `-h`, or a run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.load: Loader = importlib.import_module  # build_parser may give another
        self._built: set[str] = set()
        for name, (_, line) in COMMANDS.items():
            # A stand-in until chosen: it gives the name to argparse's choices and the line
            # to `syncer --help`.
            self.add_parser(name, help=line, add_help=False)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, list) and values and values[0] in COMMANDS:
            self._build(COMMANDS[values[0]][0])
        super().__call__(parser, namespace, values, option_string)

    def _build(self, module: str) -> None:
        if module in self._built:
            return
        listing = list(self._choices_actions)
        for name, (home, _) in COMMANDS.items():
            if home == module:
                del self._name_parser_map[name]
        self.load(f"syncer.commands.{module}").register(self)
        self._choices_actions[:] = listing  # `register` listed its commands again
        missing = [n for n, (home, _) in COMMANDS.items() if n not in self._name_parser_map]
        if missing:  # pragma: no cover - a COMMANDS entry that its module does not register
            raise RuntimeError(f"syncer.commands.{module} did not register {missing}")
        self._built.add(module)


def build_parser(load: Loader = importlib.import_module) -> argparse.ArgumentParser:
    """The whole command line; `load` imports a subcommand's module when it is chosen."""
    # argparse itself exits with 2 (EXIT_USAGE) on a usage error.
    parser = argparse.ArgumentParser(
        prog="syncer",
        description="Mirror container images between registries, copying only what is missing.",
    )
    parser.add_argument("--version", action="version", version=f"syncer {__version__}")
    commands = parser.add_subparsers(action=_Commands, dest="command", metavar="COMMAND")
    assert isinstance(commands, _Commands)
    commands.load = load
    return parser


def main(argv: Sequence[str] | None = None, load: Loader = importlib.import_module) -> int:
    parser = build_parser(load)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        from syncer.errors import EXIT_USAGE

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
