"""The baseline: "Sign in with Alipay" written by hand in a few dozen lines.

Cached keys, one ``requests.Session``, the Flask session for ``state``, and the
simplest answer check (the bytes between the node's ``{`` and ``,"sign"``).  It
skips what flask_alipay adds (malformed answers, GBK, error hints, ``\\/``
retries, certificate mode, state expiry...): it is the floor a careful
application could reach, not a recommended implementation.

``signer="sdk"`` signs and verifies with the official alipay-sdk-python
functions instead, called the way its users call them (key text in, every time).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from flask import Flask, abort, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

BEIJING = timezone(timedelta(hours=8))
Signer = Callable[[str], str]
Verifier = Callable[[bytes, str], bool]


def cryptography_signer(config: dict[str, str]) -> tuple[Signer, Verifier]:
    """Keys parsed once with ``cryptography``."""
    with open(config["app_private_key_file"], "rb") as file:
        private_key = serialization.load_pem_private_key(file.read(), password=None)
    public_key = serialization.load_der_public_key(base64.b64decode(config["alipay_public_key"]))
    assert isinstance(private_key, RSAPrivateKey) and isinstance(public_key, RSAPublicKey)

    def sign(text: str) -> str:
        raw = private_key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def verify(content: bytes, signature: str) -> bool:
        try:
            public_key.verify(
                base64.b64decode(signature), content, padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return False
        return True

    return sign, verify


def sdk_signer(config: dict[str, str]) -> tuple[Signer, Verifier]:
    """The official SDK's functions: they take the key text and parse it on every call."""
    from alipay.aop.api.util.SignatureUtils import sign_with_rsa2, verify_with_rsa

    private_body = config["app_private_key_pkcs1_body"]
    public_body = config["alipay_public_key"]

    def sign(text: str) -> str:
        return str(sign_with_rsa2(private_body, text, "utf-8"))

    def verify(content: bytes, signature: str) -> bool:
        try:
            return bool(verify_with_rsa(public_body, content, signature))
        except Exception:  # rsa.VerificationError
            return False

    return sign, verify


def create_app(config: dict[str, str], signer: str = "cryptography") -> Flask:
    """The same three routes as the flask_alipay site: login, callback, /me."""
    app = Flask(__name__)
    app.secret_key = config["secret_key"]
    sign, verify = (sdk_signer if signer == "sdk" else cryptography_signer)(config)
    http = requests.Session()

    def gateway(method: str, business: dict[str, str], auth_token: str = "") -> dict[str, Any]:
        common = {
            "app_id": config["app_id"],
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
        }
        if auth_token:
            common["auth_token"] = auth_token
        params = sorted({**common, **business}.items())
        common["sign"] = sign("&".join(f"{k}={v}" for k, v in params))
        answer = http.post(config["gateway_url"], params=common, data=business, timeout=10)
        body = answer.content
        node = ('"' + method.replace(".", "_") + '_response":').encode("ascii")
        start = body.find(node) + len(node)
        end = body.rfind(b',"sign":"')
        if start < len(node) or end < start:
            abort(502)
        if not verify(body[start:end], json.loads(body)["sign"]):
            abort(502)
        data: dict[str, Any] = json.loads(body[start:end])
        if data.get("code", "10000") != "10000":
            abort(502)
        return data

    @app.route("/alipay/login")
    def login() -> ResponseReturnValue:
        state = secrets.token_urlsafe(32)
        session["state"] = state
        session["next"] = request.args.get("next", "/")
        query = urlencode(
            {
                "app_id": config["app_id"],
                "scope": "auth_user",
                "redirect_uri": url_for("callback", _external=True),
                "state": state,
            }
        )
        return redirect(config["authorize_url"] + "?" + query)

    @app.route("/alipay/callback")
    def callback() -> ResponseReturnValue:
        if not request.args.get("state") or request.args["state"] != session.pop("state", None):
            abort(400)
        token = gateway(
            "alipay.system.oauth.token",
            {"grant_type": "authorization_code", "code": request.args["auth_code"]},
        )
        profile = gateway("alipay.user.info.share", {}, auth_token=token["access_token"])
        session["user"] = {
            "id": profile.get("open_id") or profile["user_id"],
            "nick_name": profile.get("nick_name", ""),
        }
        return redirect(session.pop("next", "/"))

    @app.route("/me")
    def me() -> ResponseReturnValue:
        user = session.get("user")
        if not user:
            return redirect(url_for("login", next="/me"))
        return f"hello {user['id']}"

    return app
