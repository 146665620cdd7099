"""Image references: `[registry/]repository[:tag][@digest]`, with Docker Hub's rules.

One frozen `Reference` type is used everywhere, always in canonical form: the
registry is `docker.io` for Docker Hub whatever alias was written, and Hub's
single-component names live under `library/`. That way two spellings of the same
image compare equal and can share a dict key, a cache entry or a report line.

Parse errors are `InvalidReference` carrying the whole text the user wrote and a
reason that names the offending part, so a config error can be fixed without
knowing the grammar.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from syncer.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API_HOST})

# distribution counts the full name, registry included, against this limit.
# Image layouts (syncer.store) are named by scheme plus path in a Reference's registry.
LAYOUT_SCHEME = "oci:"
ARCHIVE_SCHEME = "oci-archive:"
DOCKER_ARCHIVE_SCHEME = "docker-archive:"  # what `docker save` writes and `docker load` reads
LAYOUT_SCHEMES = (LAYOUT_SCHEME, ARCHIVE_SCHEME, DOCKER_ARCHIVE_SCHEME)

MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128

_TAG_RULE = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_TAG = re.compile(_TAG_RULE)
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]{32,})")
# Registered algorithms have a fixed encoding; only unknown ones get the loose OCI rule.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_PORT = re.compile(
    rf"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>{_LABEL}(?:\.{_LABEL})*))(?::(?P<port>[0-9]+))?"
)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def normalize_registry(host: str) -> str:
    """Canonical registry name: lowercased, with every Docker Hub alias folded to docker.io."""
    host = host.strip().lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _host_of(host_port: str) -> str | None:
    """The host part of `host[:port]`, or None when the text is not exactly that shape."""
    if host_port.count(":") > 1 and not host_port.startswith("["):
        return host_port  # bare IPv6 literal: it cannot carry a port without brackets
    match = _HOST_PORT.fullmatch(host_port)
    if match is None:
        return None
    return match["ipv6"] or match["name"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost, with or without a port.

    Strict on purpose: this decides whether plain HTTP (and credentials over it) is
    acceptable, so anything that is not a bare host[:port], such as a netloc with
    userinfo like `localhost:1@evil.example`, is not loopback.
    """
    name = _host_of(host)
    if name is None:
        return False
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # Python 3.11 says False for ::ffff:127.0.0.1
    return address.is_loopback


def _tag_problem(tag: str) -> str | None:
    if _TAG.fullmatch(tag):
        return None
    if len(tag) > MAX_TAG_LENGTH and _TAG.fullmatch(tag[:MAX_TAG_LENGTH]):
        return f"tag {_shorten(tag)!r} is {len(tag)} characters; at most {MAX_TAG_LENGTH} allowed"
    return f"tag {_shorten(tag)!r} must match {_TAG_RULE}"


def _digest_problem(digest: str) -> str | None:
    match = _DIGEST.fullmatch(digest)
    algorithm = match[1] if match else digest.partition(":")[0]
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is not None:
        encoded = digest.partition(":")[2]
        if re.fullmatch(f"[0-9a-f]{{{length}}}", encoded):
            return None
        return f"digest {_shorten(digest, 80)!r} must be {algorithm}:<{length} lowercase hex>"
    if match is None:
        return f"digest {_shorten(digest, 80)!r} must be sha256:<64 lowercase hex> (algorithm:hex)"
    return None


def _repository_problem(repository: str) -> str | None:
    if not repository:
        return "repository name is missing"
    for part in repository.split("/"):
        if not part:
            return f"repository {repository!r} has an empty path component ('//' or a stray '/')"
        if _COMPONENT.fullmatch(part):
            continue
        if _COMPONENT.fullmatch(part.lower()):
            return f"repository path component {part!r} must be lowercase"
        return (
            f"repository path component {part!r} must be lowercase letters and digits, "
            "joined by '.', '_', '__' or dashes"
        )
    return None


def validate_tag(tag: str) -> str:
    if (problem := _tag_problem(tag)) is not None:
        raise InvalidReference(tag, problem)
    return tag


def validate_digest(digest: str) -> str:
    if (problem := _digest_problem(digest)) is not None:
        raise InvalidReference(digest, problem)
    return digest


def validate_repository(repository: str) -> str:
    if (problem := _repository_problem(repository)) is not None:
        raise InvalidReference(repository, problem)
    return repository


def _parse_registry(host_port: str, text: str) -> str:
    match = _HOST_PORT.fullmatch(host_port)
    if match is None:
        raise InvalidReference(text, f"registry host {host_port!r} is not a valid host[:port]")
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            raise InvalidReference(
                text, f"registry host {host_port!r} is not a valid IPv6 address"
            ) from None
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise InvalidReference(text, f"registry port in {host_port!r} must be 1-65535")
    return normalize_registry(host_port)


def _looks_like_host(component: str) -> bool:
    # Docker's rule: otherwise `user/app` could never mean a Hub user's repository.
    return "." in component or ":" in component or component == "localhost"


def _canonical_repository(registry: str, repository: str) -> str:
    if registry == DOCKER_HUB and repository and "/" not in repository:
        return f"library/{repository}"
    return repository


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        if not text.strip():
            raise InvalidReference(text, "empty reference")
        if any(c.isspace() for c in text):
            raise InvalidReference(text, "whitespace is not allowed in a reference")

        # '@' cannot occur in the name or the tag, so the first one starts the digest.
        rest, at, digest = text.partition("@")
        if at and not digest:
            raise InvalidReference(text, "nothing after '@': expected a digest like sha256:<hex>")
        if at and (problem := _digest_problem(digest)) is not None:
            raise InvalidReference(text, problem)

        registry, path = DOCKER_HUB, rest
        first, slash, remainder = rest.partition("/")
        if slash and _looks_like_host(first):
            registry, path = _parse_registry(first, text), remainder

        # Only a ':' after the last '/' is a tag; earlier ones belong to a host:port.
        tag: str | None = None
        colon = path.rfind(":")
        if colon > path.rfind("/"):
            path, tag = path[:colon], path[colon + 1 :]
            if not tag:
                raise InvalidReference(text, "nothing after ':': expected a tag")
            if (problem := _tag_problem(tag)) is not None:
                raise InvalidReference(text, problem)

        if not path:
            where = f" after registry {registry!r}" if slash else ""
            raise InvalidReference(text, f"repository name is missing{where}")
        path = _canonical_repository(registry, path)
        if (problem := _repository_problem(path)) is not None:
            raise InvalidReference(text, problem)
        name = f"{registry}/{path}"
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidReference(
                text,
                f"name {_shorten(name)!r} is {len(name)} characters; "
                f"at most {MAX_NAME_LENGTH} allowed",
            )
        return cls(registry, path, tag, digest if at else None)

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def api_host(self) -> str:
        """The host[:port] to contact by default: Hub's API does not live at docker.io."""
        return DOCKER_HUB_API_HOST if self.is_docker_hub else self.registry

    @property
    def name(self) -> str:
        # An image layout (`oci:PATH`, `oci-archive:FILE`, `docker-archive:FILE`, see
        # syncer.store) separates its repositories by ':', as skopeo does.
        sep = ":" if self.registry.startswith(LAYOUT_SCHEMES) else "/"
        return f"{self.registry}{sep}{self.repository}"

    @property
    def identifier(self) -> str | None:
        """What goes after /manifests/: a digest pins the content, so it wins over the tag."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        # A digest would keep pointing at the old tag's content.
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=validate_digest(digest))

    def with_repository(self, repository: str) -> Reference:
        canonical = _canonical_repository(self.registry, repository)
        return replace(self, repository=validate_repository(canonical))

    def repo(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"
