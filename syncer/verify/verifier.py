"""Verify a digest's cosign signatures at the source before anything of it is copied.

Cost per verified digest: one GET of the signature manifest, then one GET per payload
blob until a signature is accepted. Signatures that cannot verify (too large, not
shaped like any trusted key's) are judged without fetching their payload.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from syncer.config.verify import CosignPolicy, VerifyConfig
from syncer.errors import ContentError, NotFound, Rejected, ResponseTooLarge
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import Descriptor, ImageManifest, parse_manifest
from syncer.registry.reference import Reference
from syncer.store import Store
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
        if layer.size > MAX_BYTES:
            raise Rejected(
                Reason.TOO_LARGE,
                f"payload {layer.digest} is {layer.size} bytes, over the limit of {MAX_BYTES}",
            )
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
