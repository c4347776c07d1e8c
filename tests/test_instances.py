"""Several Alipay apps in one Flask app: separate keys, blueprints, sessions, signals."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify
from support.browser import authorize, finish, query_of, start_login
from support.keys import pem_private

from flask_alipay import AlipayLogin, current_alipay_user, login_failed, user_logged_in
from flask_alipay.testing import AlipayEmulator

CN_APP_ID = "2021000000000222"


@pytest.fixture
def two_apps(
    alipay_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> Flask:
    alipay_emulator.register_app(CN_APP_ID, other_key.public_key())
    config = alipay_emulator.config()
    app = Flask("brands")
    app.config.update(SECRET_KEY="s", ALIPAY_PRIVATE_KEY=pem_private(app_key), **config)
    app.config.update(
        {
            "ALIPAY_CN_APP_ID": CN_APP_ID,
            "ALIPAY_CN_PRIVATE_KEY": pem_private(other_key),
            "ALIPAY_CN_AUTHORIZE_URL": config["ALIPAY_AUTHORIZE_URL"],
            "ALIPAY_CN_GATEWAY_URL": config["ALIPAY_GATEWAY_URL"],
            "ALIPAY_CN_PUBLIC_KEY": config["ALIPAY_PUBLIC_KEY"],
            "ALIPAY_CN_SCOPE": "auth_base",
        }
    )
    AlipayLogin(app)
    alipay_cn = AlipayLogin(app, name="alipay_cn", config_prefix="ALIPAY_CN_")

    @app.route("/cn-only")
    @alipay_cn.login_required
    def cn_only() -> Any:
        return jsonify(cn=alipay_cn.current_user.id if alipay_cn.current_user else None)

    @app.route("/both")
    def both() -> Any:
        default = current_alipay_user
        cn = alipay_cn.current_user
        return jsonify(default=default.id if default else None, cn=cn.id if cn else None)

    return app


def test_each_instance_has_its_own_blueprint_and_app_id(two_apps: Flask) -> None:
    endpoints = {rule.endpoint: rule.rule for rule in two_apps.url_map.iter_rules()}
    assert endpoints["alipay.login"] == "/alipay/login"
    assert endpoints["alipay_cn.login"] == "/alipay_cn/login"
    assert endpoints["alipay_cn.callback"] == "/alipay_cn/callback"
    client = two_apps.test_client()
    default = query_of(start_login(client))
    cn = query_of(client.get("/alipay_cn/login").headers["Location"])
    assert default["app_id"] == "2021000000000001" and cn["app_id"] == CN_APP_ID
    assert cn["scope"] == "auth_base" and cn["redirect_uri"].endswith("/alipay_cn/callback")


def test_two_instances_sign_in_different_users(
    two_apps: Flask, alipay_emulator: AlipayEmulator
) -> None:
    alice = alipay_emulator.add_user("alice")
    bob = alipay_emulator.add_user("bob")
    seen: list[tuple[str, str]] = []

    def on_login(sender: Any, user: Any, name: str, **extra: Any) -> None:
        seen.append((name, user.id))

    user_logged_in.connect(on_login, sender=two_apps)
    try:
        client = two_apps.test_client()
        assert client.get("/cn-only").headers["Location"].startswith("/alipay_cn/login")
        finish(client, authorize(start_login(client), "alice"))
        cn_url = client.get("/alipay_cn/login").headers["Location"]
        assert finish(client, authorize(cn_url, "bob")).status_code == 302
    finally:
        user_logged_in.disconnect(on_login, sender=two_apps)
    assert seen == [("alipay", alice.open_id), ("alipay_cn", bob.open_id)]
    assert client.get("/both").json == {"default": alice.open_id, "cn": bob.open_id}
    assert client.get("/cn-only").json == {"cn": bob.open_id}
    # The auth_base instance made no profile call; each used its own APPID.
    assert [(r.method, r.query["app_id"]) for r in alipay_emulator.requests] == [
        ("alipay.system.oauth.token", "2021000000000001"),
        ("alipay.user.info.share", "2021000000000001"),
        ("alipay.system.oauth.token", CN_APP_ID),
    ]
    client.post("/alipay_cn/logout")
    assert client.get("/both").json == {"default": alice.open_id, "cn": None}


def test_a_state_from_one_instance_is_refused_by_the_other(two_apps: Flask) -> None:
    client = two_apps.test_client()
    state = query_of(start_login(client))["state"]
    failures: list[str] = []

    def on_failure(sender: Any, error: Any, name: str, **extra: Any) -> None:
        failures.append(name)

    login_failed.connect(on_failure, sender=two_apps)
    try:
        response = client.get(f"/alipay_cn/callback?state={state}&auth_code=x")
    finally:
        login_failed.disconnect(on_failure, sender=two_apps)
    assert response.status_code == 400 and failures == ["alipay_cn"]
