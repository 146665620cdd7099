"""The registry client: the distribution API in domain terms.

One `RegistryClient` serves a whole run. It keeps one `RegistrySession` per registry
(so tokens, connection pools and concurrency limits are shared by every entry)
and speaks in `Reference`s and descriptors. It never retries: the session does. Pull
budgets outlive it: they come from the process's `Budgets`, shared by all its runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from syncer.errors import ManifestError, NotFound, UnsupportedError
from syncer.registry.bandwidth import Bandwidth, Stream
from syncer.registry.credentials import Credential, resolve
from syncer.registry.digests import algorithm_problem, digest_of, verified, verify_digest
from syncer.registry.downloads import download
from syncer.registry.listing import CredentialLookup, Listings, RegistryConfigLookup
from syncer.registry.namespaces import ListingApis
from syncer.registry.oci import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    manifest_media_type,
    parse_manifest,
)
from syncer.registry.options import RegistryConfig
from syncer.registry.origin import endpoint_url
from syncer.registry.ratelimit import Budgets, Reservation
from syncer.registry.reference import Reference
from syncer.registry.transport.auth import repository_scope
from syncer.registry.transport.request import RACY_MANIFEST_CODES
from syncer.registry.transport.session import RegistrySession
from syncer.registry.upload import (
    BlobBytes,
    Probe,
    UploadJob,
    UploadSession,
    blob_held,
    upload_blob,
)


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
        budgets: Budgets | None = None,
    ) -> None:
        """`budgets`: the process's pull budgets; without them this client keeps its own."""
        self._configs = configs
        self._budgets = budgets or Budgets()
        self._http_transport = http_transport
        self._credentials = credentials
        self._sessions: dict[str, RegistrySession] = {}
        # Repositories (registry, name) that listed no tags this run: new ones, mostly.
        self._tagless: set[tuple[str, str]] = set()
        self._listings = Listings(self.session, configs, credentials, ListingApis(http_transport))

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for t in self._sessions.values():
            await t.aclose()
        self._sessions.clear()
        await self._listings.aclose()

    def session(self, ref: Reference) -> RegistrySession:
        t = self._sessions.get(ref.registry)
        if t is None:
            config = self._configs(ref.registry)
            base = endpoint_url(ref.registry, ref.api_host, config)
            t = RegistrySession(
                ref.registry,
                base,
                config,
                self._credentials(ref.registry, config),
                http_transport=self._http_transport,
                budget=self._budgets.get(ref.registry, config.ratelimit),
            )
            self._sessions[ref.registry] = t
        return t

    # -- pull budgets and bandwidth -------------------------------------------

    @property
    def bandwidth(self) -> Bandwidth:
        """The bandwidth caps' buckets, owned by the process's `Budgets` like pull budgets."""
        return self._budgets.bandwidth

    def reserve(self, ref: Reference, pulls: int) -> Reservation:
        """Reserve `pulls` counted GETs at `ref`'s registry for one copy (Deferred if they
        do not fit above `ratelimit.min_remaining`); pass it to `get_manifest`."""
        return self.session(ref).ratelimit.reserve(pulls)

    def ratelimits(self) -> dict[str, dict[str, Any]]:
        """Per registry that reports a pull budget (or deferred work): limit, remaining,
        reserved_unused and why work was deferred; the run report's `ratelimit` section."""
        out = {r: t.ratelimit.report() for r, t in self._sessions.items()}
        return {r: state for r, state in out.items() if state is not None}

    # -- listing ---------------------------------------------------------------

    async def list_tags(self, repo: Reference, *, page_size: int = 1000) -> list[str]:
        try:
            tags = await self._listings.list_tags(repo, page_size=page_size)
        except NotFound:
            self._tagless.add((repo.registry, repo.repository))
            raise
        if not tags:
            self._tagless.add((repo.registry, repo.repository))
        return tags

    async def catalog(
        self, registry_ref: Reference, *, page_size: int = 1000, namespace: str | None = None
    ) -> list[str]:
        """The registry's repositories; with `namespace`, only those below it, listed through
        the registry's `catalog:` API (Docker Hub, Quay, Harbor) where it has no `_catalog`.
        Each listing is made once per client and kept, and so is its failure."""
        return await self._listings.catalog(registry_ref, page_size=page_size, namespace=namespace)

    # -- manifests -------------------------------------------------------------

    async def head_manifest(self, ref: Reference) -> ManifestInfo | None:
        """Digest and media type of a tag or digest; None when it does not exist."""
        ident = _identifier(ref)
        t = self.session(ref)
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
        self,
        ref: Reference,
        *,
        pulls: Reservation | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> FetchedManifest:
        """A manifest GET, which pull quotas count: it takes one from `pulls`, the copy's
        reservation (or reserves one itself); Deferred when the budget has no room. One over
        `limit` bytes raises ResponseTooLarge while it streams in, unread."""
        ident = _identifier(ref)
        t = self.session(ref)
        (pulls or t.ratelimit.reserve(0)).take()
        resp = await t.request(
            "GET",
            f"/v2/{ref.repository}/manifests/{ident}",
            scopes=_pull(ref),
            headers={"Accept": MANIFEST_ACCEPT},
            max_bytes=limit,  # refused while it streams in, not after
        )
        data = resp.content
        what = f"manifest {ref}"
        content_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if content_type == "text/html":
            raise ManifestError(f"{what}: the server answered HTML, not a manifest (a login page?)")
        media_type = manifest_media_type(data, content_type)
        # Each digest is checked under the algorithm it names: a pinned sha512 digest and
        # the registry's (usually sha256) header may well differ in algorithm.
        digest = ref.digest or digest_of(data)
        if ref.digest:
            verify_digest(what, data, ref.digest)
        header = resp.headers.get("docker-content-digest")
        if header and not algorithm_problem(header):  # an unknown one proves nothing either way
            verify_digest(what, data, header)
        return FetchedManifest(data, media_type, digest)

    async def referrers(
        self, repo: Reference, digest: str, *, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """Artifacts that name `digest` as subject (OCI 1.1 referrers API), or None when
        the registry does not offer the API (callers then use the tag schema).

        `artifact_type` asks the registry to filter; one that does not is filtered here, so
        the answer holds only that type either way."""
        t = self.session(repo)
        query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        try:
            resp = await t.request(
                "GET",
                f"/v2/{repo.repository}/referrers/{digest}{query}",
                scopes=_pull(repo),
                headers={"Accept": OCI_INDEX},
            )
        except (NotFound, UnsupportedError):
            return None
        if not resp.headers.get("content-type", "").startswith(OCI_INDEX):
            return None
        index = parse_manifest(resp.content, OCI_INDEX, what=f"referrers of {digest}")
        if not isinstance(index, ImageIndex):
            return None
        return [d for d in index.manifests if artifact_type in (None, d.artifact_type)]

    async def put_manifest(self, repo: Reference, ident: str, data: bytes, media_type: str) -> str:
        """PUT the exact bytes under a tag or digest; returns the digest the registry stored."""
        t = self.session(repo)
        resp = await t.request(
            "PUT",
            f"/v2/{repo.repository}/manifests/{ident}",
            scopes=_push(repo),
            headers={"Content-Type": media_type},
            content=data,
            ok=(200, 201, 202),
            retry_codes=RACY_MANIFEST_CODES,
        )
        what = f"manifest pushed to {repo.name}"
        digest = ident if ":" in ident else digest_of(data)  # tags never contain ':'
        stored = resp.headers.get("docker-content-digest")
        if stored and not algorithm_problem(stored):
            verify_digest(what, data, stored)
        return digest

    async def delete_manifest(self, repo: Reference, digest: str) -> None:
        t = self.session(repo)
        try:
            await t.request(
                "DELETE",
                f"/v2/{repo.repository}/manifests/{digest}",
                scopes=frozenset({repository_scope(repo.repository, "delete")}),
                ok=(200, 202),
            )
        except NotFound:
            # A retry whose first attempt deleted it (the answer was lost) meets 404: what
            # was asked for is done if the digest is gone. Checked, never assumed.
            if await self.head_manifest(repo.with_digest(digest)) is not None:
                raise

    # -- blobs -----------------------------------------------------------------

    async def blob_exists(self, repo: Reference, digest: str) -> bool:
        return await blob_held(self.session(repo), repo.repository, digest, _pull(repo))

    async def read_blob(self, repo: Reference, desc: Descriptor) -> AsyncIterator[bytes]:
        """Stream a blob, verifying size and digest before the last byte is handed over.

        Because the final chunk is withheld until the digest checks out, a
        consumer that forwards chunks to an upload never completes a corrupt one.
        """
        what = f"blob {desc.digest} from {repo.name}"
        t = self.session(repo)
        chunks = download(
            t,
            f"/v2/{repo.repository}/blobs/{desc.digest}",
            scopes=_pull(repo),
            headers={"Accept-Encoding": "identity"},
        )
        stream = Stream("download", t.registry, t.config.bandwidth, desc.size)
        capped = self.bandwidth.throttle(stream, chunks)
        async for chunk in verified(what, desc.digest, desc.size, capped):
            yield chunk

    async def mount_blob(self, repo: Reference, digest: str, from_repo: Reference) -> bool:
        """Cross-repo mount on the same registry. False when the registry declined."""
        t = self.session(repo)
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

    async def upload_blob(self, repo: Reference, desc: Descriptor, open_bytes: BlobBytes) -> bool:
        """Upload a blob unless `repo` holds it (False); `open_bytes()` opens its bytes (again,
        if the first try must restart). The bandwidth caps pace the pulling of those bytes,
        so nothing waits in a buffer."""
        t = self.session(repo)
        stream = Stream("upload", t.registry, t.config.bandwidth, desc.size)

        def capped() -> AsyncIterator[bytes]:
            return self.bandwidth.throttle(stream, open_bytes())

        # A repository that listed no tags holds few of the blobs it is sent, if any (a run
        # that died before its first tag left some): ask with the upload's own POST rather
        # than a HEAD before it. Elsewhere most blobs asked about are there (a new tag of an
        # image shares its base layers): a HEAD, because a registry that ignores `mount`
        # (ECR) would answer the POST with an upload and take the bytes again.
        tagless = (repo.registry, repo.repository) in self._tagless
        probe = Probe.MOUNT if tagless else Probe.HEAD
        return await upload_blob(UploadJob(t, repo.repository, desc, capped, _push(repo), probe))


def _identifier(ref: Reference) -> str:
    ident = ref.identifier
    if ident is None:
        raise ValueError(f"{ref.name}: a tag or digest is required")
    return ident
