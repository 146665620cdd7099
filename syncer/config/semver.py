"""Semantic versions as Docker tags spell them, and npm-style ranges over them.

Docker tags are looser than semver.org: `3`, `3.19`, `v1.27.3`, `1.28.0-rc.1`,
`3.13.0a1` and `1.27-alpine` are all in everyday use. `split_tag` reads a tag as
a version plus whatever follows it (the suffix); callers decide which suffixes
they accept. Everything here is pure so the rules can be tested exhaustively.

Rules, in one place:
- an optional leading `v`, then 1 to 3 dot-separated numbers; missing numbers
  count as 0, so `3.19`, `3.19.0` and `v3.19.0` are the same version;
- a pre-release is a known word right after the numbers (`dev`, `alpha`/`a`,
  `beta`/`b`, `pre`/`preview`, `rc`, optionally behind `-` or `.`) with optional
  numbers: `-rc.1`, `-rc1`, `rc1`, `-beta`, `a1`. Any other word (`-alpine`,
  `-slim`) is a suffix, not a pre-release, because that is what it means on
  Docker Hub. Pre-releases order dev < alpha < beta < pre < rc < the release;
- the suffix is everything after the version and its pre-release.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

# Rank of each pre-release word; synonyms share a rank so `a1` == `alpha.1`.
_PRE_RANK = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "pre": 3, "preview": 3, "rc": 4}

_CORE = re.compile(r"v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?")
# `a`/`b` only count when digits follow (`3.13.0a1`): a bare `-b` is more likely a
# variant. The lookahead stops `-develop` or `-beta2x` being read as pre-releases.
_PRE = re.compile(
    r"[-.]?(?P<pre>(?P<word>dev|alpha|beta|preview|pre|rc)(?:[.-]?\d+)*|(?P<ab>[ab])\d+(?:\.\d+)*)"
    r"(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+")

# Sorts below every real pre-release: `<2` means below 2.0.0 and its pre-releases.
_LOWEST_PRE = (-1,)


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int = 0
    patch: int = 0
    # (rank of the pre-release word, its numbers...); () for a release.
    pre: tuple[int, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.pre)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def key(self) -> tuple[int, int, int, int, tuple[int, ...]]:
        # A release sorts after all pre-releases of the same major.minor.patch.
        return (*self.core, 0 if self.pre else 1, self.pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key < other.key

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre == _LOWEST_PRE:
            return text + "-0"
        if self.pre:
            word = next(w for w, r in _PRE_RANK.items() if r == self.pre[0])
            text += "-" + ".".join([word, *map(str, self.pre[1:])])
        return text


def _parse_pre(text: str) -> tuple[tuple[int, ...], str]:
    """The pre-release at the start of `text` as a key, and the rest of `text`."""
    m = _PRE.match(text)
    if m is None:
        return (), text
    word = (m["word"] or m["ab"]).lower()
    numbers = tuple(int(n) for n in _NUMBER.findall(m["pre"][len(word) :]))
    return (_PRE_RANK[word], *numbers), text[m.end() :]


def _split(text: str) -> tuple[Version, int, str] | None:
    """Version, number of components written, and the unparsed rest; None if no version."""
    m = _CORE.match(text)
    if m is None:
        return None
    parts = [m["major"], m["minor"], m["patch"]]
    written = sum(p is not None for p in parts)
    major, minor, patch = (int(p) if p is not None else 0 for p in parts)
    pre, rest = _parse_pre(text[m.end() :])
    return Version(major, minor, patch, pre), written, rest


def split_tag(tag: str) -> tuple[Version, str] | None:
    """`tag` as (version, suffix), e.g. `1.27.3-rc.1-alpine` -> (1.27.3-rc.1, '-alpine').

    None when the tag does not start with a version. A pre-release word right
    after the numbers is always read as a pre-release, never as the suffix.
    """
    split = _split(tag)
    if split is None:
        return None
    version, _written, rest = split
    return version, rest


def parse_tag(tag: str, suffix: re.Pattern[str] | None = None) -> Version | None:
    """The version of `tag` if its suffix is acceptable: none at all when `suffix`
    is None, else one that `suffix` matches entirely (it may match the empty string)."""
    split = split_tag(tag)
    if split is None:
        return None
    version, rest = split
    ok = rest == "" if suffix is None else suffix.fullmatch(rest) is not None
    return version if ok else None


Op = Literal["<", "<=", ">", ">=", "="]


@dataclass(frozen=True)
class Comparator:
    op: Op
    version: Version
    # Written with a pre-release by the user (not one added by expanding ~ or ^):
    # only those let pre-releases of the same major.minor.patch match, as in npm.
    explicit_pre: bool = False

    def test(self, v: Version) -> bool:
        a, b = v.key, self.version.key
        match self.op:
            case "<":
                return a < b
            case "<=":
                return a <= b
            case ">":
                return a > b
            case ">=":
                return a >= b
            case "=":
                return a == b
        raise AssertionError(self.op)  # pragma: no cover  (Literal is exhaustive)


class RangeError(ValueError):
    """A range that cannot be parsed; the message says which part and why."""


RANGE_EXAMPLES = "'>=1.25 <2', '~1.27', '^3.19', '1.4 || 1.6' or '*'"

_PLAIN: dict[str, Op] = {"<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(r"(?P<op><=|>=|<|>|=|~|\^)?\s*(?P<ver>[^\s<>=~^|]*)")


@dataclass(frozen=True)
class Range:
    """Comparator sets OR-ed by `||`; the comparators of one set are AND-ed."""

    text: str
    sets: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        if not text.strip():
            raise RangeError("the range is empty")
        if "==" in text or "!=" in text:
            raise RangeError(
                "'==' and '!=' are not operators here; write '=1.4' (or just '1.4') for one "
                "version, and drop versions with tags.deny"
            )
        sets = []
        for part in text.split("||"):
            if not part.strip():
                raise RangeError("an alternative around '||' is empty")
            sets.append(tuple(c for token in _tokens(part) for c in _comparators(*token)))
        return cls(text, tuple(sets))

    def contains(self, v: Version, *, include_prerelease: bool = False) -> bool:
        """Whether `v` is in the range.

        Pre-releases follow npm: one matches only when a comparator of the same
        set names a pre-release of the same major.minor.patch (`>=1.28.0-rc.0`),
        so `>=1.25` never picks up `2.0.0-rc.1`. `include_prerelease` drops
        that rule and compares pre-releases like any other version.
        """
        for comparators in self.sets:
            if not all(c.test(v) for c in comparators):
                continue
            if include_prerelease or not v.is_prerelease:
                return True
            if any(c.explicit_pre and c.version.core == v.core for c in comparators):
                return True
        return False


def _tokens(part: str) -> list[tuple[str, str]]:
    """(operator, version text) pairs of one comparator set."""
    out: list[tuple[str, str]] = []
    pos, end = 0, len(part)
    while True:
        while pos < end and part[pos].isspace():
            pos += 1
        if pos == end:
            return out
        m = _TOKEN.match(part, pos)
        assert m is not None  # every group is optional: it always matches
        op, ver = m["op"] or "", m["ver"]
        if not ver:
            # Only an operator can leave the version empty: `>=` at the end, `~>1`, `<>1`.
            raise RangeError(f"{op!r} is not followed by a version")
        out.append((op, ver))
        pos = m.end()


def _version(text: str) -> tuple[Version, int]:
    """A version written in a range, and how many of its numbers were written."""
    if text == "-":
        raise RangeError("hyphen ranges are not supported; write e.g. '>=1.2 <=1.4'")
    parts = text.removeprefix("v").split(".")
    wild = [i for i, p in enumerate(parts) if p in ("x", "X", "*")]
    if wild and all(p.isdigit() for p in parts[: wild[0]]):
        fix = "~" + ".".join(parts[: wild[0]]) if wild[0] else "*"
        raise RangeError(f"wildcard version {text!r} is not supported; write {fix}")
    split = _split(text)
    if split is None:
        raise RangeError(f"{text!r} is not a version")
    version, written, rest = split
    if re.match(r"\.\d", rest):
        raise RangeError(f"{text!r} has more than 3 numbers")
    if rest:
        raise RangeError(
            f"{text!r} is not a version: {rest!r} is neither a number nor a pre-release "
            "(dev, alpha, beta, pre, rc)"
        )
    return version, written


def _comparators(op: str, text: str) -> list[Comparator]:
    if text == "*":
        if op:
            raise RangeError(f"'{op}*' is not a comparator; write '*' alone for any version")
        return []
    v, written = _version(text)
    explicit = v.is_prerelease
    if op in ("", "="):
        return [Comparator("=", v, explicit)]
    if op == "<":
        # `<2` keeps 2.0.0-rc.1 out too: "below 2" means below the 2 line.
        bound = v if v.is_prerelease else Version(*v.core, _LOWEST_PRE)
        return [Comparator("<", bound, explicit)]
    if op in _PLAIN:
        return [Comparator(_PLAIN[op], v, explicit)]
    if op == "~":  # ~1 := 1.x; ~1.2 and ~1.2.3 := 1.2.x
        upper = (v.major + 1, 0, 0) if written == 1 else (v.major, v.minor + 1, 0)
    else:  # ^: the first non-zero number written may not change
        if v.major > 0 or written == 1:
            upper = (v.major + 1, 0, 0)
        elif v.minor > 0 or written == 2:
            upper = (0, v.minor + 1, 0)
        else:
            upper = (0, 0, v.patch + 1)
    return [Comparator(">=", v, explicit), Comparator("<", Version(*upper, _LOWEST_PRE))]
