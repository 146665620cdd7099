"""`Link: </v2/x/tags/list?last=a&n=100>; rel="next"` (the RFC 8288 subset registries use)."""

from __future__ import annotations

import re

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def next_link(header: str | None) -> str | None:
    """The rel="next" target, or None. Absolute URLs are kept; the transport resolves paths."""
    if not header:
        return None
    for m in _LINK.finditer(header):
        params = m.group(2)
        if re.search(r';\s*rel\s*=\s*"?(?:[^";]*\s)?next(?:\s[^";]*)?"?', params):
            return m.group(1) or None
    return None
