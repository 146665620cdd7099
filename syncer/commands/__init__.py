"""The CLI's subcommands: argument handling and printing over the engine below.

Each module registers its subcommands with `cli.build_parser` and may import any layer.
`COMMANDS` lists them, so the command line shows every subcommand but imports only the
module of the one that runs (`syncer --version` and `syncer --help` import none).
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

# Subcommand -> (the module here that registers and runs it, its line in `syncer --help`),
# in the order that help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "sync": ("sync", "copy what is missing at the destinations"),
    "check": ("sync", "like sync --dry-run; exit 1 when anything is out of sync"),
    "schedule": ("schedule", "run entries on their schedules until stopped"),
    "tags": ("inspect", "list a repository's tags with digests"),
    "catalog": ("inspect", "list a registry's repositories (_catalog)"),
    "inspect": ("inspect", "show a manifest or index summary"),
    "bundle": (
        "bundle",
        "pack an OCI layout into one tar (an oci-archive) to carry across an air gap",
    ),
    "login": ("login", "verify credentials for a registry, then store them like `docker login`"),
    "logout": ("login", "remove stored credentials for a registry"),
    "search": ("search", "search Docker Hub for repositories, like `docker search`"),
    "copy": (
        "copy",
        "copy one image (or every tag with --all-tags) between registries and oci: layouts",
    ),
    "tag": ("tag", "add tags to a manifest in its repository (no blob traffic)"),
    "delete": ("delete", "delete a tag's manifest (and so every tag on that digest)"),
    "digest": ("digest", "print a manifest's digest (one HEAD: no Docker Hub pull quota)"),
}


def summary(command: str) -> str:
    """`command`'s one line, as `syncer --help` lists it and its own parser says it."""
    return COMMANDS[command][1]
