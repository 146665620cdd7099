"""Verify a digest's cosign signatures at the source before anything of it is copied,
and judge what a referrer tag of a verified digest holds before it is copied with it.

Cost per verified digest: one GET of the signature manifest, then one GET per payload
blob until a signature is accepted. Signatures that cannot verify (too large, not
shaped like any trusted key's) are judged without fetching their payload. A referrer is
judged on the manifest already fetched to copy it; a referrers index costs one GET per
child, which the copy then reuses.
"""

from __future__ import annotations

import asyncio
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
    SIGNATURE,
    ArtifactKind,
    artifact_flaw,
    child_flaw,
    expected_kind,
    index_flaw,
    refusal,
)
from syncer.verify.cosign import (
    MAX_BYTES,
    MAX_SIGNATURES,
    SIMPLE_SIGNING,
    Reason,
    decode_signature,
    parse_payload,
    signature_tag,
)

_RANK = list(Reason)


@dataclass(frozen=True)
class Signed:
    """A digest with an accepted signature: the signature manifest travels with it."""

    tag: str  # sha256-<hex>.sig
    manifest: FetchedManifest


class Verifier:
    """One per run. A digest reached by several tags is verified once."""

    def __init__(self, client: Store) -> None:
        self.client = client
        self._done: dict[tuple[str, str, int], asyncio.Task[Signed]] = {}

    async def verify(self, repo: Reference, digest: str, policy: VerifyConfig) -> Signed:
        """The accepted signature of `digest` in `repo`, or raises Rejected."""
        key = (repo.name, digest, id(policy))
        task = self._done.get(key)
        if task is None:
            task = asyncio.ensure_future(self._verify(repo.repo(), digest, policy.cosign))
            self._done[key] = task
        return await asyncio.shield(task)

    async def _verify(self, repo: Reference, digest: str, policy: CosignPolicy) -> Signed:
        tag = signature_tag(digest)
        try:
            fetched = await self.client.get_manifest(repo.with_tag(tag), limit=MAX_BYTES)
        except NotFound:
            raise Rejected(Reason.NO_SIGNATURE, f"{repo.name}:{tag} does not exist") from None
        except ResponseTooLarge:
            raise Rejected(
                Reason.TOO_LARGE, f"manifest {repo.name}:{tag} is over the limit of {MAX_BYTES}"
            ) from None
        try:
            manifest = parse_manifest(fetched.data, fetched.media_type, what=tag)
        except ContentError as exc:
            raise Rejected(Reason.BAD_SIGNATURE, str(exc)) from None
        layers = [
            d
            for d in (manifest.layers if isinstance(manifest, ImageManifest) else [])
            if d.media_type == SIMPLE_SIGNING
        ]
        if not layers:
            raise Rejected(Reason.NO_SIGNATURE, f"{tag} holds no {SIMPLE_SIGNING} layer")
        if len(layers) > MAX_SIGNATURES:
            raise Rejected(
                Reason.TOO_LARGE, f"{tag} holds {len(layers)} signatures, over {MAX_SIGNATURES}"
            )
        # The manifest travels whole with the tag, so all of it must be signatures.
        assert isinstance(manifest, ImageManifest)
        flaw = artifact_flaw(manifest, SIGNATURE, digest, need_subject=False)
        if flaw is not None:
            raise Rejected(Reason.IMPURE, refusal(tag, flaw, SIGNATURE, digest))
        big = next((d for d in layers if d.size > MAX_BYTES), None)
        if big is not None:
            raise Rejected(
                Reason.TOO_LARGE,
                f"payload {big.digest} is {big.size} bytes, over the limit of {MAX_BYTES}",
            )
        refusals: list[Rejected] = []
        for layer in layers:
            try:
                await self._one(repo, digest, layer, policy)
            except Rejected as exc:
                refusals.append(exc)
                continue
            return Signed(tag, fetched)
        raise min(refusals, key=lambda r: _RANK.index(Reason(r.reason)))

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
        try:
            # read_blob stops at layer.size bytes and checks the digest before the end.
            payload = b"".join([c async for c in self.client.read_blob(repo, layer)])
        except ContentError as exc:
            raise Rejected(Reason.BAD_SIGNATURE, f"payload is not what was signed: {exc}") from None
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
