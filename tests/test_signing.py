"""The string to sign, signatures, and slicing answers byte-exactly."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support.keys import VECTORS

from flask_alipay.keys import load_private_key, load_public_key
from flask_alipay.signing import (
    AnswerFormatError,
    UndecodableAnswer,
    parse_answer,
    sign_params,
    sign_text,
    string_to_sign,
    verify_signature,
)


def alipay_sign(content: bytes, key: rsa.RSAPrivateKey, algorithm: Any = None) -> str:
    signature = key.sign(content, padding.PKCS1v15(), algorithm or hashes.SHA256())
    return base64.b64encode(signature).decode()


# Golden vectors ---------------------------------------------------------


def test_request_vectors_reproduce_exactly(vectors: dict[str, Any]) -> None:
    assert len(vectors["request_signing"]) == 3
    for vector in vectors["request_signing"]:
        key = load_private_key(vector["private_key"])
        signed = sign_params(vector["params"], key, vector["sign_type"], "utf-8")
        assert signed == vector["expected_sign"], vector["source"]


def test_logto_vector_skips_the_empty_parameter(vectors: dict[str, Any]) -> None:
    params = vectors["request_signing"][0]["params"]
    assert params["empty_property"] == ""
    assert "empty_property" not in string_to_sign(params)


def test_response_vector_verifies_over_the_exact_substring(vectors: dict[str, Any]) -> None:
    vector = vectors["response_verification"][0]
    key = load_public_key((VECTORS / vector["alipay_public_key_file"]).read_text())
    answer = parse_answer(vector["raw_body"].encode("utf-8"), vector["node"], "utf-8")
    assert answer.content.decode() == vector["signed_content"]
    assert verify_signature(answer.content, answer.sign, key, vector["sign_type"])
    reserialised = json.dumps(json.loads(answer.content)).encode()
    assert not verify_signature(reserialised, answer.sign, key, vector["sign_type"])


# The string to sign ------------------------------------------------------


def test_string_to_sign_sorts_drops_sign_and_empties_and_keeps_sign_type() -> None:
    text = string_to_sign(
        {"method": "m", "app_id": "1", "sign": "xx", "sign_type": "RSA2", "e": "", "n": None}
    )
    assert text == "app_id=1&method=m&sign_type=RSA2"


def test_string_to_sign_uses_raw_values_not_url_encoded() -> None:
    assert string_to_sign({"b": "a b&c=d/é", "a": "x"}) == "a=x&b=a b&c=d/é"


@pytest.mark.parametrize("charset", ["utf-8", "GBK"])
def test_signing_encodes_in_the_request_charset(app_key: rsa.RSAPrivateKey, charset: str) -> None:
    text = "nick_name=支付宝用户&timestamp=2024-01-01 08:00:00"
    signature = base64.b64decode(sign_text(text, app_key, "RSA2", charset))
    app_key.public_key().verify(
        signature, text.encode(charset), padding.PKCS1v15(), hashes.SHA256()
    )


def test_rsa_signs_with_sha1(app_key: rsa.RSAPrivateKey) -> None:
    signature = base64.b64decode(sign_text("a=1", app_key, "RSA", "utf-8"))
    app_key.public_key().verify(signature, b"a=1", padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(ValueError, match="RSA2 or RSA"):
        sign_text("a=1", app_key, "MD5", "utf-8")


# Answers -----------------------------------------------------------------


def _body(node: str, content: str, sign: str, extra: str = "") -> bytes:
    return f'{{"{node}":{content},{extra}"sign":"{sign}"}}'.encode()


def test_braces_and_quotes_inside_strings(alipay_key: rsa.RSAPrivateKey) -> None:
    content = r'{"code":"10000","nick_name":"a}b{\"}\\","city":"\\"}'
    body = _body("x_response", content, alipay_sign(content.encode(), alipay_key))
    answer = parse_answer(body, "x_response", "utf-8")
    assert answer.content == content.encode()
    assert answer.data["nick_name"] == 'a}b{"}\\'
    assert verify_signature(answer.content, answer.sign, alipay_key.public_key(), "RSA2")


def test_cert_sn_between_node_and_sign(alipay_key: rsa.RSAPrivateKey) -> None:
    content = '{"code":"10000","msg":"Success"}'
    body = _body(
        "x_response",
        content,
        alipay_sign(content.encode(), alipay_key),
        extra='"alipay_cert_sn":"7513daaaa48aa3ba2e4018d84402479c",',
    )
    answer = parse_answer(body, "x_response", "utf-8")
    assert answer.content == content.encode()
    assert answer.cert_sn == "7513daaaa48aa3ba2e4018d84402479c"
    assert verify_signature(answer.content, answer.sign, alipay_key.public_key(), "RSA2")


def test_gbk_trail_byte_that_is_a_backslash(alipay_key: rsa.RSAPrivateKey) -> None:
    # 嘰 is 0x87 0x5C in GBK: a naive scanner reads the closing quote as escaped.
    content = '{"code":"10000","nick_name":"嘰","city":"杭州"}'.encode("gbk")
    assert b'\\"' in content
    body = (
        b'{"x_response":'
        + content
        + b',"sign":"'
        + alipay_sign(content, alipay_key).encode()
        + b'"}'
    )
    answer = parse_answer(body, "x_response", "GBK")
    assert answer.data["nick_name"] == "嘰"
    assert answer.content == content
    assert verify_signature(answer.content, answer.sign, alipay_key.public_key(), "RSA2")


def test_gbk_error_answer_when_utf8_was_asked() -> None:
    content = '{"code":"40002","sub_code":"isv.code-invalid","sub_msg":"授权码code无效"}'
    body = b'{"error_response":' + content.encode("gbk") + b',"sign":""}'
    with pytest.raises(UndecodableAnswer):
        parse_answer(body, "alipay_system_oauth_token_response", "utf-8")
    answer = parse_answer(body, "alipay_system_oauth_token_response", "GBK")
    assert answer.node == "error_response"
    assert answer.charset == "GBK"
    assert answer.data["sub_msg"] == "授权码code无效"
    assert answer.sign == ""


def test_escaped_slashes_verify_by_the_retry(alipay_key: rsa.RSAPrivateKey) -> None:
    sent = r'{"avatar":"https:\/\/tfs.alipayobjects.com\/a.png"}'
    signed_over = sent.replace("\\/", "/").encode()
    signature = alipay_sign(signed_over, alipay_key)
    assert verify_signature(sent.encode(), signature, alipay_key.public_key(), "RSA2")
    # And the exact bytes still verify when that is what was signed.
    exact = alipay_sign(sent.encode(), alipay_key)
    assert verify_signature(sent.encode(), exact, alipay_key.public_key(), "RSA2")


def test_tampered_and_wrong_key_do_not_verify(
    alipay_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    content = b'{"open_id":"abc"}'
    signature = alipay_sign(content, alipay_key)
    assert not verify_signature(b'{"open_id":"abd"}', signature, alipay_key.public_key(), "RSA2")
    assert not verify_signature(content, signature, other_key.public_key(), "RSA2")
    assert not verify_signature(content, signature, alipay_key.public_key(), "RSA")
    assert not verify_signature(content, "not base64!", alipay_key.public_key(), "RSA2")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b'{"x_response":{"code":"10000"',
        b'{"x_response":{"a":"}"},"sign":"s"} trailing',
        b'{"x_response":{"a":1},"x_response":{"a":2},"sign":"s"}',
        b'{"other_response":{"a":1},"sign":"s"}',
        b'{"x_response":"not an object","sign":"s"}',
        b'{"x_response":{"a":1},"sign":42}',
        b'[{"x_response":{}}]',
        b'{"x_response":{"a":1,},"sign":"s"}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_answers_are_refused(body: bytes) -> None:
    with pytest.raises(AnswerFormatError):
        parse_answer(body, "x_response", "utf-8")


def test_node_is_found_whatever_the_member_order() -> None:
    body = b'{"sign":"abc", "x_response" : {"k":"v"} }'
    answer = parse_answer(body, "x_response", "utf-8")
    assert answer.content == b'{"k":"v"}' and answer.sign == "abc"
