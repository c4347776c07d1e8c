"""Made-up ids, codes and tokens, shaped like the ones Alipay hands out.

Shapes, not secrets of Alipay's: what real answers show, so a client that
stores, logs or matches them meets realistic values (an ``open_id`` with
``-`` and ``_`` in it, an upper-case token tail, a 20-digit legacy id).
"""

from __future__ import annotations

import secrets
import string

__all__ = [
    "new_access_token",
    "new_alipay_user_id",
    "new_auth_code",
    "new_open_id",
    "new_user_id",
]

_ALNUM = string.ascii_letters + string.digits
#: What real open_ids are made of: letters, digits, ``-`` and ``_``.
_OPEN_ID_CHARS = _ALNUM + "-_"
_TOKEN_CHARS = string.ascii_uppercase + string.digits


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_user_id() -> str:
    """A ``user_id``: 2088 and twelve digits, like Alipay's."""
    return "2088" + _random(string.digits, 12)


def new_alipay_user_id() -> str:
    """The deprecated ``alipay_user_id`` of migration-era answers: 2088 and 16 digits."""
    return "2088" + _random(string.digits, 16)


def new_open_id() -> str:
    """An ``open_id``: 47 characters, ``0`` + two more, a ``-``, then letters, digits,
    ``-`` and ``_``, like Alipay's (``074-vK1…``)."""
    return "0" + _random(_ALNUM, 2) + "-" + _random(_OPEN_ID_CHARS, 42) + "_" + _random(_ALNUM, 1)


def new_auth_code() -> str:
    """An ``auth_code``: 32 lower-case hex digits, like Alipay's."""
    return secrets.token_hex(16)


def new_access_token(scope: str) -> str:
    """An access or refresh token: ``authusrB`` (``auth_user``) or ``authbseB``
    (``auth_base``) and 32 upper-case letters and digits."""
    prefix = "authusrB" if scope == "auth_user" else "authbseB"
    return prefix + _random(_TOKEN_CHARS, 32)
