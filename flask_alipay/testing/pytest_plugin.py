"""A pytest plugin, registered through ``pytest11``: no configuration needed.

Fixtures:

* ``alipay_emulator``: an AlipayEmulator on a loopback port for one test, in
  strict mode (``strict=True``): a parameter outside the official SDKs' split
  (common ones in the query string, business ones in the body) is refused,
  though the real gateway would answer it, so a site's tests catch it.  Set
  ``alipay_emulator.strict = False`` in a test to answer like the gateway.  If
  the test also uses an ``app`` fixture whose app has AlipayLogin, that app is
  pointed at the emulator (and given back its settings afterwards); any other
  app can be pointed with ``alipay_emulator.point(app)``.
* ``alipay_config``: the ALIPAY_* settings for an app factory, private key included.
* ``alipay_sign_in``: ``alipay_sign_in(client, "alice")`` signs a Flask test
  client in as that emulated user, through the real views and real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, url_for
from flask.testing import FlaskClient

from flask_alipay.testing.emulator import AlipayEmulator, EmulatedUser

__all__ = ["AlipayTestKeys", "SignIn", "sign_in"]


@dataclass(frozen=True)
class AlipayTestKeys:
    """Key pairs made once per test session: RSA key generation is slow."""

    app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey

    @property
    def app_private_key_pem(self) -> str:
        return self.app.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    @property
    def alipay_public_key_pem(self) -> str:
        """The emulator's Alipay public key: what an app fixture sets as ALIPAY_PUBLIC_KEY."""
        return (
            self.alipay.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )


class SignIn(Protocol):
    def __call__(
        self,
        client: FlaskClient,
        user: str | EmulatedUser | None = None,
        *,
        next: str | None = None,
        name: str = "alipay",
    ) -> Any: ...


def sign_in(
    emulator: AlipayEmulator,
    client: FlaskClient,
    user: str | EmulatedUser | None = None,
    *,
    next: str | None = None,
    name: str = "alipay",
) -> Any:
    """Sign ``client`` in as ``user`` (a key; created if new) and return the callback's response.

    It walks the real path: the login view, the emulator's authorize page over
    HTTP, then the callback, which exchanges the code at the emulator's gateway.
    A client mounted under a prefix (``SCRIPT_NAME`` or ``X-Forwarded-Prefix`` in
    its ``environ_base``) is handled as a front proxy would: the prefix is taken
    off the callback's path before the client requests it.
    """
    app: Flask = client.application
    with app.test_request_context():
        login = url_for(f"{name}.login", next=next) if next else url_for(f"{name}.login")
    started = client.get(login)
    if started.status_code != 302:
        raise AssertionError(f"{login} answered {started.status_code}, not a redirect")
    key = user.key if isinstance(user, EmulatedUser) else user
    if key is not None:
        emulator.user(key)
    authorize_url = str(started.headers["Location"])
    if emulator.auto_approve:
        suffix = f"&login_as={quote(key, safe='')}" if key else ""
        answer = requests.get(authorize_url + suffix, allow_redirects=False, timeout=10)
    else:
        form = {"user": key or emulator.default_user.key, "decision": "approve"}
        answer = requests.post(authorize_url, data=form, allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise AssertionError(f"the emulator refused the sign-in: {answer.status_code}")
    callback = urlsplit(answer.headers["Location"])
    prefix = str(
        client.environ_base.get("SCRIPT_NAME")
        or client.environ_base.get("HTTP_X_FORWARDED_PREFIX")
        or ""
    ).rstrip("/")
    path = callback.path
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return client.get(path + "?" + callback.query)


@pytest.fixture(scope="session")
def alipay_test_keys() -> AlipayTestKeys:
    """An app key pair and an Alipay key pair for the whole session."""
    return AlipayTestKeys(
        app=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        alipay=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def alipay_emulator(alipay_test_keys: AlipayTestKeys) -> Iterator[AlipayEmulator]:
    """The Alipay emulator on loopback, auto-approving and strict, for one test."""
    emulator = AlipayEmulator(
        app_public_key=alipay_test_keys.app.public_key(),
        alipay_private_key=alipay_test_keys.alipay,
        strict=True,
    )
    with emulator.serve():
        yield emulator


@pytest.fixture(autouse=True)
def _alipay_point_app(request: pytest.FixtureRequest) -> None:
    """Point the test's ``app`` (pytest-flask's convention) at the emulator, when both are used.

    A fixture of its own, autouse, so it runs before pytest-flask's ``live_server``
    starts the app, and so an ``app`` fixture may itself use ``alipay_config``
    (the emulator does not ask for ``app``: no recursion).
    """
    if "app" not in request.fixturenames or "alipay_emulator" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    emulator: AlipayEmulator = request.getfixturevalue("alipay_emulator")
    extension = app.extensions.get("alipay") if isinstance(app, Flask) else None
    if extension is None or emulator.cert_mode:
        return
    configured = extension.config_for(app)
    assert emulator.server is not None
    if configured.gateway_url != emulator.server.gateway_url:
        emulator.point(app)  # unpointed when the emulator stops


@pytest.fixture
def alipay_config(
    alipay_emulator: AlipayEmulator, alipay_test_keys: AlipayTestKeys
) -> dict[str, str]:
    """ALIPAY_* settings for an app factory: the emulator's endpoints and a test app key."""
    return {
        **alipay_emulator.config(),
        "ALIPAY_PRIVATE_KEY": alipay_test_keys.app_private_key_pem,
    }


@pytest.fixture
def alipay_sign_in(alipay_emulator: AlipayEmulator) -> SignIn:
    """``alipay_sign_in(client, "alice", next="/me")``: one call, a signed-in client."""

    def run(
        client: FlaskClient,
        user: str | EmulatedUser | None = None,
        *,
        next: str | None = None,
        name: str = "alipay",
    ) -> Any:
        return sign_in(alipay_emulator, client, user, next=next, name=name)

    return run
