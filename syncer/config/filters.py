"""`tags:` in sync.yaml: which tags of a repository source are copied.

Per-tag rules (`TagFilter.reason`) run in this order, the first that decides wins:

1. `deny`: a denied tag is never copied, whatever else matches it;
2. `always`: kept, bypassing `allow`, the version rules and `latest`;
3. `allow`;
4. the version rules, when `semver` or `latest` is set: the tag must be a version
   (`syncer.config.semver`) with an acceptable suffix (`semver_suffix`), inside the
   `semver` range, and a release unless pre-releases are included.

Then one rule over the whole list (`TagFilter.list_reasons`): `latest: N` keeps the
tags of the N highest distinct versions. `immutable` selects nothing: the runner
uses it to skip tags already present at the destination.

Every filtered tag gets a reason naming the rule, for the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    field_validator,
    model_validator,
)

from syncer.config.semver import RANGE_EXAMPLES, Range, RangeError, Version, split_tag
from syncer.config.yamlsource import found_value
from syncer.errors import rule

NOT_SEMVER = "not a semantic version"
PRERELEASE = "a pre-release (excluded unless tags.semver_prerelease: true)"


def _regex(subject: str) -> Callable[[str], str]:
    def check(pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as e:
            raise rule(
                f"invalid regex {pattern!r}: {e.msg} at position {e.pos}; expected a Python "
                f"regular expression matched against {subject} (escape literal dots as \\.)"
            ) from None
        return pattern

    return check


Regex = Annotated[str, AfterValidator(_regex("the whole tag"))]
SuffixRegex = Annotated[
    str, AfterValidator(_regex("the whole text after the version, e.g. -alpine"))
]


def _compile(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


class TagSelector(Protocol):
    def reason(self, tag: str) -> str | None:
        """Why `tag` is filtered out, or None when it is selected."""


@runtime_checkable
class ListTagSelector(TagSelector, Protocol):
    """A selector that also has rules over the whole list (e.g. keep the N highest)."""

    def list_reasons(self, selected: Sequence[str]) -> Mapping[str, str]:
        """Tags among `selected` (those `reason` kept) to drop, each with why."""


def select_tags(tags: Iterable[str], selector: TagSelector) -> tuple[list[str], dict[str, str]]:
    """Split source tags into selected ones (sorted, unique) and filtered ones with reasons.

    Per-tag rules (`reason`) run first; a `ListTagSelector` then applies its list
    rules to the survivors. Both outputs are sorted by tag, so the result depends
    only on the set of tags, never on listing order.
    """
    selected: list[str] = []
    filtered: dict[str, str] = {}
    for tag in sorted(set(tags)):
        why = selector.reason(tag)
        if why is None:
            selected.append(tag)
        else:
            filtered[tag] = why
    if isinstance(selector, ListTagSelector):
        dropped = selector.list_reasons(selected)
        if dropped:
            selected = [t for t in selected if t not in dropped]
            filtered = dict(sorted({**filtered, **dropped}.items()))
    return selected, filtered


class TagFilter(BaseModel):
    """Which tags of a repository source are copied (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[Regex] = Field(default_factory=lambda: [".*"])
    deny: list[Regex] = Field(default_factory=list)
    always: list[Regex] = Field(default_factory=list)
    semver: str | None = None
    semver_suffix: SuffixRegex | None = None
    semver_prerelease: StrictBool = False
    latest: int | None = None
    immutable: list[Regex] = Field(default_factory=list)

    _allow_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _deny_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _always_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _immutable_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _suffix_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _range: Range | None = PrivateAttr(default=None)

    @field_validator("allow")
    @classmethod
    def _allow_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise rule(
                "is empty, so no tag would be copied; remove `allow` to copy every tag, "
                "or list regexes of the tags to copy"
            )
        return v

    @field_validator("semver", mode="before")
    @classmethod
    def _semver(cls, v: Any) -> Any:
        example = 'e.g. `semver: ">=1.25 <2"`'
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # `semver: 3` is unambiguous; a float like 1.10 is not (it reads 1.1)
        if isinstance(v, float):
            raise rule(
                f"found the number {v!r} (YAML reads an unquoted 1.10 as 1.1); "
                f"quote the range, {example}"
            )
        if v is None or not isinstance(v, str):
            raise rule(f"found {found_value(v)}; expected a version range in quotes, {example}")
        try:
            Range.parse(v)
        except RangeError as e:
            raise rule(
                f"invalid range {v!r}: {e}; expected comparators separated by spaces "
                f"(all must hold) and `||` between alternatives, e.g. {RANGE_EXAMPLES}"
            ) from None
        return v

    @field_validator("latest", mode="before")
    @classmethod
    def _latest(cls, v: Any) -> Any:
        # Checked by hand: pydantic's lax int would take "2", 2.0 and true.
        example = "e.g. `latest: 3` to keep the 3 highest versions"
        if isinstance(v, bool) or not isinstance(v, int):
            raise rule(f"found {found_value(v)}; expected a whole number, {example}")
        if v < 1:
            raise rule(
                f"found {v}; expected at least 1, {example} (remove `latest` to keep "
                "every matching version)"
            )
        return v

    @model_validator(mode="after")
    def _version_keys_need_versions(self) -> TagFilter:
        if self.semver is not None or self.latest is not None:
            return self
        unused = [
            key
            for key, is_set in (
                ("semver_suffix", self.semver_suffix is not None),
                ("semver_prerelease", self.semver_prerelease),
            )
            if is_set
        ]
        if unused:
            raise rule(
                "has no effect without tags.semver or tags.latest; add e.g. "
                '`semver: ">=1"` or `latest: 3`, or remove it',
                at=unused[0],
            )
        return self

    def model_post_init(self, context: Any, /) -> None:
        # Compiled once here: reason() runs for every tag of every repository.
        self._allow_re = _compile(self.allow)
        self._deny_re = _compile(self.deny)
        self._always_re = _compile(self.always)
        self._immutable_re = _compile(self.immutable)
        if self.semver_suffix is not None:
            self._suffix_re = re.compile(self.semver_suffix)
        if self.semver is not None:
            self._range = Range.parse(self.semver)

    @property
    def immutable_patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._immutable_re

    @property
    def uses_versions(self) -> bool:
        return self.semver is not None or self.latest is not None

    def matches(self, tag: str) -> bool:
        """Whether the per-tag rules keep `tag` (`latest` needs the whole list)."""
        return self.reason(tag) is None

    def reason(self, tag: str) -> str | None:
        """Why the per-tag rules filter `tag` out, or None when they keep it."""
        for pattern in self._deny_re:
            if pattern.fullmatch(tag):
                return f"matched tags.deny {pattern.pattern!r}"
        if self._always(tag):
            return None
        if not any(p.fullmatch(tag) for p in self._allow_re):
            return "not matched by tags.allow"
        return self._version_reason(tag) if self.uses_versions else None

    def list_reasons(self, selected: Sequence[str]) -> dict[str, str]:
        """`latest: N` over tags that passed `reason`: the ones to drop, with why.

        Ranking is by distinct version, so every spelling of one version (`3.19`,
        `3.19.0`, `v3.19.0`) stays or goes together and the result never depends
        on listing order. Tags kept by `always` take no place among the N.
        """
        if self.latest is None:
            return {}
        ranked = {t: v for t in selected if not self._always(t) and (v := self._version(t))}
        top = set(sorted(set(ranked.values()), reverse=True)[: self.latest])
        if self.latest == 1:
            why = "not the highest version (tags.latest: 1)"
        else:
            why = f"not among the {self.latest} highest versions (tags.latest: {self.latest})"
        return {t: why for t, v in ranked.items() if v not in top}

    def select(self, tags: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """Selected tags (sorted, unique) and filtered tags with their reasons."""
        return select_tags(tags, self)

    def is_immutable(self, tag: str) -> bool:
        return any(p.fullmatch(tag) for p in self._immutable_re)

    def _always(self, tag: str) -> bool:
        return any(p.fullmatch(tag) for p in self._always_re)

    def _version(self, tag: str) -> Version | None:
        parsed = self._parse(tag)
        return parsed if isinstance(parsed, Version) else None

    def _parse(self, tag: str) -> Version | str:
        """The tag's version, or why it is not one these rules accept."""
        split = split_tag(tag)
        if split is None:
            return NOT_SEMVER
        version, suffix = split
        if self._suffix_re is None:
            return NOT_SEMVER if suffix else version
        if self._suffix_re.fullmatch(suffix) is None:
            wanted = f"tags.semver_suffix {self._suffix_re.pattern!r}"
            if not suffix:
                return f"has no suffix, and {wanted} does not match an empty one"
            return f"suffix {suffix!r} does not match {wanted}"
        return version

    def _version_reason(self, tag: str) -> str | None:
        version = self._parse(tag)
        if isinstance(version, str):
            return version
        if self._range is None:
            return PRERELEASE if version.is_prerelease and not self.semver_prerelease else None
        if not self._range.contains(version, include_prerelease=True):
            return f"outside tags.semver {self.semver!r}"
        if not self._range.contains(version, include_prerelease=self.semver_prerelease):
            return PRERELEASE
        return None
