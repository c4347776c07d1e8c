"""Re-pointing a running app at the emulator, and back again.

Only the extension's documented public methods are used,
``AlipayLogin.config_for(app)`` and ``AlipayLogin.reconfigure(app, config)``:
the extension's per-app state is its own business, and a test helper that
reached into it would break on the library's next refactor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from flask import Flask

from flask_alipay.extension import AlipayLogin

from .server import EmulatorServer

if TYPE_CHECKING:
    from flask_alipay.config import AlipayConfig

__all__ = ["Pointed"]


class Pointed:
    """The apps :meth:`point` changed, each with the settings it had before."""

    def __init__(self) -> None:
        self._apps: dict[tuple[int, str], tuple[Flask, AlipayLogin, AlipayConfig]] = {}

    def point(
        self,
        app: Flask,
        name: str,
        *,
        cert_mode: bool,
        server: EmulatorServer | None,
        alipay_public_key: RSAPublicKey,
        register_app: Callable[[str, RSAPublicKey], None],
    ) -> Flask:
        """Swap in the emulator's endpoints and public key; keep the APPID and app key,
        whose public half ``register_app`` teaches the emulator."""
        if cert_mode:
            raise RuntimeError(
                "point() swaps in the emulator's public key, which certificate mode does not "
                "use; give the app emulator.config() (or write_cert_files()) instead"
            )
        extension = app.extensions.get(name)
        if not isinstance(extension, AlipayLogin):
            raise RuntimeError(f"the app has no AlipayLogin named {name!r}")
        if server is None:
            raise RuntimeError("the emulator is not running: start() or serve() it first")
        original = extension.config_for(app)
        # Pointing twice keeps the first original: that is what unpoint() restores.
        self._apps.setdefault((id(app), name), (app, extension, original))
        register_app(original.app_id, original.private_key.public_key())
        extension.reconfigure(
            app,
            dataclasses.replace(
                original,
                authorize_url=server.authorize_url,
                gateway_url=server.gateway_url,
                alipay_public_key=alipay_public_key,
            ),
        )
        return app

    def unpoint(self) -> None:
        """Give every pointed app its own settings back."""
        for app, extension, original in self._apps.values():
            extension.reconfigure(app, original)
        self._apps.clear()
