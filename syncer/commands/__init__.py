"""The CLI's subcommands: argument handling and printing over the engine below.

Each module registers its subcommands with `cli.build_parser` and may import any layer.
"""

__all__ = [
    "bundle",
    "copy",
    "delete",
    "digest",
    "inspect",
    "login",
    "schedule",
    "search",
    "sync",
    "tag",
]
