"""Image references: `[registry/]repository[:tag][@digest]`, with Docker Hub's rules.

One frozen `Reference` type is used everywhere, always in canonical form: the
registry is `docker.io` for Docker Hub whatever alias was written, and Hub's
single-component names live under `library/`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from syncer.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?"
)
_DIGEST_HEX = {"sha256": 64, "sha512": 128}
MAX_NAME = 255


def normalize_registry(host: str) -> str:
    host = host.strip().lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _split_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost, with or without a port."""
    name = _split_port(host.strip().lower())
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidReference(tag, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
    return tag


def validate_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidReference(digest, "digest must look like sha256:<64 lowercase hex>")
    algo, _, hexpart = digest.partition(":")
    want = _DIGEST_HEX.get(algo)
    if want is not None and not re.fullmatch(f"[0-9a-f]{{{want}}}", hexpart):
        raise InvalidReference(digest, f"digest must be {algo}:<{want} lowercase hex>")
    return digest


def validate_repository(repository: str, text: str | None = None) -> str:
    shown = text if text is not None else repository
    if not repository:
        raise InvalidReference(shown, "repository name is empty")
    for part in repository.split("/"):
        if not part:
            raise InvalidReference(shown, "repository has an empty path component ('//')")
        if not _COMPONENT.fullmatch(part):
            hint = (
                " must be lowercase"
                if part.lower() != part
                else (" may only contain a-z, 0-9 and single separators (. _ __ -)")
            )
            raise InvalidReference(shown, f"repository path component {part!r}{hint}")
    return repository


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if not text or text != text.strip() or any(c.isspace() for c in text):
            raise InvalidReference(
                text,
                "empty reference" if not text.strip() else "references cannot contain whitespace",
            )
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not digest:
                raise InvalidReference(text, "nothing after '@': expected a digest")
            validate_digest(digest)
        registry, path = DOCKER_HUB, rest
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            if not _HOST.fullmatch(first):
                raise InvalidReference(text, f"registry host {first!r} is not a valid host[:port]")
            registry, path = normalize_registry(first), remainder
        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
            if not tag:
                raise InvalidReference(text, "nothing after ':': expected a tag")
            validate_tag(tag)
        if registry == DOCKER_HUB and path and "/" not in path:
            path = f"library/{path}"
        validate_repository(path, text)
        if len(registry) + 1 + len(path) > MAX_NAME:
            raise InvalidReference(text, f"name is longer than {MAX_NAME} characters")
        return cls(registry, path, tag, digest)

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API_HOST if self.is_docker_hub else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str | None:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=validate_digest(digest))

    def with_repository(self, repository: str) -> Reference:
        return replace(self, repository=validate_repository(repository))

    def repo(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"
