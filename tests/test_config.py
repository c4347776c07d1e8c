"""Every ALIPAY_* key: defaults, accepted spellings, and errors that name the key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from support.keys import pem_body, pem_private, pem_public

from flask_alipay import AlipayConfigError, AlipayLogin
from flask_alipay.config import ENDPOINTS, load_config
from flask_alipay.keys import same_public_key


@pytest.fixture
def base(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {
        "ALIPAY_APP_ID": "2021000000000001",
        "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        "ALIPAY_PUBLIC_KEY": pem_body(pem_public(alipay_key.public_key())),
    }


def make_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", **config)
    return app


def test_defaults(base: dict[str, Any]) -> None:
    cfg = load_config(base)
    assert (cfg.sign_type, cfg.charset, cfg.scope) == ("RSA2", "utf-8", "auth_user")
    assert (cfg.authorize_url, cfg.gateway_url) == ENDPOINTS[False]
    assert cfg.url_prefix == "/alipay" and cfg.default_next == "/"
    assert cfg.timeout == 10 and cfg.redirect_uri is None and cfg.sandbox is False


def test_sandbox_switches_both_endpoints(base: dict[str, Any]) -> None:
    cfg = load_config({**base, "ALIPAY_SANDBOX": "1"})
    assert cfg.authorize_url.startswith("https://openauth-sandbox.dl.alipaydev.com/")
    assert cfg.gateway_url == "https://openapi-sandbox.dl.alipaydev.com/gateway.do"


def test_explicit_endpoints_win(base: dict[str, Any]) -> None:
    cfg = load_config(
        {
            **base,
            "ALIPAY_SANDBOX": True,
            "ALIPAY_AUTHORIZE_URL": "http://127.0.0.1:9/auth",
            "ALIPAY_GATEWAY_URL": "http://127.0.0.1:9/gw",
        }
    )
    assert (cfg.authorize_url, cfg.gateway_url) == (
        "http://127.0.0.1:9/auth",
        "http://127.0.0.1:9/gw",
    )


@pytest.mark.parametrize(
    "spelling, wire",
    [("utf8", "utf-8"), ("utf-8", "utf-8"), ("UTF-8", "utf-8"), ("gbk", "GBK"), ("GBK", "GBK")],
)
def test_charset_spellings(base: dict[str, Any], spelling: str, wire: str) -> None:
    assert load_config({**base, "ALIPAY_CHARSET": spelling}).charset == wire


def test_rsa_and_auth_base(base: dict[str, Any]) -> None:
    cfg = load_config({**base, "ALIPAY_SIGN_TYPE": "RSA", "ALIPAY_SCOPE": "auth_base"})
    assert (cfg.sign_type, cfg.scope) == ("RSA", "auth_base")


@pytest.mark.parametrize(
    ("scope", "kept"),
    [
        ("auth_zhima2", "auth_zhima2"),
        (" auth_user , auth_ecard_v2 ", "auth_user,auth_ecard_v2"),
        (["auth_user", "auth_user"], "auth_user"),
    ],
)
def test_any_well_formed_scope_name_is_accepted(
    base: dict[str, Any], scope: Any, kept: str
) -> None:
    assert load_config({**base, "ALIPAY_SCOPE": scope}).scope == kept


def test_key_files(base: dict[str, Any], tmp_path: Path, app_key: rsa.RSAPrivateKey) -> None:
    private = tmp_path / "app_private_key.pem"
    private.write_text(pem_private(app_key, "pkcs1"))
    public = tmp_path / "alipay_public_key.txt"
    public.write_text(base["ALIPAY_PUBLIC_KEY"])
    cfg = load_config(
        {
            "ALIPAY_APP_ID": "1",
            "ALIPAY_PRIVATE_KEY_FILE": str(private),
            "ALIPAY_PUBLIC_KEY_FILE": public,
        }
    )
    assert same_public_key(cfg.private_key.public_key(), app_key.public_key())
    assert cfg.alipay_public_key is not None


BAD = [
    ({"ALIPAY_APP_ID": None}, "ALIPAY_APP_ID is required"),
    ({"ALIPAY_APP_ID": "  "}, "ALIPAY_APP_ID is required"),
    ({"ALIPAY_APP_ID": "2021 0001"}, "ALIPAY_APP_ID must not contain spaces"),
    ({"ALIPAY_PRIVATE_KEY": None}, "ALIPAY_PRIVATE_KEY .or ALIPAY_PRIVATE_KEY_FILE. is required"),
    ({"ALIPAY_PRIVATE_KEY": "bm90IGEga2V5"}, "ALIPAY_PRIVATE_KEY is not a usable RSA private key"),
    (
        {"ALIPAY_PRIVATE_KEY_FILE": "/nonexistent/key.pem", "ALIPAY_PRIVATE_KEY": None},
        "ALIPAY_PRIVATE_KEY_FILE names a file",
    ),
    ({"ALIPAY_PRIVATE_KEY_FILE": "/etc/hostname"}, "are both set"),
    ({"ALIPAY_PUBLIC_KEY": "garbage!"}, "ALIPAY_PUBLIC_KEY is not a usable RSA public key"),
    ({"ALIPAY_SIGN_TYPE": "MD5"}, "ALIPAY_SIGN_TYPE must be one of RSA2, RSA"),
    ({"ALIPAY_CHARSET": "latin1"}, "ALIPAY_CHARSET must be one of utf8, utf-8, gbk"),
    ({"ALIPAY_SCOPE": "auth-user"}, "ALIPAY_SCOPE must be scope names .lowercase letters"),
    ({"ALIPAY_SCOPE": "auth_user,Auth_X"}, "ALIPAY_SCOPE must be scope names .lowercase"),
    ({"ALIPAY_SCOPE": "auth user"}, "ALIPAY_SCOPE must be scope names .lowercase letters"),
    ({"ALIPAY_SCOPE": "auth_base,auth_user"}, "auth_base is the silent sign-in: ask for it alone"),
    ({"ALIPAY_SCOPE": " , "}, "ALIPAY_SCOPE must name at least one scope"),
    ({"ALIPAY_ID_FIELD": "union_id"}, 'ALIPAY_ID_FIELD must be "open_id" or "user_id"'),
    ({"ALIPAY_SESSION_FIELDS": "nick name"}, "ALIPAY_SESSION_FIELDS must hold profile field"),
    ({"ALIPAY_SESSION_FIELDS": 3}, "ALIPAY_SESSION_FIELDS must be a list of profile field"),
    ({"ALIPAY_SANDBOX": "maybe"}, "ALIPAY_SANDBOX must be true or false"),
    (
        {"ALIPAY_GATEWAY_URL": "openapi.alipay.com/gateway.do"},
        "ALIPAY_GATEWAY_URL must be an absolute http",
    ),
    ({"ALIPAY_AUTHORIZE_URL": "ftp://x/y"}, "ALIPAY_AUTHORIZE_URL must be an absolute http"),
    ({"ALIPAY_REDIRECT_URI": "/alipay/callback"}, "ALIPAY_REDIRECT_URI must be an absolute http"),
    ({"ALIPAY_URL_PREFIX": "alipay"}, "ALIPAY_URL_PREFIX must start with '/'"),
    ({"ALIPAY_DEFAULT_NEXT": "https://evil.example/"}, "ALIPAY_DEFAULT_NEXT must be a path"),
    ({"ALIPAY_TIMEOUT": "soon"}, "ALIPAY_TIMEOUT must be a number"),
    ({"ALIPAY_TIMEOUT": 0}, "ALIPAY_TIMEOUT must be a number"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_values_fail_at_init_app_naming_the_key(
    base: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    config = {**base, **change}
    with pytest.raises(AlipayConfigError, match=message) as caught:
        AlipayLogin(make_app({k: v for k, v in config.items() if v is not None}))
    assert isinstance(caught.value, ValueError)
    text = str(caught.value)
    assert pem_body(base["ALIPAY_PRIVATE_KEY"])[30:70] not in text
    assert base["ALIPAY_PUBLIC_KEY"][30:70] not in text
    assert caught.value.__cause__ is None


def test_app_public_key_pasted_as_alipay_public_key(
    base: dict[str, Any], app_key: rsa.RSAPrivateKey
) -> None:
    swapped = {**base, "ALIPAY_PUBLIC_KEY": pem_public(app_key.public_key())}
    with pytest.raises(AlipayConfigError, match="is your app public key") as caught:
        AlipayLogin(make_app(swapped))
    assert "ALIPAY_PUBLIC_KEY" in str(caught.value)


def test_broken_private_key_error_never_echoes_it(base: dict[str, Any]) -> None:
    body = pem_body(base["ALIPAY_PRIVATE_KEY"])
    broken = body[:100] + "$$$" + body[100:]
    with pytest.raises(AlipayConfigError) as caught:
        load_config({**base, "ALIPAY_PRIVATE_KEY": broken})
    assert body[:60] not in str(caught.value) and body[100:160] not in str(caught.value)


def test_missing_secret_key_fails_at_start(base: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config.update(base)
    with pytest.raises(AlipayConfigError, match="SECRET_KEY"):
        AlipayLogin(app)


def test_without_alipays_public_key_the_app_does_not_start(base: dict[str, Any]) -> None:
    del base["ALIPAY_PUBLIC_KEY"]
    with pytest.raises(AlipayConfigError, match=r"ALIPAY_PUBLIC_KEY \(or ALIPAY_PUBLIC_KEY_FILE\)"):
        AlipayLogin(make_app(base))


def test_running_unverified_is_explicit_and_warns_at_every_start(
    base: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    del base["ALIPAY_PUBLIC_KEY"]
    with caplog.at_level(logging.WARNING, logger="flask_alipay"):
        for _ in range(2):
            AlipayLogin(make_app({**base, "ALIPAY_VERIFY_ANSWERS": False}))
    warnings = [r for r in caplog.records if "ALIPAY_VERIFY_ANSWERS is False" in r.getMessage()]
    assert len(warnings) == 2
    assert load_config({**base, "ALIPAY_VERIFY_ANSWERS": "0"}).verify_answers is False


def test_prefix_reads_its_own_keys(base: dict[str, Any]) -> None:
    prefixed = {k.replace("ALIPAY_", "ALIPAY_CN_"): v for k, v in base.items()}
    cfg = load_config(prefixed, prefix="ALIPAY_CN_")
    assert cfg.app_id == "2021000000000001" and cfg.url_prefix == "/alipay_cn"
    with pytest.raises(AlipayConfigError, match="ALIPAY_CN_APP_ID"):
        load_config(base, prefix="ALIPAY_CN_")


def test_init_app_stores_extension_and_serves_several_apps(base: dict[str, Any]) -> None:
    alipay = AlipayLogin()
    first, second = make_app(base), make_app({**base, "ALIPAY_APP_ID": "2021000000000002"})
    alipay.init_app(first)
    alipay.init_app(second)
    assert first.extensions["alipay"] is alipay and second.extensions["alipay"] is alipay
    with first.app_context():
        assert alipay.config.app_id == "2021000000000001"
    with second.app_context():
        assert alipay.config.app_id == "2021000000000002"
    assert {r.endpoint for r in first.url_map.iter_rules()} >= {
        "alipay.login",
        "alipay.callback",
        "alipay.logout",
    }


def test_config_repr_has_no_key_material(base: dict[str, Any]) -> None:
    text = repr(load_config(base))
    assert "PRIVATE" not in text and "RSAPrivateKey" not in text and "2021000000000001" in text
