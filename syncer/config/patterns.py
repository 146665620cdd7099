"""Whole namespaces and renames: `team/*` sources, `{repo}`/`{name}` destinations, tag templates.

Pure helpers: the runner lists the catalog (or the glob's namespace) and calls these to turn
one glob entry into one concrete entry per repository.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, field_validator

from syncer.errors import InvalidReference
from syncer.registry.reference import Reference, validate_tag

GLOB_CHARS = frozenset("*?[")
# {path} is the source repository's full path: what a bare `oci:PATH` destination means.
PLACEHOLDERS = ("{repo}", "{name}", "{path}")


class RepoFilter(BaseModel):
    """`repositories: {allow, deny}`: regexes over the full repository path (deny wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: list[str] = [".*"]
    deny: list[str] = []

    @field_validator("allow", "deny")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"[{i}]: invalid regex {pattern!r}: {exc}") from None
        return v

    def matches(self, repository: str) -> bool:
        if any(re.fullmatch(p, repository) for p in self.deny):
            return False
        return any(re.fullmatch(p, repository) for p in self.allow)


def is_glob(source: str) -> bool:
    return any(c in GLOB_CHARS for c in source)


def split_glob(source: str) -> tuple[str, str, str]:
    """`reg.io/team/*` -> (registry `reg.io`, fixed prefix `team`, pattern `team/*`)."""
    host, sep, path = source.partition("/")
    if not sep or not ("." in host or ":" in host or host == "localhost"):
        raise InvalidReference(
            source, "a repository glob needs a registry host, e.g. reg.io/team/*"
        )
    registry = Reference.parse(f"{host}/probe/probe").registry
    parts = path.split("/")
    first_glob = next((i for i, p in enumerate(parts) if is_glob(p)), len(parts))
    fixed = parts[:first_glob]
    if fixed:
        Reference.parse(f"{host}/{'/'.join(fixed)}")  # the fixed part must be a valid path
    return registry, "/".join(fixed), path


def glob_matches(pattern: str, repository: str) -> bool:
    # fnmatch's `*` also crosses '/', so `team/*` covers `team/a/b` too, like a prefix.
    return fnmatch.fnmatchcase(repository, pattern)


def name_below(repository: str, prefix: str) -> str:
    if prefix and repository.startswith(prefix + "/"):
        return repository[len(prefix) + 1 :]
    return repository


def has_placeholders(destination: str) -> bool:
    return any(p in destination for p in PLACEHOLDERS)


def probe_destination(destination: str) -> str:
    """A destination with each placeholder filled by a sample name, to validate its shape."""
    for placeholder in PLACEHOLDERS:
        destination = destination.replace(placeholder, "x")
    return destination


def render_destination(destination: str, repository: str, prefix: str, *, glob: bool) -> str:
    """A concrete destination for source `repository`.

    `{repo}` is its last path component, `{name}` its path below the glob's
    fixed prefix. A glob destination without placeholders is a prefix.
    """
    name = name_below(repository, prefix)
    if has_placeholders(destination):
        return (
            destination.replace("{repo}", repository.rsplit("/", 1)[-1])
            .replace("{name}", name)
            .replace("{path}", repository)
        )
    return f"{destination.rstrip('/')}/{name}" if glob else destination


def render_tag(template: str | None, tag: str) -> str:
    if template is None:
        return tag
    return validate_tag(template.replace("{tag}", tag))


def destination_tags(
    template: str | None, tags: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each listed tag's destination name, and the tags that cannot be copied, with why.

    A name the tag grammar refuses (ECR allows 300 characters, distribution 128) is that
    tag's own problem: it fails alone, and the rest of its entry proceeds.
    """
    names: dict[str, str] = {}
    invalid: dict[str, str] = {}
    for tag in tags:
        try:
            validate_tag(tag)
        except InvalidReference as e:
            invalid[tag] = f"invalid tag: {e.reason}"
            continue
        try:
            names[tag] = render_tag(template, tag)
        except InvalidReference as e:
            invalid[tag] = f"invalid destination tag (tag_template): {e.reason}"
    return names, invalid
