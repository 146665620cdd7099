"""Signed-only mirroring: cosign's signature formats and the verifier that judges a digest.

cosign.py holds the formats and the reasons; artifacts.py what a referrer of a verified
digest may hold (signatures, attestations, SBOMs, bundles); verifier.py fetches and judges a
digest's signatures and its referrers. The `verify:` settings and key loading live in
`syncer.config` (verify.py, keys.py); the runner's side (which tags, outcomes) is
`syncer.sync.signatures`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.verify.cosign import Reason, signature_tag

if TYPE_CHECKING:
    from syncer.verify.verifier import Signed, Verifier

__all__ = ["Reason", "Signed", "Verifier", "signature_tag"]


def __getattr__(name: str) -> Any:
    # The verifier loads on first use (PEP 562): every sync reads referrer formats from
    # places.py and cosign.py, but only a run under `verify:` judges signatures.
    if name not in ("Signed", "Verifier"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from syncer.verify import verifier

    return getattr(verifier, name)
