"""Who is signed in: the anonymous user, CORS preflights, and the site's own 'not signed in'."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from flask_alipay import AlipayLogin, AnonymousAlipayUser, current_alipay_user, login_required


def make_app(config: dict[str, Any]) -> tuple[Flask, AlipayLogin]:
    app = Flask("site")
    app.config.update(SECRET_KEY="test", **config)
    alipay = AlipayLogin(app)

    @app.route("/")
    def home() -> Any:
        # The check README shows: works for everyone, signed in or not.
        user = current_alipay_user
        return jsonify(
            truthy=bool(user),
            authenticated=user.is_authenticated,
            anonymous=user.is_anonymous,
            id=user.id,
            nick_name=user.get("nick_name"),
            is_none=user is None,
        )

    @app.route("/api/orders", methods=["GET", "OPTIONS"])
    @login_required
    def orders() -> Any:
        return jsonify(orders=[])

    return app, alipay


def test_anonymous_visitors_get_a_falsy_user_not_none(alipay_config: dict[str, Any]) -> None:
    app, _ = make_app(alipay_config)
    seen = app.test_client().get("/").get_json()
    assert seen == {
        "truthy": False,
        "authenticated": False,
        "anonymous": True,
        "id": None,
        "nick_name": None,
        "is_none": False,
    }


def test_signed_in_users_are_authenticated(
    alipay_config: dict[str, Any], alipay_sign_in: Any
) -> None:
    app, alipay = make_app(alipay_config)
    client = app.test_client()
    alipay_sign_in(client, "alice")
    seen = client.get("/").get_json()
    assert seen["truthy"] is seen["authenticated"] is True and seen["anonymous"] is False
    assert seen["id"] and seen["nick_name"]
    with app.test_request_context():
        assert isinstance(alipay.current_user, AnonymousAlipayUser)
        assert alipay.current_user == AnonymousAlipayUser() and not alipay.current_user


def test_cors_preflight_passes_login_required(alipay_config: dict[str, Any]) -> None:
    app, _ = make_app(alipay_config)
    client = app.test_client()
    preflight = client.options("/api/orders", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 200
    assert client.get("/api/orders").status_code == 302  # the real request is still guarded


def test_the_site_answers_unauthorized_its_own_way(
    alipay_config: dict[str, Any], alipay_sign_in: Any
) -> None:
    app, alipay = make_app(alipay_config)
    calls: list[str] = []

    @alipay.unauthorized_handler
    def please_sign_in() -> Any:
        calls.append("called")
        return jsonify(error="please sign in with Alipay"), 403

    client = app.test_client()
    refused = client.get("/api/orders")
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "please sign in with Alipay"}
    alipay_sign_in(client)
    assert client.get("/api/orders").status_code == 200
    assert calls == ["called"]


def test_named_instances_have_their_own_unauthorized_handler(
    alipay_config: dict[str, Any],
) -> None:
    app, _ = make_app(alipay_config)
    app.config.update({k.replace("ALIPAY_", "ALIPAY_CN_", 1): v for k, v in alipay_config.items()})
    cn = AlipayLogin(app, name="alipay_cn", config_prefix="ALIPAY_CN_")
    app.add_url_rule("/cn", "cn", cn.login_required(lambda: "cn members"))
    cn.unauthorized_handler(lambda: ("cn: not signed in", 401))
    client = app.test_client()
    assert client.get("/cn").get_data(as_text=True) == "cn: not signed in"
    assert client.get("/api/orders").status_code == 302  # the default instance is unchanged
