"""sync.yaml: the models, their validation, and resolution into work entries.

`load_config` is the only entry point the job needs. Every problem it finds is
reported in one `ConfigError`, each as `file:line: key.path: what is wrong; the fix`,
so a broken file is fixed in one round trip instead of one error at a time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from syncer.config.entry import (
    ANY_REFERRER,
    EntryConfig,
    StrictModel,
)
from syncer.config.entry import (
    Defaults as Defaults,
)
from syncer.config.events import EventsConfig
from syncer.config.filters import TagFilter as TagFilter  # re-exported: `tags:` lives in filters.py
from syncer.config.keyfile import CONFIG_DIR
from syncer.config.namespaces import glob_problem
from syncer.config.patterns import (
    RepoFilter,
    probe_destination,
    split_glob,
)
from syncer.config.schedules import When
from syncer.config.verify import VerifyConfig
from syncer.config.yamlsource import (
    Problem,
    YamlDocument,
    found_value,
    interpolate,
    problems_error,
    read_yaml,
    validation_problems,
)
from syncer.errors import ConfigError, InvalidReference
from syncer.errors import rule as _rule
from syncer.registry.options import RegistryConfig
from syncer.registry.reference import Reference
from syncer.store.references import (
    is_whole_layout,
    parse_reference,
    split_layout,
)


def normalise_registry(host: str) -> str:
    """A registry key normalised as references normalise their registry part.

    Parsing a probe reference reuses the exact rules of `Reference.parse`
    (index.docker.io -> docker.io, ...) instead of keeping a second copy.
    """
    if not host or "/" in host or host != host.strip():
        raise ValueError(f"registry key {host!r} is not a host[:port]")
    # Two path components, so Docker Hub's `library/` prefix is never added.
    ref = Reference.parse(f"{host}/probe/probe")
    if ref.repository != "probe/probe":
        # "myhost/probe/probe" is docker.io/myhost/probe/probe: no reference names `myhost`.
        raise ValueError(
            f"{host!r} is not a registry host: a reference's first component names a "
            "registry only if it has a '.' or ':port' or is 'localhost'"
        )
    return ref.registry


_DEFAULT_REGISTRY = RegistryConfig()  # frozen, so one shared instance is safe


class SyncConfig(StrictModel):
    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    registries: dict[str, RegistryConfig] = Field(default_factory=dict)
    sync: list[EntryConfig]
    events: EventsConfig | None = None  # push events into `syncer schedule`

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if v != 1 or isinstance(v, bool):
            raise _rule(
                f"found {found_value(v)}; expected `version: 1`, the only version this syncer reads"
            )
        return v

    @field_validator("defaults", "registries", mode="before")
    @classmethod
    def _empty_is_default(cls, v: Any) -> Any:
        # A key with nothing under it (`registries:`, `docker.io:`) reads as null in
        # YAML; it means "nothing special", not "wrong type".
        if isinstance(v, Mapping):
            return {k: {} if c is None else c for k, c in v.items()}
        return {} if v is None else v

    @field_validator("registries")
    @classmethod
    def _normalise_keys(cls, v: dict[str, RegistryConfig]) -> dict[str, RegistryConfig]:
        out: dict[str, RegistryConfig] = {}
        first: dict[str, str] = {}
        for key, cfg in v.items():
            try:
                host = normalise_registry(key)
            except (ValueError, InvalidReference) as e:
                reason = e.reason if isinstance(e, InvalidReference) else str(e)
                raise _rule(
                    f"{reason}; use the registry host exactly as written in references, "
                    "e.g. docker.io, ghcr.io or 127.0.0.1:5000 (put URLs in `endpoint:`)",
                    at=key,
                ) from None
            if host in out:
                raise _rule(
                    f"{key!r} and {first[host]!r} are the same registry ({host}); "
                    "merge them into one entry",
                    at=key,
                )
            out[host], first[host] = cfg, key
        return out

    @field_validator("sync")
    @classmethod
    def _not_empty(cls, v: list[EntryConfig]) -> list[EntryConfig]:
        if not v:
            raise _rule(
                "is empty, so there is nothing to do; add at least one entry with "
                "`source:` and `destination:`"
            )
        return v

    @field_validator("sync")
    @classmethod
    def _namespaced_globs(cls, v: list[EntryConfig], info: ValidationInfo) -> list[EntryConfig]:
        registries: dict[str, RegistryConfig] = info.data.get("registries") or {}
        for i, entry in enumerate(v):
            if problem := glob_problem(entry, registries.get):
                raise _rule(problem, at=i)
        return v

    def registry_config(self, registry: str) -> RegistryConfig:
        """Settings for `registry` (as in a Reference), or the defaults if not configured."""
        try:
            host = normalise_registry(registry)
        except (ValueError, InvalidReference):
            host = registry
        return self.registries.get(host, _DEFAULT_REGISTRY)

    def resolve(self) -> list[ResolvedEntry]:
        """Entries with defaults merged and references parsed (validation guarantees both)."""
        out: list[ResolvedEntry] = []
        for i, entry in enumerate(self.sync):
            template = entry.destination_template
            glob: tuple[str, str] | None = None
            if is_whole_layout(entry.source):
                src, glob = Reference(split_layout(entry.source)[0], "*"), ("", "*")
                template = template or entry.destination
            elif entry.is_glob:
                registry, prefix, pattern = split_glob(entry.source)
                src, glob = Reference(registry, pattern), (prefix, pattern)
                template = template or entry.destination
            else:
                src = parse_reference(entry.source)
            if template is not None:
                # Rendered per repository by the runner; kept readable for reports meanwhile.
                dst = parse_reference(probe_destination(template))
                dst = dataclasses.replace(dst, repository=_repository_part(template))
            else:
                dst = parse_reference(entry.destination)
            if dst.tag is None and src.tag is not None:
                dst = dataclasses.replace(dst, tag=src.tag)
            d = self.defaults
            platforms = d.platforms if entry.platforms is None else entry.platforms
            out.append(
                ResolvedEntry(
                    index=i,
                    source=src,
                    destination=dst,
                    # An entry's `tags` replaces the default wholesale: merging allow
                    # lists would silently widen what an entry asked for.
                    tags=entry.tags if entry.tags is not None else self.defaults.tags,
                    platforms="all" if platforms == "all" else tuple(platforms),
                    when=entry.when(self.defaults),
                    glob=glob,
                    dest_template=template,
                    repositories=entry.repositories or RepoFilter(),
                    tag_template=entry.tag_template,
                    referrers=self.defaults.referrers
                    if entry.referrers is None
                    else entry.referrers,
                    referrer_types=tuple(
                        (
                            entry.referrers_filter or self.defaults.referrers_filter or ANY_REFERRER
                        ).artifact_types
                    ),
                    prune=entry.prune,
                    prune_protect=tuple(entry.prune_protect),
                    prune_max=entry.prune_max,
                    verify=entry.verify or self.defaults.verify,
                )
            )
        return out


def _repository_part(template: str) -> str:
    """What follows the registry host (or the `oci:PATH:`) in a destination template."""
    if template.startswith("oci:"):
        return split_layout(template)[1]
    return template.split("/", 1)[1]


@dataclass(frozen=True)
class ResolvedEntry:
    """One `sync:` entry ready to run. `destination.tag` is filled in from the source tag."""

    index: int
    source: Reference
    destination: Reference
    tags: TagFilter
    platforms: Literal["all"] | tuple[str, ...]
    when: When | None = None
    glob: tuple[str, str] | None = None  # (fixed prefix, pattern) of a `team/*` source
    dest_template: str | None = None  # destination with {repo}/{name}, or a glob's prefix
    repositories: RepoFilter = dataclasses.field(default_factory=RepoFilter)
    tag_template: str | None = None
    referrers: bool = False
    referrer_types: tuple[str, ...] = ()  # empty: every artifact type
    prune: bool = False
    prune_protect: tuple[str, ...] = ("sha256-.*",)
    prune_max: int = 50
    verify: VerifyConfig | None = None  # signed-only mirroring (syncer.verify)


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: SyncConfig
    entries: list[ResolvedEntry]


# Example lines for missing keys: the message should show what to write.
_EXAMPLES = {
    "version": "version: 1",
    "sync": "sync: [{source: docker.io/library/alpine, destination: registry.example.com/alpine}]",
    "source": "source: docker.io/library/alpine",
    "destination": "destination: registry.example.com/mirror/alpine",
}


def load_config(path: Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, interpolate, validate and resolve sync.yaml.

    Raises one ConfigError listing every problem; `env` defaults to os.environ.
    """
    doc, config, problems = _validated(path, env, require_sync=True)
    if problems or config is None:
        raise problems_error(doc, problems)
    return LoadedConfig(path=path, config=config, entries=config.resolve())


def check_settings_file(path: Path, env: Mapping[str, str] | None = None) -> None:
    """As `load_config`, for a file the one-off commands read: one without `sync:`
    (registry settings alone) is complete. Raises one ConfigError listing every problem."""
    doc, _, problems = _validated(path, env, require_sync=False)
    if problems:
        raise problems_error(doc, problems)


def _validated(
    path: Path, env: Mapping[str, str] | None, *, require_sync: bool
) -> tuple[YamlDocument, SyncConfig | None, list[Problem]]:
    doc = read_yaml(path)
    if not isinstance(doc.data, dict):
        found = "an empty file" if doc.data is None else found_value(doc.data)
        raise ConfigError(
            f"found {found}; expected a mapping with keys version, defaults, registries, sync",
            file=str(path),
            where="1",
        )
    raw = doc.data
    no_sync = not require_sync and "sync" not in raw
    if no_sync:
        raw = {**raw, "sync": []}
    data, problems = interpolate(raw, os.environ if env is None else env)
    config: SyncConfig | None = None
    try:
        # Relative paths in the file (verify keys) start at the file's directory.
        config = SyncConfig.model_validate(data, context={CONFIG_DIR: path.parent})
    except ValidationError as e:
        failed = {p.loc for p in problems}
        for problem in validation_problems(e, SyncConfig, _EXAMPLES):
            # A value whose interpolation failed was replaced by "": its validation
            # error would only repeat the same problem in worse words.
            if not any(problem.loc[: len(f)] == f for f in failed):
                problems.append(problem)
    if no_sync:  # `sync: is empty` is about the stand-in list, not the user's file
        problems = [p for p in problems if p.loc[:1] != ("sync",)]
    return doc, config, problems
