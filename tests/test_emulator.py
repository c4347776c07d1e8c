"""The Alipay emulator, driven over real loopback HTTP with hand-signed requests.

These tests speak the protocol themselves (flask_alipay.signing only), so they
check the emulator against docs/protocol.md rather than against the extension.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support.gateway_client import APP_ID, TOKEN, TOKEN_NODE, USER_INFO, USER_INFO_NODE, Client

from flask_alipay.keys import load_public_key, public_key_base64
from flask_alipay.signing import (
    AnswerFormatError,
    parse_answer,
    sign_text,
    string_to_sign,
    verify_signature,
)
from flask_alipay.testing import AlipayEmulator, beijing_now

CALLBACK = "https://rp.example.com/callback"


@pytest.fixture
def client(emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> Client:
    return Client(emulator, app_key)


def authorize(emulator: AlipayEmulator, **params: str) -> requests.Response:
    assert emulator.server is not None
    query = {"app_id": APP_ID, "scope": "auth_user", "redirect_uri": CALLBACK, "state": "s1"}
    query.update(params)
    return requests.get(
        emulator.server.authorize_url, params=query, allow_redirects=False, timeout=10
    )


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def sign_in(client: Client, user_key: str | None = None) -> dict[str, Any]:
    code = client.emulator.issue_code(user_key)
    node, data = client.exchange(code)
    assert node == TOKEN_NODE
    return data


# -- the authorize page ------------------------------------------------------


def test_authorize_auto_approve_redirects_with_auth_code(emulator: AlipayEmulator) -> None:
    response = authorize(emulator, redirect_uri=CALLBACK + "?next=%2Fhome", state="abc-123_~.")
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?next=%2Fhome&app_id=")
    params = callback_params(response)
    assert params["app_id"] == APP_ID
    assert params["source"] == "alipay_wallet"
    assert params["scope"] == "auth_user"
    assert params["state"] == "abc-123_~."
    assert params["next"] == "/home"
    assert len(params["auth_code"]) == 32
    assert "code" not in params


def test_login_as_signs_in_distinct_users(emulator: AlipayEmulator, client: Client) -> None:
    alice = callback_params(authorize(emulator, login_as="alice"))["auth_code"]
    bob = callback_params(authorize(emulator, login_as="bob"))["auth_code"]
    default = callback_params(authorize(emulator))["auth_code"]
    ids = {client.exchange(code)[1]["open_id"] for code in (alice, bob, default)}
    assert ids == {
        emulator.users["alice"].open_id,
        emulator.users["bob"].open_id,
        emulator.default_user.open_id,
    }
    assert len(ids) == 3
    assert emulator.users["alice"].nick_name


@pytest.mark.parametrize(
    "params",
    [
        {"app_id": "2021999999999999"},
        {"scope": "auth_userinfo"},
        {"redirect_uri": ""},
        {"redirect_uri": "/relative/callback"},
        {"state": "x" * 101},
        {"state": "中文"},
        {"state": "a b"},
    ],
)
def test_authorize_refuses_bad_requests(emulator: AlipayEmulator, params: dict[str, str]) -> None:
    response = authorize(emulator, **params)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_consent_page_shows_app_and_escapes_users(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        auto_approve=False,
    )
    emulator.add_user("evil", nick_name="<script>alert(1)</script>")
    with emulator.serve():
        response = authorize(emulator)
    assert response.status_code == 200
    assert APP_ID in response.text
    assert "同意 / Approve" in response.text and "取消 / Cancel" in response.text
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "小明" in response.text


def test_consent_approve_and_cancel(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        auto_approve=False,
    )
    picked = emulator.add_user("picked", id_kind="user_id")
    with emulator.serve() as server:
        query = {"app_id": APP_ID, "scope": "auth_user", "redirect_uri": CALLBACK, "state": "st"}
        url = server.authorize_url + "?" + urllib.parse.urlencode(query)

        cancelled = requests.post(
            url, data={"user": "picked", "decision": "cancel"}, allow_redirects=False, timeout=10
        )
        params = callback_params(cancelled)
        assert params == {"app_id": APP_ID, "state": "st"}

        approved = requests.post(
            url, data={"user": "picked", "decision": "approve"}, allow_redirects=False, timeout=10
        )
        code = callback_params(approved)["auth_code"]
        _, token = Client(emulator, app_key).exchange(code)
    assert token["user_id"] == picked.user_id
    assert "open_id" not in token


def test_consent_page_adds_a_user(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        auto_approve=False,
    )
    with emulator.serve() as server:
        page = authorize(emulator)
        assert 'name="new_nick_name"' in page.text
        query = {"app_id": APP_ID, "scope": "auth_user", "redirect_uri": CALLBACK, "state": "s"}
        url = server.authorize_url + "?" + urllib.parse.urlencode(query)
        form = {"user": "default", "new_nick_name": "新来的", "new_id_kind": "both"}
        approved = requests.post(
            url, data={**form, "decision": "approve"}, allow_redirects=False, timeout=10
        )
        _, token = Client(emulator, app_key).exchange(callback_params(approved)["auth_code"])
    (added,) = [u for u in emulator.users.values() if u.nick_name == "新来的"]
    assert token["open_id"] == added.open_id and token["user_id"] == added.user_id


# -- alipay.system.oauth.token and alipay.user.info.share ---------------------


def test_token_exchange_and_profile(emulator: AlipayEmulator, client: Client) -> None:
    code = callback_params(authorize(emulator))["auth_code"]
    node, token = client.exchange(code)
    assert node == TOKEN_NODE
    assert "code" not in token
    assert token["open_id"] == emulator.default_user.open_id
    assert "user_id" not in token and "union_id" not in token
    assert isinstance(token["expires_in"], int) and token["expires_in"] == 1296000
    assert isinstance(token["re_expires_in"], int)
    assert token["access_token"] != token["refresh_token"]
    auth_start = datetime.strptime(token["auth_start"], "%Y-%m-%d %H:%M:%S")
    assert abs((auth_start - beijing_now()).total_seconds()) < 60

    response = client.call(USER_INFO, {}, auth_token=token["access_token"])
    assert response.headers["Content-Type"] == "text/html;charset=utf-8"
    # Alipay's own byte layout: raw Chinese, escaped slashes, compact.
    assert "小明".encode() in response.content
    assert b"http:\\/\\/127.0.0.1:" in response.content and b"\\/avatar\\/" in response.content
    assert response.content.startswith(b'{"alipay_user_info_share_response":{"code":"10000",')
    node, profile = client.read(response, USER_INFO_NODE)
    assert profile["code"] == "10000" and profile["msg"] == "Success"
    assert profile["nick_name"] == "小明"
    assert profile["avatar"] == emulator.server.url + "/avatar/default.svg"  # type: ignore[union-attr]
    avatar = requests.get(profile["avatar"], timeout=5)
    assert avatar.headers["Content-Type"].startswith("image/svg+xml")
    assert "小" in avatar.text
    assert profile["gender"] == "m"
    assert profile["open_id"] == emulator.default_user.open_id


def test_absent_profile_fields_are_left_out(emulator: AlipayEmulator, client: Client) -> None:
    emulator.add_user("bare", id_kind="both", nick_name=None, avatar=None, union_id="u-1")
    token = sign_in(client, "bare")
    assert token["user_id"].startswith("2088") and len(token["user_id"]) == 16
    assert 32 <= len(token["open_id"]) <= 64
    assert token["union_id"] == "u-1"
    _, profile = client.profile(token["access_token"])
    assert "nick_name" not in profile and "avatar" not in profile and "gender" not in profile
    assert profile["user_id"] == token["user_id"]


def test_answer_signature_is_over_the_exact_node_bytes(
    emulator: AlipayEmulator, client: Client
) -> None:
    code = emulator.issue_code()
    response = client.call(TOKEN, {"grant_type": "authorization_code", "code": code})
    answer = parse_answer(response.content, TOKEN_NODE, "utf-8")
    assert response.content.startswith(b'{"alipay_system_oauth_token_response":' + answer.content)
    other = load_public_key(emulator.alipay_public_key_base64)
    assert verify_signature(answer.content, answer.sign, other, "RSA2")
    assert not verify_signature(answer.content + b" ", answer.sign, other, "RSA2")


def test_code_is_single_use(emulator: AlipayEmulator, client: Client) -> None:
    code = emulator.issue_code()
    assert client.exchange(code)[0] == TOKEN_NODE
    node, error = client.exchange(code)
    assert node == "error_response"
    assert error == {
        "code": "40002",
        "msg": "Invalid Arguments",
        "sub_code": "isv.code-invalid",
        "sub_msg": error["sub_msg"],
    }
    assert error["sub_msg"].startswith(
        "授权码code无效，解决方案：https://open.alipay.com/api/errCheck?traceId="
    )


def test_code_for_another_app_is_refused_and_burned(
    emulator: AlipayEmulator, client: Client, other_key: rsa.RSAPrivateKey
) -> None:
    emulator.register_app("2021000000000002", public_key_base64(other_key.public_key()))
    code = emulator.issue_code()
    other_app = Client(emulator, other_key, app_id="2021000000000002")
    assert other_app.exchange(code)[1]["sub_code"] == "isv.code-invalid"
    assert client.exchange(code)[1]["sub_code"] == "isv.code-invalid"


def test_code_expires(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        code_ttl=0.2,
    )
    with emulator.serve():
        client = Client(emulator, app_key)
        fresh = emulator.issue_code()
        stale = emulator.issue_code()
        assert client.exchange(fresh)[0] == TOKEN_NODE
        time.sleep(0.3)
        assert client.exchange(stale)[1]["sub_code"] == "isv.code-invalid"
        manual = emulator.issue_code()
        emulator.code_ttl = 180
        emulator.expire_code(manual)
        assert client.exchange(manual)[1]["sub_code"] == "isv.code-invalid"


def test_wrong_key_signature_is_refused_and_quoted(
    emulator: AlipayEmulator, client: Client, other_key: rsa.RSAPrivateKey
) -> None:
    code = emulator.issue_code()
    response = client.call(TOKEN, {"grant_type": "authorization_code", "code": code}, key=other_key)
    node, error = client.read(response, TOKEN_NODE)
    assert node == "error_response"
    assert error["code"] == "40002"
    assert error["sub_code"] == "isv.invalid-signature"
    assert error["sub_msg"].startswith("验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
    quoted = error["sub_msg"].split("网关生成的验签字符串为：", 1)[1].split("，解决方案：")[0]
    assert quoted == emulator.requests[-1].string_to_sign.replace("&", "&amp;")
    assert f"&amp;code={code}&amp;" in quoted and "sign_type=RSA2" in quoted
    assert "&amp;sign=" not in quoted
    # Refused before the business layer: the code is still good.
    assert client.exchange(code)[0] == TOKEN_NODE


def test_utc_timestamp_is_refused(emulator: AlipayEmulator, client: Client) -> None:
    utc = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    code = emulator.issue_code()
    _, error = client.exchange(code, timestamp=utc)
    assert error["sub_code"] == "isv.invalid-timestamp"


@pytest.mark.parametrize("timestamp", ["2024-1-2 3:04:05", "2024/01/02 03:04:05", "now"])
def test_malformed_timestamp_is_refused(
    emulator: AlipayEmulator, client: Client, timestamp: str
) -> None:
    _, error = client.exchange(emulator.issue_code(), timestamp=timestamp)
    assert error["sub_code"] == "isv.invalid-timestamp"


def test_charset_missing_from_query(emulator: AlipayEmulator, client: Client) -> None:
    response = client.call(
        TOKEN,
        {"grant_type": "authorization_code", "code": emulator.issue_code()},
        move_to_body=("charset",),
    )
    _, error = client.read(response, TOKEN_NODE)
    assert error["sub_code"] == "isv.invalid-signature"
    assert error["sub_msg"].startswith(
        "验签出错，请确认charset参数放在了URL查询字符串中，解决方案："
    )


def test_unknown_charset_is_refused(emulator: AlipayEmulator, client: Client) -> None:
    response = client.call(TOKEN, {"grant_type": "authorization_code"}, charset="latin-1")
    assert client.read(response, TOKEN_NODE)[1]["sub_code"] == "isv.invalid-charset"


def test_logto_spelling_utf8_is_accepted(emulator: AlipayEmulator, client: Client) -> None:
    node, token = client.exchange(emulator.issue_code(), charset="utf8")
    assert node == TOKEN_NODE and token["access_token"]
    assert emulator.requests[-1].charset == "utf8"


@pytest.mark.parametrize("name", ["sign_type", "timestamp", "app_id", "method"])
def test_common_param_in_body_is_refused(
    emulator: AlipayEmulator, client: Client, name: str
) -> None:
    response = client.call(
        TOKEN,
        {"grant_type": "authorization_code", "code": emulator.issue_code()},
        move_to_body=(name,),
    )
    _, error = client.read(response, TOKEN_NODE)
    assert error["code"] == "40002"
    assert error["sub_code"] == "isv.invalid-parameter"
    assert name in error["sub_msg"]


def test_business_param_in_query_is_refused(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    assert emulator.server is not None
    params = {
        "app_id": APP_ID,
        "method": TOKEN,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "grant_type": "authorization_code",
        "code": emulator.issue_code(),
    }
    params["sign"] = sign_text(string_to_sign(params), app_key, "RSA2", "utf-8")
    response = requests.post(emulator.server.gateway_url, params=params, timeout=10)
    error = parse_answer(response.content, TOKEN_NODE, "utf-8").data
    assert error["sub_code"] == "isv.invalid-parameter"
    assert "grant_type" in error["sub_msg"]


def test_requests_are_recorded_as_sent(emulator: AlipayEmulator, client: Client) -> None:
    code = emulator.issue_code()
    client.exchange(code)
    record = emulator.requests[-1]
    assert record.method == TOKEN
    assert record.form == {"grant_type": "authorization_code", "code": code}
    assert set(record.query) == {
        "app_id",
        "method",
        "format",
        "charset",
        "sign_type",
        "sign",
        "timestamp",
        "version",
    }
    assert record.content_type == "application/x-www-form-urlencoded;charset=utf-8"
    assert record.string_to_sign.startswith(f"app_id={APP_ID}&charset=utf-8&code={code}&")
    emulator.reset()
    assert emulator.requests == []


def test_unknown_app_and_app_without_key(emulator: AlipayEmulator, client: Client) -> None:
    """Texts and shapes as real answers: an unknown APPID's answer has no sign member."""
    stranger = Client(emulator, client.key, app_id="2021000000009999")
    unsigned = parse_answer(stranger.call(TOKEN, {"code": "x"}).content, TOKEN_NODE, "utf-8")
    assert unsigned.node == "error_response" and not unsigned.sign
    assert b'"sign"' not in stranger.call(TOKEN, {"code": "x"}).content
    assert unsigned.data["sub_code"] == "isv.invalid-app-id"
    emulator.register_app("2021000000000003", None)
    keyless = Client(emulator, client.key, app_id="2021000000000003")
    error = keyless.exchange("x")[1]
    assert (error["code"], error["msg"], error["sub_code"]) == (
        "40003",
        "Insufficient Conditions",
        "isv.missing-signature-config",
    )
    assert error["sub_msg"].startswith("应用未配置对应签名算法的公钥或者证书，解决方案：")


def test_unknown_method_and_grant_type(emulator: AlipayEmulator, client: Client) -> None:
    response = client.call(TOKEN, {"grant_type": "authorization_code"})
    assert client.read(response, TOKEN_NODE)[1]["sub_code"] == "isv.code-invalid"
    response = client.call("alipay.user.info.shared", {})
    assert client.read(response, "alipay_user_info_shared_response")[1]["sub_code"] == (
        "isv.invalid-method"
    )
    response = client.call(TOKEN, {"grant_type": "password"})
    assert client.read(response, TOKEN_NODE)[1]["sub_code"] == "isv.grant-type-invalid"
    response = client.call(TOKEN, {})
    assert client.read(response, TOKEN_NODE)[1]["sub_code"] == "isv.grant-type-invalid"


def test_unknown_sign_type_is_refused(emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> None:
    assert emulator.server is not None
    query = {
        "app_id": APP_ID,
        "method": TOKEN,
        "charset": "utf-8",
        "sign_type": "MD5",
        "sign": "AAAA",
        "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
    }
    response = requests.post(emulator.server.gateway_url, params=query, timeout=10)
    error = parse_answer(response.content, TOKEN_NODE, "utf-8").data
    assert error["sub_code"] == "isv.invalid-signature-type"


def test_gbk_request_with_chinese_nickname(emulator: AlipayEmulator, client: Client) -> None:
    emulator.add_user("zhang", nick_name="张三丰", city="北京市")
    code = emulator.issue_code("zhang")
    _, token = client.exchange(code, charset="GBK")
    response = client.call(USER_INFO, {}, auth_token=token["access_token"], charset="GBK")
    assert response.headers["Content-Type"] == "text/html;charset=GBK"
    assert "张三丰".encode("gbk") in response.content
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")
    _, profile = client.read(response, USER_INFO_NODE, "GBK")
    assert profile["nick_name"] == "张三丰" and profile["city"] == "北京市"


def test_gbk_request_with_chinese_business_value_is_decoded_in_gbk(
    emulator: AlipayEmulator, client: Client
) -> None:
    # A value outside ASCII must be percent-decoded as GBK for the signature to hold.
    response = client.call(
        TOKEN, {"grant_type": "authorization_code", "code": "授权码"}, charset="GBK"
    )
    assert client.read(response, TOKEN_NODE, "GBK")[1]["sub_code"] == "isv.code-invalid"
    assert emulator.requests[-1].form["code"] == "授权码"


def test_rsa_sha1(emulator: AlipayEmulator, client: Client) -> None:
    code = emulator.issue_code()
    response = client.call(
        TOKEN, {"grant_type": "authorization_code", "code": code}, sign_type="RSA"
    )
    node, _ = client.read(response, TOKEN_NODE, sign_type="RSA")
    assert node == TOKEN_NODE
    answer = parse_answer(response.content, TOKEN_NODE, "utf-8")
    assert not verify_signature(answer.content, answer.sign, emulator.alipay_public_key, "RSA2")


def test_rsa_request_signed_with_sha256_is_refused(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    assert emulator.server is not None
    query = {
        "app_id": APP_ID,
        "method": TOKEN,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA",
        "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
    }
    body = {"grant_type": "authorization_code", "code": emulator.issue_code()}
    query["sign"] = sign_text(string_to_sign({**query, **body}), app_key, "RSA2", "utf-8")
    response = requests.post(emulator.server.gateway_url, params=query, data=body, timeout=10)
    error = parse_answer(response.content, TOKEN_NODE, "utf-8").data
    assert error["sub_code"] == "isv.invalid-signature"


def test_auth_base_token_is_refused_by_user_info(emulator: AlipayEmulator, client: Client) -> None:
    code = emulator.issue_code(scope="auth_base")
    _, token = client.exchange(code)
    assert token["open_id"] == emulator.default_user.open_id
    node, answer = client.profile(token["access_token"])
    assert node == USER_INFO_NODE
    assert answer == {
        "code": "20001",
        "msg": "Insufficient Token Permissions",
        "sub_code": "aop.invalid-auth-token",
        "sub_msg": "无效的访问令牌",
    }


def test_unknown_and_expired_access_token(emulator: AlipayEmulator, client: Client) -> None:
    assert client.profile("authusrBnope")[1]["sub_code"] == "aop.invalid-auth-token"
    token = sign_in(client)
    assert client.profile(token["access_token"])[1]["code"] == "10000"
    emulator.expire_token(token["access_token"])
    node, answer = client.profile(token["access_token"])
    assert node == USER_INFO_NODE
    assert answer["code"] == "20001" and answer["sub_code"] == "aop.auth-token-time-out"


def test_refresh_flow(emulator: AlipayEmulator, client: Client) -> None:
    first = sign_in(client)
    node, second = client.refresh(first["refresh_token"])
    assert node == TOKEN_NODE
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["open_id"] == first["open_id"]
    assert client.profile(second["access_token"])[1]["code"] == "10000"
    # The old refresh token is burned.
    assert client.refresh(first["refresh_token"])[1]["sub_code"] == "isv.refresh-token-invalid"
    emulator.expire_token(second["refresh_token"])
    assert client.refresh(second["refresh_token"])[1]["sub_code"] == "isv.refresh-token-time-out"
    assert client.refresh("nope")[1]["sub_code"] == "isv.refresh-token-invalid"
    with pytest.raises(KeyError):
        emulator.expire_token("nope")


def test_expires_as_string(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        expires_as_string=True,
        token_ttl=3600,
    )
    with emulator.serve():
        token = sign_in(Client(emulator, app_key))
    assert token["expires_in"] == "3600" and token["re_expires_in"] == "2592000"


def test_sign_unescaped_slashes_needs_the_java_sdk_retry(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        sign_unescaped_slashes=True,
    )
    with emulator.serve():
        client = Client(emulator, app_key)
        token = sign_in(client)
        response = client.call(USER_INFO, {}, auth_token=token["access_token"])
    answer = parse_answer(response.content, USER_INFO_NODE, "utf-8")
    assert b"\\/" in answer.content
    signature = base64.b64decode(answer.sign)
    with pytest.raises(InvalidSignature):
        emulator.alipay_public_key.verify(
            signature, answer.content, padding.PKCS1v15(), hashes.SHA256()
        )
    assert verify_signature(answer.content, answer.sign, emulator.alipay_public_key, "RSA2")


def test_config_points_at_the_running_server(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emulator = AlipayEmulator(
        strict=True, app_public_key=app_key.public_key(), alipay_private_key=alipay_key
    )
    with pytest.raises(RuntimeError):
        emulator.config()
    with emulator.serve() as server:
        config = emulator.config()
        assert server.url.startswith("http://127.0.0.1:")
        assert config == {
            "ALIPAY_APP_ID": APP_ID,
            "ALIPAY_AUTHORIZE_URL": server.url + "/oauth2/publicAppAuthorize.htm",
            "ALIPAY_GATEWAY_URL": server.url + "/gateway.do",
            "ALIPAY_PUBLIC_KEY": emulator.alipay_public_key_base64,
        }
        assert "\n" not in config["ALIPAY_PUBLIC_KEY"]
        assert load_public_key(emulator.alipay_public_key_pem).public_numbers() == (
            alipay_key.public_key().public_numbers()
        )
    with pytest.raises(requests.ConnectionError):
        requests.get(server.gateway_url, timeout=2)
    started = emulator.start()
    try:
        assert requests.get(started.authorize_url, timeout=5).status_code == 400
    finally:
        emulator.stop()


def test_concurrent_sign_ins(emulator: AlipayEmulator, client: Client) -> None:
    results: dict[str, str] = {}

    def run(name: str) -> None:
        code = callback_params(authorize(emulator, login_as=name))["auth_code"]
        results[name] = client.exchange(code)[1]["open_id"]

    threads = [threading.Thread(target=run, args=(f"u{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(results[name] == emulator.users[name].open_id for name in results)
    assert len(set(results.values())) == 8


# -- injected failures ---------------------------------------------------------


def test_inject_sub_code_on_token_method(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(TOKEN, sub_code="isp.unknow-error", code="20000", msg="Service Unavailable")
    node, error = client.exchange(emulator.issue_code())
    assert node == "error_response"
    assert error["sub_code"] == "isp.unknow-error" and error["code"] == "20000"
    # Consumed: the next call is answered normally.
    assert client.exchange(emulator.issue_code())[0] == TOKEN_NODE


def test_inject_sub_code_on_user_info_answers_inside_the_node(
    emulator: AlipayEmulator, client: Client
) -> None:
    token = sign_in(client)
    emulator.inject(
        USER_INFO,
        sub_code="isv.insufficient-isv-permissions",
        code="40006",
        msg="Insufficient Permissions",
    )
    node, error = client.profile(token["access_token"])
    assert node == USER_INFO_NODE
    assert error["code"] == "40006" and error["sub_code"] == "isv.insufficient-isv-permissions"


def test_inject_matches_method_and_times(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(USER_INFO, sub_code="aop.unknow-error", times=2)
    token = sign_in(client)  # not the user-info method: untouched
    assert client.profile(token["access_token"])[1]["sub_code"] == "aop.unknow-error"
    assert client.profile(token["access_token"])[1]["sub_code"] == "aop.unknow-error"
    assert client.profile(token["access_token"])[1]["code"] == "10000"


def test_inject_delay(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(delay=0.5)
    with pytest.raises(requests.Timeout):
        client.call(TOKEN, {"grant_type": "authorization_code"}, timeout=0.1)
    emulator.inject(delay=0.3)
    started = time.monotonic()
    assert client.exchange(emulator.issue_code())[0] == TOKEN_NODE
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("flag", ["bad_signature", "wrong_key"])
def test_inject_bad_signatures(emulator: AlipayEmulator, client: Client, flag: str) -> None:
    emulator.inject(TOKEN, bad_signature=flag == "bad_signature", wrong_key=flag == "wrong_key")
    response = client.call(
        TOKEN, {"grant_type": "authorization_code", "code": emulator.issue_code()}
    )
    answer = parse_answer(response.content, TOKEN_NODE, "utf-8")
    assert answer.node == TOKEN_NODE and answer.data["access_token"]
    assert answer.sign
    assert not verify_signature(answer.content, answer.sign, emulator.alipay_public_key, "RSA2")


def test_inject_unsigned(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(unsigned=True)
    response = client.call(
        TOKEN, {"grant_type": "authorization_code", "code": emulator.issue_code()}
    )
    answer = parse_answer(response.content, TOKEN_NODE, "utf-8")
    assert answer.sign == ""
    assert b'"sign"' not in response.content


def test_inject_gbk_error(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(gbk_error=True, sub_code="isv.code-invalid", sub_msg="授权码code无效")
    response = client.call(TOKEN, {"grant_type": "authorization_code", "code": "x"})
    assert response.headers["Content-Type"] == "text/html;charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")
    assert "授权码code无效".encode("gbk") in response.content
    answer = parse_answer(response.content, TOKEN_NODE, "GBK")  # the charset it came in
    assert answer.charset == "GBK" and answer.node == "error_response"
    assert answer.data["sub_msg"] == "授权码code无效"
    assert verify_signature(answer.content, answer.sign, emulator.alipay_public_key, "RSA2")


def test_inject_html_status(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(html_status=502)
    response = client.call(TOKEN, {"grant_type": "authorization_code", "code": "x"})
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"502 Bad Gateway" in response.content
    with pytest.raises(AnswerFormatError):
        parse_answer(response.content, TOKEN_NODE, "utf-8")


def test_inject_truncated(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(truncated=True)
    response = client.call(
        TOKEN, {"grant_type": "authorization_code", "code": emulator.issue_code()}
    )
    assert response.status_code == 200
    assert response.content.startswith(b'{"alipay_system_oauth_token_response":{')
    with pytest.raises(AnswerFormatError):
        parse_answer(response.content, TOKEN_NODE, "utf-8")


def test_reset_clears_injections(emulator: AlipayEmulator, client: Client) -> None:
    emulator.inject(html_status=500, times=5)
    emulator.reset()
    assert emulator.injections == []
    assert client.exchange(emulator.issue_code())[0] == TOKEN_NODE
