"""Where a browser may be sent after signing in: same-site paths only.

An open redirect on a login page is a phishing tool, so ``next`` is honoured
only when a browser would read it as a path on this site.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

__all__ = ["MAX_NEXT_BYTES", "safe_next", "stored_size"]

#: ``next`` is refused beyond this many bytes *as the session stores it* (JSON with
#: ``\uXXXX`` escapes, so one Chinese character is 6 bytes), to keep the cookie small.
MAX_NEXT_BYTES = 512


def stored_size(value: object) -> int:
    """Bytes ``value`` takes in Flask's session serialisation (compact, ASCII-escaped JSON)."""
    return len(json.dumps(value, separators=(",", ":")))


def safe_next(value: str | None) -> str | None:
    """Return ``value`` if it is a same-site path, else None.

    Browsers treat ``//host`` and ``/\\host`` as other hosts and drop tabs and
    newlines before parsing, so any of those, or a scheme, disqualifies.
    """
    if not value or stored_size(value) > MAX_NEXT_BYTES:
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
