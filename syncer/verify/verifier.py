"""Verify a digest's cosign signatures at the source before anything of it is copied,
and judge what a referrer tag of a verified digest holds before it is copied with it.

Where signatures are looked for, in order: cosign 3 bundles listed by the referrers API
or, where the registry has none, by the `sha256-<hex>` index (`places.py`; one GET, the
API's 404 once per registry and run); then the legacy `sha256-<hex>.sig` tag. Cost per
verified digest: that listing, then per bundle one GET of its manifest and one of its
blob, until one verifies; the `.sig` tag (one GET, then one per payload) only when no
bundle did. Signatures that cannot verify (too large, not shaped like any trusted key's)
are judged without fetching their payload. Each attestation the policy names is looked
for the same way (bundles, then `.att`). A referrer is judged on the manifest already
fetched to copy it; a referrers index costs one GET per child, which the copy reuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from syncer.config.verify import CosignPolicy, VerifyConfig
from syncer.errors import ContentError, NotFound, Rejected, ResponseTooLarge
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import Descriptor, ImageIndex, ImageManifest, parse_manifest
from syncer.registry.ratelimit import Reservation
from syncer.registry.reference import Reference
from syncer.store import Store
from syncer.verify.artifacts import (
    ANY,
    ATTESTATION,
    BUNDLE,
    SIGNATURE,
    ArtifactKind,
    artifact_flaw,
    child_flaw,
    expected_kind,
    index_flaw,
    refusal,
)
from syncer.verify.bundle import COSIGN_SIGN, judge_bundle, judge_envelope
from syncer.verify.cosign import (
    MAX_BYTES,
    MAX_SIGNATURES,
    SIMPLE_SIGNING,
    Reason,
    decode_signature,
    parse_payload,
    signature_tag,
)
from syncer.verify.places import Places

PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"

_RANK = list(Reason)


@dataclass(frozen=True)
class Proof:
    """One verified signature or attestation: its manifest travels with the tag."""

    manifest: FetchedManifest
    tag: str | None = None  # legacy: `sha256-<hex>.sig` / `.att`; None: a referrer by digest
    descriptor: Descriptor | None = None  # a referrer: how an index lists it


@dataclass(frozen=True)
class Signed:
    """A digest with an accepted signature (first) and the attestations the policy asks."""

    subject: str
    proofs: tuple[Proof, ...]

    @property
    def tag(self) -> str | None:
        return self.proofs[0].tag

    @property
    def manifest(self) -> FetchedManifest:
        return self.proofs[0].manifest


class Verifier:
    """One per run. A digest reached by several tags is verified once."""

    def __init__(self, client: Store, places: Places | None = None) -> None:
        self.client = client
        self.places = places or Places(client)
        self._done: dict[tuple[str, str, int], asyncio.Task[Signed]] = {}
        # Referrer manifests fetched by digest to verify, reused when they are copied.
        self._seen: dict[tuple[str, str], FetchedManifest] = {}

    async def verify(self, repo: Reference, digest: str, policy: VerifyConfig) -> Signed:
        """The accepted signature of `digest` in `repo`, or raises Rejected."""
        key = (repo.name, digest, id(policy))
        task = self._done.get(key)
        if task is None:
            task = asyncio.ensure_future(self._verify(repo.repo(), digest, policy))
            self._done[key] = task
        return await asyncio.shield(task)

    async def _verify(self, repo: Reference, digest: str, policy: VerifyConfig) -> Signed:
        """Bundles (referrers API, else the `sha256-<hex>` index) first, then the `.sig`
        tag; then each attestation the policy names, the bundle form before `.att`."""
        keys = policy.cosign
        proofs = [await self._find(repo, digest, keys, COSIGN_SIGN, self._legacy_signature)]
        for kind in policy.attestations:
            proofs.append(await self._find(repo, digest, keys, kind, self._legacy_attestation))
        return Signed(digest, tuple(proofs))

    async def _find(
        self,
        repo: Reference,
        digest: str,
        policy: CosignPolicy,
        predicate: str,
        legacy: Callable[[Reference, str, CosignPolicy, str], Awaitable[Proof]],
    ) -> Proof:
        refusals: list[Rejected] = []
        listing = await self.places.bundles(repo, digest)
        for desc in _likely_first(listing.bundles, predicate):
            try:
                return await self._bundle(repo, digest, desc, policy, predicate)
            except Rejected as exc:
                refusals.append(exc)
        try:
            return await legacy(repo, digest, policy, predicate)
        except Rejected as exc:
            refusals.append(exc)
        raise min(refusals, key=lambda r: _RANK.index(Reason(r.reason)))

    async def _bundle(
        self, repo: Reference, digest: str, desc: Descriptor, policy: CosignPolicy, predicate: str
    ) -> Proof:
        """The referrer `desc` when its one layer is a bundle that verifies (judge_bundle)."""
        name = desc.digest
        if desc.size > MAX_BYTES:
            raise Rejected(Reason.TOO_LARGE, f"referrer {name} is over the limit of {MAX_BYTES}")
        fetched = await self._fetch(repo.with_digest(name), f"referrer {name}")
        self._seen[(repo.name, name)] = fetched
        manifest = _parse(fetched, name)
        flaw = artifact_flaw(manifest, BUNDLE, digest, need_subject=True)
        if flaw is None and len(manifest.layers) != 1:
            flaw = f"an artifact of {len(manifest.layers)} layers"
        if flaw is not None:
            raise Rejected(Reason.IMPURE, refusal(name, flaw, BUNDLE, digest))
        data = await self._payload(repo, manifest.layers[0])
        judge_bundle(data, digest, policy, predicate)
        return Proof(fetched, None, _listed_as(fetched, manifest))

    async def _legacy_signature(
        self, repo: Reference, digest: str, policy: CosignPolicy, _predicate: str
    ) -> Proof:
        tag = signature_tag(digest)
        where = f"{repo.name}:{tag}"
        fetched = await self._fetch(repo.with_tag(tag), where, Reason.NO_SIGNATURE)
        manifest = _parse(fetched, tag)
        layers = [d for d in manifest.layers if d.media_type == SIMPLE_SIGNING]
        if not layers:
            raise Rejected(Reason.NO_SIGNATURE, f"{tag} holds no {SIMPLE_SIGNING} layer")
        self._countable(tag, layers)
        # The manifest travels whole with the tag, so all of it must be signatures.
        flaw = artifact_flaw(manifest, SIGNATURE, digest, need_subject=False)
        if flaw is not None:
            raise Rejected(Reason.IMPURE, refusal(tag, flaw, SIGNATURE, digest))
        refusals: list[Rejected] = []
        for layer in layers:
            try:
                await self._one(repo, digest, layer, policy)
            except Rejected as exc:
                refusals.append(exc)
                continue
            return Proof(fetched, tag)
        raise min(refusals, key=lambda r: _RANK.index(Reason(r.reason)))

    async def _legacy_attestation(
        self, repo: Reference, digest: str, policy: CosignPolicy, predicate: str
    ) -> Proof:
        """cosign's `.att` tag: one DSSE envelope per layer (specs/ATTESTATION_SPEC.md)."""
        tag = signature_tag(digest).removesuffix(".sig") + ".att"
        missing = f"no {predicate} bundle verified, and {repo.name}:{tag}"
        fetched = await self._fetch(repo.with_tag(tag), missing, Reason.NO_ATTESTATION)
        manifest = _parse(fetched, tag)
        flaw = artifact_flaw(manifest, ATTESTATION, digest, need_subject=False)
        if flaw is not None:
            raise Rejected(Reason.IMPURE, refusal(tag, flaw, ATTESTATION, digest))
        self._countable(tag, manifest.layers)
        refusals: list[Rejected] = []
        for layer in manifest.layers:
            try:
                data = await self._payload(repo, layer)
                judge_envelope(data, digest, policy, predicate)
            except Rejected as exc:
                refusals.append(exc)
                continue
            return Proof(fetched, tag)
        raise min(refusals, key=lambda r: _RANK.index(Reason(r.reason)))

    async def _fetch(
        self, ref: Reference, absent: str, reason: Reason = Reason.NOT_REFERRER
    ) -> FetchedManifest:
        """The manifest at `ref`; Rejected(`reason`, "`absent` does not exist") on a 404."""
        try:
            return await self.client.get_manifest(ref, limit=MAX_BYTES)
        except NotFound:
            raise Rejected(reason, f"{absent} does not exist") from None
        except ResponseTooLarge:
            raise Rejected(
                Reason.TOO_LARGE, f"manifest {ref} is over the limit of {MAX_BYTES}"
            ) from None

    async def _payload(self, repo: Reference, layer: Descriptor) -> bytes:
        if layer.size > MAX_BYTES:
            raise Rejected(
                Reason.TOO_LARGE,
                f"payload {layer.digest} is {layer.size} bytes, over the limit of {MAX_BYTES}",
            )
        try:
            # read_blob stops at layer.size bytes and checks the digest before the end.
            return b"".join([c async for c in self.client.read_blob(repo, layer)])
        except ContentError as exc:
            raise Rejected(Reason.BAD_SIGNATURE, f"payload is not what was signed: {exc}") from None

    @staticmethod
    def _countable(tag: str, layers: list[Descriptor]) -> None:
        if len(layers) > MAX_SIGNATURES:
            raise Rejected(
                Reason.TOO_LARGE, f"{tag} holds {len(layers)} signatures, over {MAX_SIGNATURES}"
            )
        big = next((d for d in layers if d.size > MAX_BYTES), None)
        if big is not None:
            raise Rejected(
                Reason.TOO_LARGE,
                f"payload {big.digest} is {big.size} bytes, over the limit of {MAX_BYTES}",
            )

    async def _one(
        self, repo: Reference, digest: str, layer: Descriptor, policy: CosignPolicy
    ) -> None:
        """Returns when this one signature is acceptable, else raises Rejected."""
        signature = decode_signature(layer.annotations)
        keys = policy.trusted
        names = ", ".join(k.path for k in keys)
        if not any(k.could_have_made(signature) for k in keys):
            # No need to fetch the payload of a signature no trusted key could have made.
            raise Rejected(Reason.NO_KEY, f"the signature is not in a form any of {names} makes")
        payload = await self._payload(repo, layer)
        if not any(k.verifies(signature, payload) for k in keys):
            raise Rejected(Reason.NO_KEY, f"payload {layer.digest} verifies with none of {names}")
        claims = parse_payload(payload)
        if claims.digest != digest:
            raise Rejected(
                Reason.OTHER_DIGEST, f"payload {layer.digest} signs {claims.digest}, not {digest}"
            )
        if not policy.identity_matches(claims.reference):
            raise Rejected(
                Reason.IDENTITY,
                f"payload names {claims.reference}, which does not match {policy.identity}",
            )

    async def referrer(
        self,
        repo: Reference,
        name: str,
        subject: str,
        fetched: FetchedManifest,
        *,
        listed: bool = False,
        pulls: Reservation | None = None,
    ) -> dict[str, FetchedManifest]:
        """Raises Rejected(NOT_REFERRER) unless `fetched`, the manifest of referrer `name`
        of the verified digest `subject`, is an artifact about it: a signature, attestation
        or SBOM (what its tag's suffix names), or a referrers index of such artifacts, each
        with `subject` set to that digest. Returns the index's children, fetched to judge
        them, for the copy to reuse.

        `listed=True`: found through the referrers API, so it must name its subject.
        `pulls`: the copy's reservation, which the children's GETs draw on."""
        kind = ANY if listed else expected_kind(name)

        def reject(flaw: str) -> Rejected:
            return Rejected(Reason.NOT_REFERRER, refusal(name, flaw, kind, subject))

        try:
            manifest = parse_manifest(fetched.data, fetched.media_type, what=name)
        except ContentError as exc:
            raise Rejected(Reason.NOT_REFERRER, str(exc)) from None
        if isinstance(manifest, ImageManifest):
            flaw = artifact_flaw(manifest, kind, subject, need_subject=listed)
            if flaw is not None:
                raise reject(flaw)
            return {}
        flaw = index_flaw(manifest, subject)
        if flaw is not None:
            raise reject(flaw)
        children: dict[str, FetchedManifest] = {}
        for desc in manifest.manifests:
            child = await self._child(repo.repo(), desc, pulls)
            flaw = _child_flaw(child, kind, subject)
            if flaw is not None:
                raise reject(child_flaw(desc.digest, flaw))
            children[desc.digest] = child
        return children

    async def _child(
        self, repo: Reference, desc: Descriptor, pulls: Reservation | None
    ) -> FetchedManifest:
        seen = self._seen.get((repo.name, desc.digest))
        if seen is not None:
            return seen
        try:
            return await self.client.get_manifest(
                repo.with_digest(desc.digest), pulls=pulls, limit=MAX_BYTES
            )
        except ResponseTooLarge:
            raise Rejected(
                Reason.NOT_REFERRER, f"referrer {desc.digest} is over the limit of {MAX_BYTES}"
            ) from None


def _child_flaw(child: FetchedManifest, kind: ArtifactKind, subject: str) -> str | None:
    """Why one child of a referrers index is not an artifact about `subject`, or None."""
    try:
        manifest = parse_manifest(child.data, child.media_type, what=child.digest)
    except ContentError as exc:
        return f"no manifest ({exc})"
    if isinstance(manifest, ImageIndex):
        return "an index"
    return artifact_flaw(manifest, kind, subject, need_subject=True)


def _parse(fetched: FetchedManifest, name: str) -> ImageManifest:
    """A signature's manifest: an image manifest (an artifact), never an index."""
    try:
        manifest = parse_manifest(fetched.data, fetched.media_type, what=name)
    except ContentError as exc:
        raise Rejected(Reason.BAD_SIGNATURE, str(exc)) from None
    if isinstance(manifest, ImageIndex):
        raise Rejected(Reason.NO_SIGNATURE, f"{name} is an index, not a signature manifest")
    return manifest


def _likely_first(bundles: Iterable[Descriptor], predicate: str) -> list[Descriptor]:
    """Bundles whose (unsigned) annotation names `predicate` first, those naming another
    last: the annotation only orders the GETs; the signed statement decides."""

    def rank(d: Descriptor) -> int:
        named = (d.annotations or {}).get(PREDICATE_ANNOTATION)
        return 0 if named == predicate else 1 if named is None else 2

    return sorted(bundles, key=rank)


def _listed_as(fetched: FetchedManifest, manifest: ImageManifest) -> Descriptor:
    """The descriptor a referrers list gives this manifest (OCI distribution spec: its
    type, digest, size, `artifactType` and annotations), read from the manifest itself."""
    annotations = getattr(manifest, "annotations", None)
    return Descriptor(
        media_type=fetched.media_type,
        digest=fetched.digest,
        size=len(fetched.data),
        artifact_type=manifest.artifact_type or manifest.config.media_type,
        annotations=annotations if isinstance(annotations, dict) else None,
    )
