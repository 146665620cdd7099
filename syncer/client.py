"""The registry client: the distribution API in domain terms.

One `RegistryClient` serves a whole run. It keeps one `Transport` per registry
(so tokens, connection pools and concurrency limits are shared by every entry)
and speaks in `Reference`s and descriptors. It never retries: the transport does.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from syncer.auth import repository_scope
from syncer.credentials import Credential, resolve
from syncer.errors import (
    DigestMismatch,
    ManifestError,
    NotFound,
    RegistryError,
    SizeMismatch,
    TooLarge,
    UnsupportedError,
)
from syncer.models import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    parse_manifest,
    sha256_digest,
)
from syncer.pagination import next_link
from syncer.reference import Reference
from syncer.registry_config import RegistryConfig
from syncer.transport import Transport, endpoint_url
from syncer.upload import Source, UploadSession, upload_blob

RegistryConfigLookup = Callable[[str], RegistryConfig]
CredentialLookup = Callable[[str, RegistryConfig], Credential | None]

# A registry that keeps sending `Link: rel=next` forever must not keep us forever.
MAX_PAGES = 10_000


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int | None


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


def _default_credentials(registry: str, config: RegistryConfig) -> Credential | None:
    return resolve(registry, config.credentials)


def _pull(repo: Reference) -> frozenset[str]:
    return frozenset({repository_scope(repo.repository, "pull")})


def _push(repo: Reference) -> frozenset[str]:
    return frozenset({repository_scope(repo.repository, "pull,push")})


class RegistryClient:
    def __init__(
        self,
        configs: RegistryConfigLookup = lambda _r: RegistryConfig(),
        *,
        credentials: CredentialLookup = _default_credentials,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._configs = configs
        self._http_transport = http_transport
        self._credentials = credentials
        self._transports: dict[str, Transport] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for t in self._transports.values():
            await t.aclose()
        self._transports.clear()

    def transport(self, ref: Reference) -> Transport:
        t = self._transports.get(ref.registry)
        if t is None:
            config = self._configs(ref.registry)
            base = endpoint_url(ref.registry, ref.api_host, config)
            t = Transport(
                ref.registry,
                base,
                config,
                self._credentials(ref.registry, config),
                http_transport=self._http_transport,
            )
            self._transports[ref.registry] = t
        return t

    def transports(self) -> dict[str, Transport]:
        return dict(self._transports)

    # -- listing ---------------------------------------------------------------

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        path = f"/v2/{repo.repository}/tags/list?n={page_size}"
        tags: list[str] = []
        async for page in self._pages(repo, path, _pull(repo)):
            got = page.get("tags") or []
            if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
                raise ManifestError(f"{repo.name}: tag list is malformed")
            tags.extend(got)
        return tags

    async def catalog(self, registry_ref: Reference, *, page_size: int = 1000) -> list[str]:
        scopes = frozenset({"registry:catalog:*"})
        repos: list[str] = []
        async for page in self._pages(registry_ref, f"/v2/_catalog?n={page_size}", scopes):
            got = page.get("repositories") or []
            if not isinstance(got, list):
                raise ManifestError(f"{registry_ref.registry}: catalog is malformed")
            repos.extend(str(r) for r in got)
        return repos

    async def _pages(
        self, ref: Reference, path: str, scopes: frozenset[str]
    ) -> AsyncIterator[dict[str, object]]:
        t = self.transport(ref)
        seen: set[str] = set()
        next_path: str | None = path
        while next_path is not None:
            if next_path in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(
                    f"{ref.registry}: pagination loops (page {next_path!r} repeated)"
                )
            seen.add(next_path)
            resp = await t.request("GET", next_path, scopes=scopes)
            try:
                data = resp.json()
            except ValueError:
                raise RegistryError(
                    f"{ref.registry}: listing is not JSON", url=str(resp.request.url)
                ) from None
            if not isinstance(data, dict):
                raise RegistryError(f"{ref.registry}: listing is not a JSON object")
            yield data
            next_path = next_link(resp.headers.get("link"))

    # -- manifests -------------------------------------------------------------

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        """Digest and media type of a tag or digest; None when it does not exist."""
        ident = _identifier(ref)
        t = self.transport(ref)
        try:
            resp = await t.request(
                "HEAD",
                f"/v2/{ref.repository}/manifests/{ident}",
                scopes=_pull(ref),
                headers={"Accept": MANIFEST_ACCEPT},
            )
        except NotFound:
            return None
        digest = resp.headers.get("docker-content-digest")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        size = resp.headers.get("content-length")
        if not digest:
            # Rare registries omit the header on HEAD; only then spend a GET.
            got = await self.get_manifest(ref)
            return ManifestInfo(got.digest, got.media_type, len(got.data))
        return ManifestInfo(digest, media_type, int(size) if size and size.isdigit() else None)

    async def get_manifest(
        self, ref: Reference, *, limit: int = MAX_MANIFEST_BYTES
    ) -> FetchedManifest:
        """GET a manifest, streamed: one over `limit` bytes raises TooLarge unread."""
        ident = _identifier(ref)
        t = self.transport(ref)
        t.ratelimit.spend(ref.registry)  # a manifest GET is what pull quotas count
        what = f"manifest {ref}"
        async with t.stream(
            "GET",
            f"/v2/{ref.repository}/manifests/{ident}",
            scopes=_pull(ref),
            headers={"Accept": MANIFEST_ACCEPT},
        ) as resp:
            data = await _read_capped(resp, limit, what)
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if media_type == "text/html":
            raise ManifestError(f"{what}: the server answered HTML, not a manifest (a login page?)")
        digest = sha256_digest(data)
        if ref.digest and ref.digest != digest:
            raise DigestMismatch(what, ref.digest, digest)
        header = resp.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise DigestMismatch(what, header, digest)
        return FetchedManifest(data, media_type, digest)

    async def referrers(self, repo: Reference, digest: str) -> list[Descriptor] | None:
        """Artifacts that name `digest` as subject (OCI 1.1 referrers API), or None when
        the registry does not offer the API (callers then use the tag schema)."""
        t = self.transport(repo)
        try:
            resp = await t.request(
                "GET",
                f"/v2/{repo.repository}/referrers/{digest}",
                scopes=_pull(repo),
                headers={"Accept": OCI_INDEX},
            )
        except (NotFound, UnsupportedError):
            return None
        if not resp.headers.get("content-type", "").startswith(OCI_INDEX):
            return None
        index = parse_manifest(resp.content, OCI_INDEX, what=f"referrers of {digest}")
        return list(index.manifests) if isinstance(index, ImageIndex) else None

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        """PUT the exact bytes under a tag or digest; returns the digest the registry stored."""
        t = self.transport(repo)
        resp = await t.request(
            "PUT",
            f"/v2/{repo.repository}/manifests/{ident}",
            scopes=_push(repo),
            headers={"Content-Type": media_type},
            content=data,
            ok=(200, 201, 202),
        )
        digest = sha256_digest(data)
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise DigestMismatch(f"manifest pushed to {repo.name}", digest, stored)
        return digest

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        t = self.transport(repo)
        await t.request(
            "DELETE",
            f"/v2/{repo.repository}/manifests/{digest}",
            scopes=frozenset({repository_scope(repo.repository, "delete")}),
            ok=(200, 202),
        )

    # -- blobs -----------------------------------------------------------------

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        t = self.transport(repo)
        try:
            await t.request("HEAD", f"/v2/{repo.repository}/blobs/{digest}", scopes=_pull(repo))
        except NotFound:
            return False
        return True

    async def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        """Stream a blob, verifying size and digest before the last byte is handed over.

        Because the final chunk is withheld until the digest checks out, a
        consumer that forwards chunks to an upload never completes a corrupt one.
        """
        algo, _, _ = desc.digest.partition(":")
        try:
            hasher = hashlib.new(algo)
        except ValueError:
            raise ManifestError(f"blob {desc.digest}: unsupported digest algorithm") from None
        what = f"blob {desc.digest} from {repo.name}"
        t = self.transport(repo)
        pending: bytes | None = None
        total = 0
        async for chunk in t.download(
            f"/v2/{repo.repository}/blobs/{desc.digest}",
            scopes=_pull(repo),
            headers={"Accept-Encoding": "identity"},
        ):
            total += len(chunk)
            if total > desc.size:
                raise SizeMismatch(what, desc.size, total)
            hasher.update(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if total != desc.size:
            raise SizeMismatch(what, desc.size, total)
        actual = f"{algo}:{hasher.hexdigest()}"
        if actual != desc.digest:
            raise DigestMismatch(what, desc.digest, actual)
        if pending is not None:
            yield pending

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        """Cross-repo mount on the same registry. False when the registry declined."""
        t = self.transport(repo)
        scopes = _push(repo) | _pull(from_repo)
        query = urlencode({"mount": digest, "from": from_repo.repository})
        resp = await t.request(
            "POST",
            f"/v2/{repo.repository}/blobs/uploads/?{query}",
            scopes=scopes,
            ok=(201, 202),
        )
        if resp.status_code == 201:
            return True
        # 202: the registry opened an upload instead; cancel it so it does not linger.
        if resp.headers.get("location"):
            session = UploadSession(t, repo.repository, scopes)
            session.location = str(resp.request.url.join(resp.headers["location"]))
            await session.cancel()
        return False

    async def upload_blob(self, repo: Reference, desc: Descriptor, source: Source) -> None:
        """Upload a blob; `source()` opens its bytes (again, if the first try must restart)."""
        await upload_blob(self.transport(repo), repo.repository, desc, source, _push(repo))


async def _read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what}: {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"{what}: larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _identifier(ref: Reference) -> str:
    ident = ref.identifier
    if ident is None:
        raise ValueError(f"{ref.name}: a tag or digest is required")
    return ident
