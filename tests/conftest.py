"""Fixtures only; helpers live in tests/support/.

The emulator, its settings and one-call sign-ins come from the shipped pytest
plugin (``alipay_emulator``, ``alipay_config``, ``alipay_sign_in``,
``alipay_test_keys``), as in a site's own tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from support.keys import VECTORS
from support.site import build_site

from flask_alipay.testing import AlipayEmulator
from flask_alipay.testing.pytest_plugin import AlipayTestKeys


@pytest.fixture(scope="session")
def app_key(alipay_test_keys: AlipayTestKeys) -> rsa.RSAPrivateKey:
    """The app key pair the plugin's emulator knows."""
    return alipay_test_keys.app


@pytest.fixture(scope="session")
def alipay_key(alipay_test_keys: AlipayTestKeys) -> rsa.RSAPrivateKey:
    """The key pair the plugin's emulator signs its answers with."""
    return alipay_test_keys.alipay


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))


@pytest.fixture
def make_site(alipay_config: dict[str, str]) -> Callable[..., Flask]:
    """A site on the emulator; keyword arguments override settings (None drops one)."""

    def make(**overrides: Any) -> Flask:
        config: dict[str, Any] = {**alipay_config, **overrides}
        return build_site({k: v for k, v in config.items() if v is not None})

    return make


@pytest.fixture
def site(make_site: Callable[..., Flask]) -> Flask:
    return make_site()


@pytest.fixture
def client(site: Flask) -> FlaskClient:
    return site.test_client()


@pytest.fixture
def emulator(alipay_emulator: AlipayEmulator) -> AlipayEmulator:
    """The plugin's emulator, by the short name the emulator's own unit tests use."""
    return alipay_emulator
