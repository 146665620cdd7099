"""Signed-only mirroring: cosign's signature formats and the verifier that judges a digest.

cosign.py holds the formats and the reasons; artifacts.py what a referrer of a verified
digest may hold (signatures, attestations, SBOMs, bundles); verifier.py fetches and judges a
digest's signatures and its referrers. The `verify:` settings and key loading live in
`syncer.config` (verify.py, keys.py); the runner's side (which tags, outcomes) is
`syncer.sync.signatures`.
"""

from syncer.verify.cosign import Reason, signature_tag
from syncer.verify.verifier import Signed, Verifier

__all__ = ["Reason", "Signed", "Verifier", "signature_tag"]
