"""HTTP to one registry: the session and the wrappers it sends through (pools, slots, auth,
bodies, responses), each owning one concern, so callers above never retry or refresh tokens.

Builds on the registry package's settings and policies (`options`, `origin`, `credentials`,
`ratelimit`, `tls`); nothing here imports the client or the protocol operations above it.
"""

from syncer.registry.transport.request import RegistryRequest
from syncer.registry.transport.session import RegistrySession

__all__ = ["RegistryRequest", "RegistrySession"]
