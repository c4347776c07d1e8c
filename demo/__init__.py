"""A small real site on flask_alipay: sign in with Alipay, keep users in SQLite.

Run it from the repository root::

    flask --app demo run

With no ``ALIPAY_APP_ID`` in the environment it starts the Alipay emulator in-process
(consent page on, throwaway keys) and points at it, so it works offline and without an
account.  Set ``ALIPAY_APP_ID``, ``ALIPAY_PRIVATE_KEY`` and ``ALIPAY_PUBLIC_KEY`` (and
``ALIPAY_SANDBOX=1`` for the sandbox) to talk to real Alipay instead.  ``--debug``'s
reloader builds the app twice, so use it only without ``DEMO_EMULATOR_PORT``.
``DEMO_DATABASE`` names the SQLite file (default ``instance/demo.sqlite3``); with several
worker processes, also set ``SECRET_KEY`` so that they share it.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from flask_alipay import (
    AlipayLogin,
    AlipayUser,
    current_alipay_user,
    login_required,
    user_logged_in,
)
from flask_alipay.testing import AlipayEmulator

from . import db

alipay = AlipayLogin()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The app factory ``flask --app demo run`` finds; tests pass their own config."""
    app = Flask(__name__, instance_relative_config=True)
    # Set SECRET_KEY when several processes serve the site (gunicorn workers): a
    # sign-in started on one worker is finished on another, so they share the key.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    if os.environ.get("DEMO_DATABASE"):
        app.config["DATABASE"] = os.environ["DEMO_DATABASE"]
    if os.environ.get("ALIPAY_APP_ID"):
        app.config.update({k: v for k, v in os.environ.items() if k.startswith("ALIPAY_")})
    else:
        _use_emulator(app)
    app.config.update(test_config or {})
    if "DATABASE" not in app.config:
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["DATABASE"] = os.path.join(app.instance_path, "demo.sqlite3")

    db.init_app(app)
    alipay.init_app(app)
    # Only this app's sign-ins: one process may hold many apps (tests do).
    user_logged_in.connect(_record_sign_in, sender=app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html", user=current_alipay_user)

    @app.get("/profile")
    @login_required
    def profile() -> ResponseReturnValue:
        user = current_alipay_user
        account = db.load_user(user.id) if user else None
        if account is None:  # signed in before the database was reset: sign in again
            alipay.forget()
            return redirect(url_for("alipay.login", next=request.path))
        return render_template("profile.html", account=account)

    return app


def _record_sign_in(sender: Flask, user: AlipayUser, **extra: Any) -> None:
    """The Flask-Login recipe: the verified sign-in creates or updates the local user."""
    db.save_user(user)


def _use_emulator(app: Flask) -> None:
    """Play Alipay in-process on loopback, so the demo runs with no account and no network."""
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emulator = AlipayEmulator(app_public_key=app_key.public_key(), auto_approve=False)
    server = emulator.start(port=int(os.environ.get("DEMO_EMULATOR_PORT") or 0))
    private_pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    app.config.update(emulator.config(), ALIPAY_PRIVATE_KEY=private_pem)
    app.extensions["demo_emulator"] = emulator  # so tests can stop it
    print(f" * Alipay emulator (支付宝模拟器) running on {server.url}", file=sys.stderr)
