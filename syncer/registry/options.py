"""Per-registry settings: how to reach a registry and what we may send it.

These are the values under `registries:` in sync.yaml; the transport consumes
them directly, so they live at the bottom of the dependency graph.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from syncer.errors import rule
from syncer.registry.bandwidth import BandwidthConfig


class TlsMode(StrEnum):
    ENABLED = "enabled"  # HTTPS, certificate verified
    INSECURE = "insecure"  # HTTPS, certificate not verified
    DISABLED = "disabled"  # plain HTTP


class CatalogApi(StrEnum):
    """How a registry lists the repositories of a namespace, for `team/*` globs."""

    DISTRIBUTION = "distribution"  # GET /v2/_catalog
    DOCKERHUB = "dockerhub"  # hub.docker.com /v2/namespaces/<ns>/repositories
    QUAY = "quay"  # /api/v1/repository?namespace=<ns>
    HARBOR = "harbor"  # /api/v2.0/projects/<project>/repositories


# GHCR has no `_catalog`; api.github.com lists its packages (`/orgs/<org>/packages`), but only
# for a classic personal access token, even for public packages: not the registry credential a
# mirror holds (a pull token, GITHUB_TOKEN, a fine-grained token). Not offered (docs/docker-hub.md).
GHCR = "ghcr.io"
GHCR_UNSUPPORTED = (
    "GHCR has no _catalog, and its packages are listed only by api.github.com, which takes "
    "a classic personal access token (read:packages) even for public packages, not the "
    "registry credential syncer holds for ghcr.io; listing GHCR is not supported"
)
_UNSUPPORTED_CATALOGS = {"ghcr": GHCR_UNSUPPORTED}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CredentialsConfig(_Strict):
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # A registry token (Docker's `identitytoken`), exchanged at the token realm.
    identity_token: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _both_or_neither(cls, data: Any) -> Any:
        # `${USER:-}` unset beside a password that is set would drop the name silently and
        # send a password alone: a 401 whose hint misleads. Half a login is a config error.
        if not isinstance(data, dict):
            return data
        user, password = data.get("username"), data.get("password") or data.get("password_file")
        if user == "" and password:
            raise rule(
                "is empty (an unset ${VAR:-}?) while a password is set; set both "
                "username and password, or leave both empty for anonymous access",
                at="username",
            )
        other_secret = data.get("password_file") or data.get("identity_token")
        if data.get("password") == "" and user and not other_secret:
            raise rule(
                "is empty (an unset ${VAR:-}?) while username is set; set both "
                "username and password, or leave both empty for anonymous access",
                at="password",
            )
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # `${DOCKERHUB_USER:-}` with the variable unset gives "": no credential, so the
        # docker login (if any) or anonymous access applies, never `Basic Og==`.
        return None if v == "" else v


class RateLimitConfig(_Strict):
    # Stop starting new copies from this registry when the budget would fall below this.
    min_remaining: int = Field(default=0, ge=0)
    # Longest Retry-After we sleep through; beyond it the work is deferred.
    max_wait_s: float = Field(default=60.0, ge=0)


class RetryConfig(_Strict):
    attempts: int = Field(default=5, ge=1, le=50)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=20.0, ge=0)
    # Overall deadline for one logical request including all its retries.
    deadline_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)


class RegistryConfig(_Strict):
    tls: TlsMode = TlsMode.ENABLED
    endpoint: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    credentials: CredentialsConfig | None = None
    max_concurrency: int = Field(default=8, ge=1, le=256)
    ratelimit: RateLimitConfig = RateLimitConfig()
    retry: RetryConfig = RetryConfig()
    # Above this size a blob goes up by PATCH (which can resume after a break), not in
    # one monolithic PUT.
    chunk_upload_threshold: int = Field(default=64 * 1024 * 1024, ge=1)
    # None: one PATCH streams the whole blob (as `docker push` does). A size: PATCHes of
    # that size, for a registry or proxy that limits a request's body.
    chunk_size: int | None = Field(default=None, ge=64 * 1024)
    search_endpoint: str | None = None
    # Blob bytes from or to this host, all streams together (bandwidth.py); None: no cap.
    bandwidth: BandwidthConfig | None = None
    # None: `dockerhub` on docker.io, `distribution` elsewhere (namespaces.catalog_api).
    catalog: CatalogApi | None = None
    # The listing API's base URL where it is not the registry's (hub.docker.com).
    catalog_endpoint: str | None = None

    @field_validator("catalog", mode="before")
    @classmethod
    def _catalog(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in _UNSUPPORTED_CATALOGS:
            choices = ", ".join(c.value for c in CatalogApi)
            raise rule(
                f"{v!r}: {_UNSUPPORTED_CATALOGS[v.lower()]}; name the repositories one "
                f"per entry instead, or use one of {choices}"
            )
        return v

    @field_validator("endpoint", "search_endpoint", "catalog_endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("must be a URL starting with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _tls_implied(cls, data: Any) -> Any:
        # A CA bundle or client certificate only means something over TLS, so naming one
        # asks for HTTPS, also on loopback where plain HTTP is otherwise the default.
        wants_tls = isinstance(data, dict) and (data.get("ca_file") or data.get("client_cert"))
        if wants_tls and "tls" not in data:
            return {**data, "tls": TlsMode.ENABLED}
        return data

    @model_validator(mode="after")
    def _tls_files(self) -> RegistryConfig:
        files = [k for k in ("ca_file", "client_cert", "client_key") if getattr(self, k)]
        if not files:
            return self
        if self.client_key is not None and self.client_cert is None:
            raise rule(
                "is set without client_cert; add client_cert: /path/cert.pem", at="client_key"
            )
        plain = "tls: disabled" if self.tls == TlsMode.DISABLED else None
        if self.endpoint is not None and self.endpoint.startswith("http://"):
            plain = f"endpoint {self.endpoint}"
        if plain is not None:
            raise rule(
                f"is only used over TLS, but {plain} means plain HTTP; remove {files[0]}, "
                "or reach the registry over https",
                at=files[0],
            )
        from syncer.registry.tls import tls_file_problem  # tls builds on this module

        if (problem := tls_file_problem(self)) is not None:
            key, message = problem
            raise rule(message, at=key)
        return self
