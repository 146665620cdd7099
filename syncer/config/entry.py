"""One `sync:` entry of sync.yaml (and `defaults:`): its fields and their validation.

Split from `syncfile`, which reads the whole file and resolves entries into work.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncer.config.filters import TagFilter
from syncer.config.patterns import (
    RepoFilter,
    has_placeholders,
    is_glob,
    probe_destination,
    render_tag,
    split_glob,
)
from syncer.config.schedules import ScheduleFields
from syncer.config.verify import VerifyConfig
from syncer.config.yamlsource import found_value
from syncer.errors import InvalidReference
from syncer.errors import rule as _rule
from syncer.registry.bandwidth import BandwidthConfig
from syncer.registry.digests import algorithm_problem
from syncer.registry.reference import Reference
from syncer.store.references import is_archive, is_whole_layout, parse_reference, split_layout

Platforms = Literal["all"] | list[str]

# os/arch[/variant], lower case as in OCI image indexes (linux/arm/v7).
_PLATFORM = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?\Z")


def _check_platforms(value: Any) -> Any:
    if value == "all":
        return value
    example = "expected 'all' or a list of os/arch[/variant], e.g. [linux/amd64, linux/arm/v7]"
    if isinstance(value, str):
        fix = f"; for one platform write [{value}]" if _PLATFORM.match(value) else ""
        raise _rule(f"found {found_value(value)}; {example}{fix}")
    if not isinstance(value, list):
        raise _rule(f"found {found_value(value)}; {example}")
    if not value:
        raise _rule(f"is empty, so nothing would be copied; {example}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _PLATFORM.match(item):
            raise _rule(
                f"found {found_value(item)}; expected os/arch[/variant] in lower case, "
                "e.g. linux/amd64 or linux/arm/v7",
                at=i,
            )
    return list(dict.fromkeys(value))  # duplicates are harmless; drop them


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferrersFilter(StrictModel):
    artifact_types: list[str] = Field(min_length=1)


ANY_REFERRER = ReferrersFilter.model_construct(artifact_types=[])


class Defaults(ScheduleFields):
    tags: TagFilter = Field(default_factory=TagFilter)
    platforms: Platforms = "all"
    referrers: bool = False
    referrers_filter: ReferrersFilter | None = None
    verify: VerifyConfig | None = None
    # Blob bytes of the whole process, all hosts together; None: no cap.
    bandwidth: BandwidthConfig | None = None

    _platforms = field_validator("platforms", mode="before")(_check_platforms)


_REFERENCE_FIX = (
    "expected registry/repository[:tag|@sha256:digest], e.g. docker.io/library/alpine:3.20"
)


def _parse(text: str) -> Reference:
    try:
        return parse_reference(text)
    except InvalidReference as e:
        raise _rule(f"invalid reference {text!r}: {e.reason}; {_REFERENCE_FIX}") from None


class EntryConfig(ScheduleFields):
    source: str
    destination: str
    tags: TagFilter | None = None
    platforms: Platforms | None = None
    repositories: RepoFilter | None = None
    referrers: bool | None = None
    referrers_filter: ReferrersFilter | None = None
    tag_template: str | None = None
    prune: bool = False
    prune_protect: list[str] = Field(default_factory=lambda: ["sha256-.*"])
    prune_max: int = Field(default=50, ge=1)
    verify: VerifyConfig | None = None  # replaces `defaults.verify` wholesale

    @field_validator("tag_template")
    @classmethod
    def _tag_template(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                render_tag(v, "1.0")
            except InvalidReference as e:
                raise _rule(
                    f"{v!r} does not give a valid tag: {e.reason}; e.g. '{{tag}}-mirror'"
                ) from None
        return v

    @field_validator("prune_protect")
    @classmethod
    def _protect(cls, v: list[str]) -> list[str]:
        return RepoFilter(allow=v).allow  # same regex validation

    @property
    def is_glob(self) -> bool:
        """Many repositories: a `team/*` glob, or a whole layout (`oci:PATH`)."""
        return is_glob(self.source) or is_whole_layout(self.source)

    @property
    def destination_template(self) -> str | None:
        """The destination to render per repository; a bare `oci:PATH` keeps each
        source repository's full path."""
        if is_whole_layout(self.destination):
            return f"{split_layout(self.destination)[0]}:{{path}}"
        return self.destination if has_placeholders(self.destination) else None

    @field_validator("platforms", mode="before")
    @classmethod
    def _platforms(cls, v: Any) -> Any:
        return None if v is None else _check_platforms(v)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if is_whole_layout(v):
            split_layout(v)  # the directory must be named
        elif is_glob(v):
            try:
                split_glob(v)
            except InvalidReference as e:
                raise _rule(f"invalid repository glob {v!r}: {e.reason}") from None
        elif (digest := _parse(v).digest) and (problem := algorithm_problem(digest)):
            raise _rule(f"{problem}; pin the source by its sha256 digest instead")
        return v

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        if is_archive(v):
            raise _rule(
                f"found {v!r}, but an oci-archive is read-only; write to an oci: layout "
                "(e.g. oci:/media/usb/bundle), then pack it with `syncer bundle`"
            )
        if is_whole_layout(v):
            return v
        if _parse(probe_destination(v)).digest:
            raise _rule(
                f"found {v!r}, but a destination cannot be a digest; name a tag "
                "(or none, to reuse the source tag), e.g. registry.example.com/mirror/alpine"
            )
        return v

    @model_validator(mode="after")
    def _source_vs_destination(self) -> EntryConfig:
        if self.is_glob or self.destination_template is not None:
            template = self.destination_template or self.destination
            if _parse(probe_destination(template)).tag:
                raise _rule(
                    "names a tag, but each repository keeps its tags; remove the tag",
                    at="destination",
                )
            return self
        if self.repositories is not None:
            raise _rule("applies only to a glob source such as reg.io/team/*", at="repositories")
        src, dst = _parse(self.source), _parse(self.destination)
        if src.digest and not src.tag and not dst.tag:
            raise _rule(
                f"the source {self.source!r} is a digest without a tag, so the destination "
                f"must name the tag to push it as; write e.g. '{self.destination}:<tag>'",
                at="destination",
            )
        if dst.tag and not src.tag and not src.digest:
            raise _rule(
                f"names tag {dst.tag!r}, but the source is a whole repository whose tags "
                "keep their names; remove the tag from the destination, or name one tag "
                "in the source",
                at="destination",
            )
        same_repo = (src.registry, src.repository) == (dst.registry, dst.repository)
        if same_repo and (dst.tag or src.tag) == src.tag:
            raise _rule(
                "is the same as the source, so nothing would be copied; "
                "point the destination at another repository or registry",
                at="destination",
            )
        return self
