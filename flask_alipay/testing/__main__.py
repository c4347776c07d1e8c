"""Run the emulator by hand: ``python -m flask_alipay.testing [--port 8765]``.

Handy for a demo site: it prints the ALIPAY_* settings to paste, including a
throwaway app key pair made for this run (nothing here is a real secret).
"""

from __future__ import annotations

import argparse
import base64
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_alipay.testing.emulator import AlipayEmulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flask_alipay.testing")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--app-id", default="2021000000000001")
    parser.add_argument("--consent", action="store_true", help="show the consent page")
    args = parser.parse_args()
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emulator = AlipayEmulator(
        app_id=args.app_id, app_public_key=app_key.public_key(), auto_approve=not args.consent
    )
    server = emulator.start(port=args.port, quiet=False)
    der = app_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for name, value in emulator.config().items():
        print(f"{name}={value}")
    print(f"ALIPAY_PRIVATE_KEY={base64.b64encode(der).decode('ascii')}")
    print(f"# Alipay emulator on {server.url}; Ctrl-C stops it.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
