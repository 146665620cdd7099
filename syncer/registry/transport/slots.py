"""Per-host request slots that one logical transfer never waits on twice.

A blob copied within one registry is a PUT whose body is the GET of the same blob from
the same host. Counted as two requests, the PUT holds a slot while its body waits for a
second one: with every slot held by such PUTs, nothing moves again. So a slot is marked
in the context of the task that holds it, and a request made inside that context (the
body of the PUT is read by a task aiohttp starts from it) rides on the held slot.
The connection pool under the slots has room for those nested requests (see
`connections_for`), so it cannot starve either.

Every wait for a slot ends at the request's deadline, with an error that says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from syncer.errors import TransportError

_held: ContextVar[frozenset[HostSlots]] = ContextVar("syncer_held_slots", default=frozenset())


def connections_for(max_concurrency: int) -> int:
    """Sockets a registry's pool may open: each slot's request, the one request nested in
    it (a same-registry copy's source GET), and token requests besides."""
    return 2 * max_concurrency + 2


class HostSlots:
    def __init__(self, registry: str, limit: int) -> None:
        self.registry = registry
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)

    def held(self) -> bool:
        return self in _held.get()

    @asynccontextmanager
    async def hold(self, deadline: float, what: str) -> AsyncIterator[None]:
        """A slot until the block ends; the one this context already holds, if any."""
        held = _held.get()
        if self in held:
            yield
            return
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._semaphore.acquire()
        except TimeoutError:
            raise TransportError(
                f"{what}: no free connection slot for {self.registry} before the deadline "
                f"(retry.deadline_s); all {self.limit} (max_concurrency) stayed busy"
            ) from None
        _held.set(held | {self})
        try:
            yield
        finally:
            # Set, not reset: the block may end in another context (an abandoned stream).
            _held.set(held)
            self._semaphore.release()
