"""Key material in the forms users paste, and the public golden vectors."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def pem_private(key: rsa.RSAPrivateKey, fmt: str = "pkcs8") -> str:
    form = (
        serialization.PrivateFormat.PKCS8
        if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode(
        "ascii"
    )


def pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def pem_body(pem: str) -> str:
    """The base64 between header and footer, on one line."""
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
