"""RSA keys from any form a user pastes.

Alipay's key tool hands out a header-less PKCS#8 body, OpenSSL a PKCS#1 PEM,
and guides such as Logto's tell users to squash PEM text onto one line with
literal ``\\n``.  All of these must load, and no error may quote the key.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = [
    "KeyFormatError",
    "load_private_key",
    "load_public_key",
    "public_key_base64",
    "same_public_key",
]

_WHITESPACE = re.compile(rb"\s+")


class KeyFormatError(ValueError):
    """A key that cannot be read.  The message never contains key material."""


def _normalise(text: str | bytes) -> bytes:
    data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    data = data.strip().strip(b"\"'")
    # Keys pasted into env files and JSON often carry literal "\n" sequences.
    return data.replace(b"\\r", b"").replace(b"\\n", b"\n")


def _bare_body(data: bytes) -> bytes:
    try:
        return base64.b64decode(_WHITESPACE.sub(b"", data), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("not a PEM block and not valid base64") from None


def load_private_key(text: str | bytes) -> RSAPrivateKey:
    """Load an RSA private key from PEM (PKCS#1 or PKCS#8) or a bare base64 body."""
    data = _normalise(text)
    if not data:
        raise KeyFormatError("the private key is empty")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            # load_der_private_key reads PKCS#1 and PKCS#8 alike.
            key = serialization.load_der_private_key(_bare_body(data), password=None)
    except KeyFormatError:
        raise
    except TypeError:
        raise KeyFormatError(
            "the private key is encrypted; export it without a passphrase"
        ) from None
    except Exception:
        raise KeyFormatError(
            "the private key could not be parsed as PKCS#1 or PKCS#8 RSA"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyFormatError("the private key is not an RSA key")
    return key


def load_public_key(text: str | bytes) -> RSAPublicKey:
    """Load an RSA public key from PEM or the bare one-line base64 the console shows."""
    data = _normalise(text)
    if not data:
        raise KeyFormatError("the public key is empty")
    if b"PRIVATE KEY" in data:
        raise KeyFormatError("this is a private key, not a public key")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(_bare_body(data))
    except KeyFormatError:
        raise
    except Exception:
        raise KeyFormatError("the public key could not be parsed as an RSA public key") from None
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError("the public key is not an RSA key")
    return key


def public_key_base64(key: RSAPublicKey) -> str:
    """The one-line form the Alipay console wants: base64 DER, no header, no newlines."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def same_public_key(a: RSAPublicKey, b: RSAPublicKey) -> bool:
    """True when two keys are one; used to catch the app key pasted as Alipay's."""
    return a.public_numbers() == b.public_numbers()
