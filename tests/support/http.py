"""httpx clients for the tests' own requests: never through a proxy, one TLS context.

httpx builds a fresh SSL context for every client, loading the whole CA bundle (~17 ms of CPU);
the helpers make a client per push or fetch, thousands per suite. One context, made once, is
the same trust as httpx's default.
"""

from __future__ import annotations

from typing import Any

import httpx

TLS = httpx.create_ssl_context()


def http_client(**kwargs: Any) -> httpx.Client:
    """`httpx.Client` with `trust_env=False` (a proxy from the environment must never see
    loopback test traffic) and, unless `verify` is given, the shared TLS context."""
    kwargs.setdefault("verify", TLS)
    return httpx.Client(trust_env=False, **kwargs)
