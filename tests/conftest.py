"""Fixtures only; helpers live in tests/support/.

The emulator, its settings and one-call sign-ins come from the shipped pytest
plugin (``alipay_emulator``, ``alipay_config``, ``alipay_sign_in``,
``alipay_test_keys``), as in a site's own tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from support import servers
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


def _server(stack: ExitStack, server: AbstractContextManager[str]) -> str:
    try:
        return stack.enter_context(server)
    except servers.MissingServer as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (Debian's postgresql): the one .ci/run
    started (FLASK_ALIPAY_TEST_POSTGRES_URL), else our own on a free port."""
    with ExitStack() as stack:
        yield _server(stack, servers.postgres_url())


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session (Debian's redis-server): the one .ci/run
    started (FLASK_ALIPAY_TEST_REDIS_URL), else our own on a free port."""
    with ExitStack() as stack:
        yield _server(stack, servers.redis_url())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    server: str = request.getfixturevalue("postgres_url")
    name = f"demo_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name
