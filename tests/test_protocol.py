"""Reading answers as a man in the middle would reshape them: the data is what was signed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support.keys import pem_private

from flask_alipay import AlipayRefused, MalformedAnswer
from flask_alipay.config import AlipayConfig, load_config
from flask_alipay.keys import public_key_base64
from flask_alipay.protocol import USER_INFO_METHOD, node_name, read_answer

NODE = node_name(USER_INFO_METHOD).encode()


@pytest.fixture(scope="module")
def config(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AlipayConfig:
    return load_config(
        {
            "ALIPAY_APP_ID": "2021000000000001",
            "ALIPAY_PRIVATE_KEY": pem_private(app_key),
            "ALIPAY_PUBLIC_KEY": public_key_base64(alipay_key.public_key()),
        }
    )


def sign(content: bytes, key: rsa.RSAPrivateKey) -> bytes:
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256()))


def answer(content: bytes, signature: bytes, extra: bytes = b"") -> bytes:
    return b'{"' + NODE + b'":' + content + extra + b',"sign":"' + signature + b'"}'


def read(config: AlipayConfig, body: bytes) -> dict[str, Any]:
    return read_answer(config, USER_INFO_METHOD, 200, body)


SIGNED = (
    '{"code":"10000","msg":"Success","open_id":"o1","nick_name":"小明",'
    '"avatar":"https:\\/\\/tfs.alipayobjects.com\\/a.png"}'
)


def test_doubled_backslashes_are_read_from_the_bytes_that_verified(
    config: AlipayConfig, alipay_key: rsa.RSAPrivateKey
) -> None:
    content = SIGNED.encode()
    assert read(config, answer(content, sign(content, alipay_key)))["avatar"] == (
        "https://tfs.alipayobjects.com/a.png"
    )
    # In the middle, \/ becomes \\/: the retry (\/ read as /) gives back the signed bytes.
    tampered = content.replace(b"\\/", b"\\\\/")
    data = read(config, answer(tampered, sign(content, alipay_key)))
    assert data["avatar"] == "https://tfs.alipayobjects.com/a.png"  # not "https:\\/\\/..."
    assert "\\" not in data["avatar"]


def test_unescaped_signing_still_verifies_and_reads_the_same(
    config: AlipayConfig, alipay_key: rsa.RSAPrivateKey
) -> None:
    sent = SIGNED.encode()
    signed_over = sent.replace(b"\\/", b"/")  # some answers are signed with / unescaped
    assert read(config, answer(sent, sign(signed_over, alipay_key)))["avatar"] == (
        "https://tfs.alipayobjects.com/a.png"
    )


def test_a_success_answer_in_another_charset_is_refused(
    config: AlipayConfig, alipay_key: rsa.RSAPrivateKey
) -> None:
    content = SIGNED.encode("gbk")
    with pytest.raises(MalformedAnswer, match="not utf-8 text"):
        read(config, answer(content, sign(content, alipay_key)))


def test_a_stray_byte_outside_the_node_leaves_the_signed_nickname_alone(
    config: AlipayConfig, alipay_key: rsa.RSAPrivateKey
) -> None:
    content = SIGNED.encode()
    # Outside what was signed: a valid GBK character (啊) that is not utf-8.  Reading the
    # whole answer as GBK would turn the signed 小明 into 灏忔槑.
    stray = b'},"padding":"\xb0\xa1"'
    body = b'{"' + NODE + b'":' + content + stray[1:] + b',"sign":"'
    body += sign(content, alipay_key) + b'"}'
    assert read(config, body)["nick_name"] == "小明"


def test_an_error_in_gbk_is_still_read_when_utf8_was_asked(config: AlipayConfig) -> None:
    error = '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid",'
    error += '"sub_msg":"授权码code无效"}'
    body = b'{"error_response":' + error.encode("gbk") + b',"sign":""}'
    with pytest.raises(AlipayRefused) as caught:
        read(config, body)
    assert caught.value.sub_code == "isv.code-invalid" and caught.value.status_code == 400
    assert caught.value.sub_msg == "授权码code无效"
