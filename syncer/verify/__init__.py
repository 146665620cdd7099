"""Signed-only mirroring: cosign signatures verified against the operator's keys.

cosign.py: the formats; keys.py: public keys and signature schemes; policy.py: the
`verify:` config; verifier.py: fetch and judge a digest's signatures; gate.py: the
runner's side (which tags, outcomes, the signature copied along).
"""
