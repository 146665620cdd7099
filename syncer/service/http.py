"""The HTTP endpoint of `syncer schedule`: `/metrics`, `/healthz` and the status page.

aiohttp.web answers the requests; syncer/service/connections.py decides which connections it
gets and for how long. Routes live on `StatusServer.app`, so more can be added there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import structlog
from aiohttp import web

from syncer.service.connections import ConnectionGuard, Limits

log = structlog.get_logger("syncer.service.http")

Health = Callable[[], bool]
# A page: its Content-Type and body, computed per request.
Page = Callable[[], tuple[str, bytes]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_R = TypeVar("_R", bound=web.StreamResponse)
# The status page embeds text from remote registries: even if escaping ever failed, the
# browser must run no script and load nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

# aiohttp logs each malformed request with a traceback: a client could fill the log with
# them. The endpoint's own failures are logged by `_guarded` instead.
_aiohttp_log = logging.getLogger("syncer.service.http.aiohttp")
_aiohttp_log.addHandler(logging.NullHandler())
_aiohttp_log.propagate = False


class StatusServer:
    def __init__(
        self, pages: Mapping[str, Page], healthy: Health, limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self._healthy = healthy
        self.app = web.Application(middlewares=[self._guarded])
        self.app.router.add_get("/healthz", self._health)
        for path, page in pages.items():
            self.app.router.add_get(path, self._page(page))
        self._runner: web.AppRunner | None = None
        self.guard: ConnectionGuard | None = None

    async def start(self, host: str, port: int) -> int:
        runner = web.AppRunner(self.app, access_log=None, logger=_aiohttp_log, keepalive_timeout=0)
        await runner.setup()
        assert runner.server is not None
        self._runner = runner
        self.guard = ConnectionGuard(runner.server, self.limits)
        return self.guard.listen(host, port)

    async def stop(self) -> None:
        if self.guard is not None:
            self.guard.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404, 405 ...: answered like the pages
            raise _answer(exc) from None
        except Exception as exc:
            log.error("status endpoint failed", path=_loggable(request.path), error=repr(exc))
            raise _answer(web.HTTPInternalServerError(text="internal error\n")) from None
        return _answer(response)

    async def _health(self, request: web.Request) -> web.Response:
        if self._healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy\n")

    @staticmethod
    def _page(page: Page) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            ctype, body = page()
            return web.Response(body=body, headers={"Content-Type": ctype})

        return handle


def _loggable(path: str) -> str:
    """`path` without what follows /events/<sender>/: some senders put their secret there."""
    parts = path.split("/", 4)
    return "/".join([*parts[:3], "..."]) if len(parts) > 3 and parts[1] == "events" else path


def _answer(response: _R) -> _R:
    response.headers.update(SECURITY_HEADERS)
    # One request per connection: the guard's deadline then covers the whole exchange.
    response.force_close()
    return response
