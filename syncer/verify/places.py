"""Where a digest's referrers are listed, in the order the OCI 1.1 spec reads them: the
referrers API (`GET /v2/<name>/referrers/<digest>`) where the registry has it, else the
referrers tag schema, an OCI index at tag `sha256-<hex>` (what cosign 3 writes on
registries without the API, distribution 2.8 among them).

A registry that answered once that it has no API is not asked again in the run: the
API is the registry's, not the repository's, so each later digest costs one GET less.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from syncer.errors import ContentError, NotFound, Rejected, ResponseTooLarge
from syncer.registry.oci import Descriptor, ImageIndex, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.verify.artifacts import BUNDLE, MAX_REFERRERS, SIGSTORE_BUNDLE
from syncer.verify.cosign import MAX_BYTES, Reason

API = "the referrers API"


def schema_tag(digest: str) -> str:
    """The referrers tag schema's tag for `digest`: `sha256-<hex>`."""
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}"


@dataclass(frozen=True)
class Listing:
    where: str  # API, or the `sha256-<hex>` tag
    bundles: tuple[Descriptor, ...]  # the referrers that are Sigstore bundles


class Places:
    """One per run, shared by the source (to verify) and the destination (to publish)."""

    def __init__(self, client: Store) -> None:
        self.client = client
        self._without_api: set[str] = set()
        self._with_api: set[str] = set()
        # Held while a registry's answer is unknown, so concurrent digests ask it once.
        self._probing: dict[str, asyncio.Lock] = {}
        self._listed: dict[tuple[str, str], asyncio.Task[Listing]] = {}

    async def has_api(self, repo: Reference, digest: str) -> bool:
        """Whether `repo`'s registry answers the referrers API (one GET, once per run)."""
        if repo.registry in self._with_api:
            return True
        return await self._api(repo.repo(), digest, None) is not None

    async def _api(
        self, repo: Reference, digest: str, artifact_type: str | None
    ) -> list[Descriptor] | None:
        """The API's answer, or None where the registry has none (asked once per run)."""
        registry = repo.registry
        if registry not in self._with_api:
            async with self._probing.setdefault(registry, asyncio.Lock()):
                if registry in self._without_api:
                    return None
                if registry not in self._with_api:
                    found = await self.client.referrers(repo, digest, artifact_type=artifact_type)
                    (self._without_api if found is None else self._with_api).add(registry)
                    return found
        return await self.client.referrers(repo, digest, artifact_type=artifact_type)

    async def bundles(self, repo: Reference, digest: str) -> Listing:
        """The Sigstore bundles that name `digest` as subject; Rejected(TOO_LARGE) for an
        index over the limits. Asked once per digest and run."""
        key = (repo.name, digest)
        task = self._listed.get(key)
        if task is None:
            task = self._listed[key] = asyncio.ensure_future(self._bundles(repo.repo(), digest))
        return await asyncio.shield(task)

    async def _bundles(self, repo: Reference, digest: str) -> Listing:
        found = await self._api(repo, digest, SIGSTORE_BUNDLE)
        if found is not None:
            return Listing(API, tuple(_of_bundles(found)))
        tag = schema_tag(digest)
        try:
            fetched = await self.client.get_manifest(repo.with_tag(tag), limit=MAX_BYTES)
        except NotFound:
            return Listing(tag, ())
        except ResponseTooLarge:
            raise Rejected(Reason.TOO_LARGE, f"{tag} is over the limit of {MAX_BYTES}") from None
        try:
            index = parse_manifest(fetched.data, fetched.media_type, what=tag)
        except ContentError:
            return Listing(tag, ())  # judged as a referrer tag where it is copied
        if not isinstance(index, ImageIndex):
            return Listing(tag, ())
        if len(index.manifests) > MAX_REFERRERS:
            raise Rejected(
                Reason.TOO_LARGE,
                f"{tag} lists {len(index.manifests)} referrers, over {MAX_REFERRERS}",
            )
        return Listing(tag, tuple(_of_bundles(index.manifests)))


def _of_bundles(descriptors: list[Descriptor]) -> list[Descriptor]:
    return [d for d in descriptors if d.artifact_type in BUNDLE.media_types]
