"""Where a browser may be sent after signing in: same-site paths only.

An open redirect on a login page is a phishing tool, so ``next`` is honoured
only when a browser would read it as a path on this site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MAX_NEXT_LENGTH", "safe_next"]

#: Longer values are refused so pending sign-ins keep the session cookie small.
MAX_NEXT_LENGTH = 512


def safe_next(value: str | None) -> str | None:
    """Return ``value`` if it is a same-site path, else None.

    Browsers treat ``//host`` and ``/\\host`` as other hosts and drop tabs and
    newlines before parsing, so any of those, or a scheme, disqualifies.
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
