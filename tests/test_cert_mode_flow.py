"""Certificate mode end to end: the extension against the emulator's own PKI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.cli import FlaskGroup
from support.browser import sign_in
from support.keys import pem_private
from support.site import build_site

from flask_alipay import AlipayError, login_failed, user_logged_in
from flask_alipay.testing import AlipayEmulator


@pytest.fixture(scope="module")
def cert_emulator(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> Iterator[AlipayEmulator]:
    emulator = AlipayEmulator(
        app_public_key=app_key.public_key(), alipay_private_key=alipay_key, cert_mode=True
    )
    with emulator.serve():
        yield emulator


@pytest.fixture
def cert_config(cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    cert_emulator.reset()
    return {**cert_emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)}


def test_sign_in_in_certificate_mode(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    assert "ALIPAY_PUBLIC_KEY" not in cert_config
    site = build_site(cert_config)
    users: list[Any] = []
    user_logged_in.connect(
        lambda sender, user, **extra: users.append(user), sender=site, weak=False
    )
    assert sign_in(site.test_client()).status_code == 302
    assert users[0]["nick_name"] == "小明"
    for request in cert_emulator.requests:
        assert request.query["app_cert_sn"] == cert_emulator.app_cert_sn()
        assert request.query["alipay_root_cert_sn"] == cert_emulator.root_cert_sn


def test_certificate_files_by_path(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    paths = cert_emulator.write_cert_files(tmp_path)
    config = {k: v for k, v in cert_emulator.config().items() if not k.endswith("_CERT")}
    site = build_site(
        {
            **config,
            **{k: str(v) for k, v in paths.items()},
            "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        }
    )
    assert sign_in(site.test_client()).status_code == 302


def test_rotated_alipay_certificate_is_refused_with_a_hint(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors: list[AlipayError] = []
    login_failed.connect(
        lambda sender, error, **extra: errors.append(error), sender=site, weak=False
    )
    cert_emulator.rotate_alipay_cert()
    try:
        response = sign_in(site.test_client())
    finally:
        cert_emulator.rotate_alipay_cert()  # later tests get a fresh, unknown cert anyway
    assert response.status_code == 502
    assert errors[0].reason == "cert_rotated"
    assert "rotated its certificate" in errors[0].hint


def test_app_certificate_of_another_key_fails_at_start(
    cert_config: dict[str, Any], other_key: rsa.RSAPrivateKey
) -> None:
    from flask_alipay import AlipayConfigError

    with pytest.raises(AlipayConfigError, match="ALIPAY_APP_CERT does not carry the public half"):
        build_site({**cert_config, "ALIPAY_PRIVATE_KEY": pem_private(other_key)})


def run_check(config: dict[str, Any], *args: str) -> Any:
    def factory() -> Flask:
        return build_site(config)

    return CliRunner().invoke(FlaskGroup(create_app=factory), ["alipay", "check", *args])


def test_check_understands_certificate_mode(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    cert_emulator.reset()
    config = {**cert_emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)}
    result = run_check(config, "--live")
    assert result.exit_code == 0, result.output
    assert f"app_cert_sn {cert_emulator.app_cert_sn()}" in result.output
    assert f"alipay_root_cert_sn {cert_emulator.root_cert_sn}" in result.output
    assert "PUBLIC_KEY is not set" not in result.output
    assert "Live: Alipay accepted" in result.output
    stale = run_check({**config, "ALIPAY_PUBLIC_KEY": cert_emulator.alipay_public_key_base64})
    assert "ALIPAY_PUBLIC_KEY is ignored in certificate mode" in stale.output
