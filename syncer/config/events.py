"""`events:` in sync.yaml: who may post push events to `syncer schedule`, and how they queue.

Each sender is one path, `POST /events/<name>`, of one kind (how its payload reads and how it
authenticates). Secrets come from the environment (`${VAR}`) or a file, like credentials.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from syncer.config.entry import StrictModel
from syncer.config.schedules import parse_duration
from syncer.errors import ConfigError, rule

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
MAX_BODY = 1024 * 1024


class SenderKind(StrEnum):
    DISTRIBUTION = "distribution"  # registry:2 `notifications.endpoints`, bearer token
    HARBOR = "harbor"  # webhook policy, its Auth Header as a bearer token
    DOCKERHUB = "dockerhub"  # repository webhook, secret in the URL path
    GHCR = "ghcr"  # GitHub `package` / `registry_package` webhook, HMAC-SHA256 of the body
    QUAY = "quay"  # repository notification (webhook POST), secret in the URL path


# The registry each kind speaks for when `registry:` is not given.
DEFAULT_REGISTRY = {
    SenderKind.DOCKERHUB: "docker.io",
    SenderKind.GHCR: "ghcr.io",
    SenderKind.QUAY: "quay.io",
}


class SenderConfig(StrictModel):
    kind: SenderKind
    # The registry host (as written in sync.yaml sources) whose repositories its events name.
    registry: str | None = None
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @field_validator("secret", "secret_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if v == "" else v

    @model_validator(mode="after")
    def _complete(self) -> SenderConfig:
        if (self.secret is None) == (self.secret_file is None):
            raise rule(
                "needs exactly one of `secret: ${ENV_VAR}` or `secret_file: /path`; "
                "an endpoint anyone may post to would let anyone trigger syncs",
                at="secret",
            )
        if self.registry is None and self.kind not in DEFAULT_REGISTRY:
            raise rule(
                f"a {self.kind} sender needs the registry host its events are about, "
                "e.g. `registry: registry.example.com`",
                at="registry",
            )
        return self

    @property
    def host(self) -> str:
        return self.registry or DEFAULT_REGISTRY[self.kind]

    def read_secret(self) -> bytes:
        """The secret's bytes; a file loses only the trailing newline an editor adds."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        assert self.secret_file is not None
        try:
            return self.secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"events: cannot read secret_file {self.secret_file}: {exc.strerror}"
            ) from None


class EventsConfig(StrictModel):
    # Events for one entry within this window become one sync.
    settle: str = "2s"
    # Tags waiting for a sync, over all entries; beyond it senders get 503.
    queue: int = Field(default=1000, ge=1)
    senders: dict[str, SenderConfig] = Field(default_factory=dict)

    @field_validator("settle")
    @classmethod
    def _settle(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("senders")
    @classmethod
    def _names(cls, v: dict[str, SenderConfig]) -> dict[str, SenderConfig]:
        for name in v:
            if not _NAME.match(name):
                raise rule(
                    "is not a path segment; use lower case letters, digits, '-' and '_', "
                    "e.g. `registry` (posts go to /events/registry)",
                    at=name,
                )
        return v

    @property
    def settle_s(self) -> float:
        return parse_duration(self.settle)
