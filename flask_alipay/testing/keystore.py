"""Key pairs an emulator keeps in a folder, so a restart does not make every app's key stale.

An emulator makes a fresh Alipay key pair at every start by default, and an app
configured with the last run's ``ALIPAY_PUBLIC_KEY`` then fails to verify every
answer.  ``flask alipay emulator --keys DIR`` and the demo keep theirs here.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_alipay.keys import load_private_key

__all__ = ["ALIPAY_KEY_FILE", "APP_KEY_FILE", "kept_private_key"]

#: The emulator's own signing key (its public half is the app's ALIPAY_PUBLIC_KEY).
ALIPAY_KEY_FILE = "alipay_private_key.pem"
#: The throwaway app key made when no app public key is given.
APP_KEY_FILE = "app_private_key.pem"


def kept_private_key(path: Path) -> rsa.RSAPrivateKey:
    """The key in ``path``; made on first use, in a 0700 folder, as a 0600 file."""
    if path.exists():
        return load_private_key(path.read_bytes())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return load_private_key(path.read_bytes())
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)
    return key
