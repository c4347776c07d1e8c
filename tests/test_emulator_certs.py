"""The emulator in certificate mode (公钥证书), over real loopback HTTP.

The client here is written by hand (flask_alipay.signing and flask_alipay.certs
only), so the emulator is checked against docs/protocol.md §7 and §9 rather than
against the extension's own certificate support.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.keys import pem_public

from flask_alipay.certs import cert_sn, leaf_certificates, pem_blocks, root_cert_sn
from flask_alipay.keys import load_private_key
from flask_alipay.signing import SignedAnswer, parse_answer, sign_text, string_to_sign
from flask_alipay.signing import verify_signature as verify
from flask_alipay.testing import AlipayEmulator, beijing_now

APP_ID = "2021000000000001"
OTHER_APP_ID = "2021000000000002"
TOKEN = "alipay.system.oauth.token"
USER_INFO = "alipay.user.info.share"
TOKEN_NODE = "alipay_system_oauth_token_response"
USER_INFO_NODE = "alipay_user_info_share_response"
RSA_SIGNATURE_ARC = "1.2.840.113549.1.1."
EMULATOR = (sys.executable, "-m", "flask_alipay.testing")


@pytest.fixture
def emulator(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> Iterator[AlipayEmulator]:
    emu = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
    )
    with emu.serve():
        yield emu


@dataclass
class CertClient:
    """A hand-written client in certificate mode: the SNs go in the query and are signed."""

    emulator: AlipayEmulator
    key: rsa.RSAPrivateKey
    app_id: str = APP_ID
    sns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, emulator: AlipayEmulator, key: rsa.RSAPrivateKey) -> CertClient:
        sns = {
            "app_cert_sn": emulator.app_cert_sn(),
            "alipay_root_cert_sn": emulator.root_cert_sn,
        }
        return cls(emulator, key, sns=sns)

    def call(
        self,
        method: str,
        business: dict[str, str],
        *,
        charset: str = "utf-8",
        auth_token: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        unsigned_extra: dict[str, str] | None = None,
    ) -> requests.Response:
        query = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": charset,
            "sign_type": "RSA2",
            "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            **self.sns,
        }
        if auth_token is not None:
            query["auth_token"] = auth_token
        text = string_to_sign({**query, **business})
        query["sign"] = sign_text(text, key or self.key, "RSA2", charset)
        query.update(unsigned_extra or {})
        assert self.emulator.server is not None
        url = self.emulator.server.gateway_url + "?" + urllib.parse.urlencode(query)
        return requests.post(
            url,
            data=urllib.parse.urlencode(business, encoding=charset).encode("ascii"),
            headers={"Content-Type": f"application/x-www-form-urlencoded;charset={charset}"},
            timeout=10,
        )

    def exchange(self, code: str, **options: Any) -> requests.Response:
        return self.call(TOKEN, {"grant_type": "authorization_code", "code": code}, **options)


def read(response: requests.Response, node: str, charset: str = "utf-8") -> SignedAnswer:
    assert response.status_code == 200, response.text
    return parse_answer(response.content, node, charset)


def alipay_key_for(emulator: AlipayEmulator, sn: str | None) -> rsa.RSAPublicKey:
    """What a client does: the key of the certificate in alipay_cert_pem with that SN."""
    matching = [leaf for leaf in leaf_certificates(emulator.alipay_cert_pem) if leaf.sn == sn]
    assert matching, f"no Alipay certificate with SN {sn!r}"
    return matching[0].public_key


def verified(emulator: AlipayEmulator, answer: SignedAnswer) -> dict[str, Any]:
    assert answer.sign, "every answer is signed"
    key = alipay_key_for(emulator, answer.cert_sn)
    assert verify(answer.content, answer.sign, key, "RSA2"), "the answer does not verify"
    return answer.data


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


# -- the certificates ------------------------------------------------------------


def test_written_files_carry_the_emulators_sns(emulator: AlipayEmulator, tmp_path: Path) -> None:
    paths = emulator.write_cert_files(tmp_path / "certs")

    assert paths == {
        "ALIPAY_APP_CERT_FILE": tmp_path / "certs" / f"appCertPublicKey_{APP_ID}.crt",
        "ALIPAY_ALIPAY_CERT_FILE": tmp_path / "certs" / "alipayCertPublicKey_RSA2.crt",
        "ALIPAY_ROOT_CERT_FILE": tmp_path / "certs" / "alipayRootCert.crt",
    }
    app_text = paths["ALIPAY_APP_CERT_FILE"].read_text(encoding="ascii")
    alipay_text = paths["ALIPAY_ALIPAY_CERT_FILE"].read_text(encoding="ascii")
    root_text = paths["ALIPAY_ROOT_CERT_FILE"].read_text(encoding="ascii")
    assert [cert_sn(der) for der in pem_blocks(app_text)] == [emulator.app_cert_sn()]
    assert [leaf.sn for leaf in leaf_certificates(alipay_text)] == [emulator.alipay_cert_sn]
    assert root_cert_sn(root_text) == emulator.root_cert_sn
    # The files are what config() hands out as text.
    config = emulator.config()
    assert config["ALIPAY_APP_CERT"] == app_text
    assert config["ALIPAY_ALIPAY_CERT"] == alipay_text
    assert config["ALIPAY_ROOT_CERT"] == root_text


def test_config_in_cert_mode_has_certificates_not_a_public_key(emulator: AlipayEmulator) -> None:
    assert emulator.server is not None
    config = emulator.config()

    assert set(config) == {
        "ALIPAY_APP_ID",
        "ALIPAY_AUTHORIZE_URL",
        "ALIPAY_GATEWAY_URL",
        "ALIPAY_APP_CERT",
        "ALIPAY_ALIPAY_CERT",
        "ALIPAY_ROOT_CERT",
    }
    assert config["ALIPAY_APP_ID"] == APP_ID
    assert config["ALIPAY_GATEWAY_URL"] == emulator.server.gateway_url
    assert config["ALIPAY_APP_CERT"] == emulator.app_cert_pem()
    assert config["ALIPAY_ALIPAY_CERT"] == emulator.alipay_cert_pem
    assert config["ALIPAY_ROOT_CERT"] == emulator.root_cert_pem


def test_root_sn_counts_the_rsa_root_only(emulator: AlipayEmulator) -> None:
    text = emulator.root_cert_pem
    blocks = pem_blocks(text)
    assert len(blocks) == 2
    # As the real file: a non-RSA root first, the blocks separated by a blank line.
    assert "-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----" in text
    ec_root, rsa_root = (x509.load_der_x509_certificate(der) for der in blocks)
    assert rsa_root.signature_algorithm_oid.dotted_string.startswith(RSA_SIGNATURE_ARC)
    assert isinstance(ec_root.public_key(), ec.EllipticCurvePublicKey)
    assert not ec_root.signature_algorithm_oid.dotted_string.startswith(RSA_SIGNATURE_ARC)
    for root in (rsa_root, ec_root):
        assert root.issuer == root.subject and is_ca(root)
        root.verify_directly_issued_by(root)
    assert rsa_root.issuer.rfc4514_string().startswith("CN=Emulated Alipay Root CA,")

    assert emulator.root_cert_sn.split("_") == [cert_sn(blocks[1])]


def test_alipay_cert_file_holds_alipays_certificate_alone(emulator: AlipayEmulator) -> None:
    """As the real ``alipayCertPublicKey_RSA2.crt``; the download carries the intermediate."""
    (only,) = pem_blocks(emulator.alipay_cert_pem)
    blocks = pem_blocks(emulator.alipay_cert_download_pem)
    assert len(blocks) == 2 and blocks[0] == only
    leaf, intermediate = (x509.load_der_x509_certificate(der) for der in blocks)
    root = x509.load_der_x509_certificate(pem_blocks(emulator.root_cert_pem)[1])
    # The chain: root -> intermediate (a CA not in the bundle) -> Alipay's leaf.
    assert is_ca(intermediate) and not is_ca(leaf)
    intermediate.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(intermediate)
    assert blocks[0] not in pem_blocks(emulator.root_cert_pem)

    leaves = leaf_certificates(emulator.alipay_cert_pem)
    assert [entry.sn for entry in leaves] == [cert_sn(only)] == [emulator.alipay_cert_sn]
    assert same_key(leaves[0].public_key, emulator.alipay_public_key)


def test_app_cert_carries_the_app_key(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    (leaf,) = leaf_certificates(emulator.app_cert_pem())
    assert same_key(leaf.public_key, app_key.public_key())
    assert leaf.sn == emulator.app_cert_sn(APP_ID)
    cert = x509.load_der_x509_certificate(pem_blocks(emulator.app_cert_pem())[0])
    intermediate = x509.load_der_x509_certificate(pem_blocks(emulator.alipay_cert_download_pem)[1])
    cert.verify_directly_issued_by(intermediate)

    emulator.register_app(OTHER_APP_ID, pem_public(other_key.public_key()))
    (other,) = leaf_certificates(emulator.app_cert_pem(OTHER_APP_ID))
    assert same_key(other.public_key, other_key.public_key())
    assert other.sn != leaf.sn

    # The same key again keeps the certificate; a new key gets a new one.
    emulator.register_app(APP_ID, app_key.public_key())
    assert emulator.app_cert_sn() == leaf.sn
    emulator.register_app(OTHER_APP_ID, app_key.public_key())
    assert emulator.app_cert_sn(OTHER_APP_ID) not in (other.sn, leaf.sn)
    with pytest.raises(KeyError, match="2021000000000099"):
        emulator.app_cert_pem("2021000000000099")


def test_each_emulator_makes_its_own_pki(app_key: rsa.RSAPrivateKey) -> None:
    one = AlipayEmulator(strict=True, app_public_key=app_key.public_key(), cert_mode=True)
    two = AlipayEmulator(strict=True, app_public_key=app_key.public_key(), cert_mode=True)
    assert one.root_cert_sn != two.root_cert_sn
    assert one.alipay_cert_sn != two.alipay_cert_sn
    assert one.app_cert_sn() != two.app_cert_sn()


def test_key_mode_has_no_certificates(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    emu = AlipayEmulator(
        strict=True, app_public_key=app_key.public_key(), alipay_private_key=alipay_key
    )
    assert not emu.cert_mode
    for read_it in (
        lambda: emu.root_cert_pem,
        lambda: emu.alipay_cert_pem,
        lambda: emu.alipay_cert_sn,
        lambda: emu.root_cert_sn,
        emu.app_cert_pem,
        emu.app_cert_sn,
        emu.rotate_alipay_cert,
        lambda: emu.write_cert_files(tmp_path),
    ):
        with pytest.raises(RuntimeError, match="cert_mode=True"):
            read_it()
    with emu.serve():
        assert set(emu.config()) == {
            "ALIPAY_APP_ID",
            "ALIPAY_AUTHORIZE_URL",
            "ALIPAY_GATEWAY_URL",
            "ALIPAY_PUBLIC_KEY",
        }


# -- the gateway -------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["utf-8", "GBK"])
def test_token_exchange_answers_with_the_alipay_cert_sn(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, charset: str
) -> None:
    client = CertClient.of(emulator, app_key)
    response = client.exchange(emulator.issue_code(), charset=charset)
    answer = read(response, TOKEN_NODE, charset)

    assert answer.node == TOKEN_NODE
    assert answer.cert_sn == emulator.alipay_cert_sn
    data = verified(emulator, answer)
    assert data["access_token"] and data["open_id"] == emulator.default_user.open_id
    # {"<node>":{...},"alipay_cert_sn":"<sn>","sign":"<b64>"}, in that order.
    body = response.content
    node_end = body.index(answer.content) + len(answer.content)
    assert body.startswith(f'{{"{TOKEN_NODE}":'.encode("ascii"))
    tail = re.fullmatch(
        rb',"alipay_cert_sn":"([0-9a-f]{32})","sign":"[A-Za-z0-9+/=]+"}', body[node_end:]
    )
    assert tail is not None, body[node_end:]
    assert tail.group(1).decode("ascii") == emulator.alipay_cert_sn

    profile = read(client.call(USER_INFO, {}, auth_token=data["access_token"]), USER_INFO_NODE)
    assert profile.cert_sn == emulator.alipay_cert_sn
    assert verified(emulator, profile)["code"] == "10000"


@pytest.mark.parametrize("sn", [None, "", "wrong", "other app", "root"])
def test_missing_or_wrong_app_cert_sn_is_refused(
    emulator: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
    sn: str | None,
) -> None:
    emulator.register_app(OTHER_APP_ID, other_key.public_key())
    client = CertClient.of(emulator, app_key)
    substitutes = {
        "wrong": "0" * 32,
        "other app": emulator.app_cert_sn(OTHER_APP_ID),
        "root": emulator.root_cert_sn,
    }
    if sn is None:
        del client.sns["app_cert_sn"]
    else:
        client.sns["app_cert_sn"] = substitutes.get(sn, sn)
    code = emulator.issue_code()

    answer = read(client.exchange(code), TOKEN_NODE)
    assert answer.node == "error_response"
    error = verified(emulator, answer)
    if sn in (None, ""):  # as Alipay answers a call without one
        assert (error["code"], error["sub_code"]) == ("40001", "isv.missing-app-cert-sn")
        assert error["sub_msg"].startswith("缺少应用公钥证书序列号，解决方案：")
    else:
        assert error["sub_code"] == "isv.app-cert-not-exist"
        assert error["sub_msg"].startswith("应用公钥证书不存在，解决方案：")
    assert answer.cert_sn == emulator.alipay_cert_sn


@pytest.mark.parametrize("sn", [None, "", "wrong", "with the ECC root", "app"])
def test_missing_or_wrong_root_cert_sn_is_refused(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, sn: str | None
) -> None:
    client = CertClient.of(emulator, app_key)
    every_root = "_".join(cert_sn(der) for der in pem_blocks(emulator.root_cert_pem))
    substitutes = {
        "wrong": "0" * 32,
        "with the ECC root": every_root,  # a client that forgot to skip non-RSA roots
        "app": emulator.app_cert_sn(),
    }
    if sn is None:
        del client.sns["alipay_root_cert_sn"]
    else:
        client.sns["alipay_root_cert_sn"] = substitutes.get(sn, sn)

    answer = read(client.exchange(emulator.issue_code()), TOKEN_NODE)
    error = verified(emulator, answer)
    assert answer.node == "error_response"
    assert error["sub_code"] == "invalid-alipay-root-cert-sn"
    assert answer.cert_sn == emulator.alipay_cert_sn


def test_the_sns_are_signed_parameters(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    client = CertClient.of(emulator, app_key)
    sns, client.sns = client.sns, {}
    answer = read(client.exchange(emulator.issue_code(), unsigned_extra=sns), TOKEN_NODE)
    assert verified(emulator, answer)["sub_code"] == "isv.invalid-signature"


def test_signature_is_checked_before_the_sns(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    client = CertClient.of(emulator, app_key)
    client.sns["app_cert_sn"] = "0" * 32
    answer = read(client.exchange(emulator.issue_code(), key=other_key), TOKEN_NODE)
    assert verified(emulator, answer)["sub_code"] == "isv.invalid-signature"


def test_each_app_must_send_its_own_app_cert_sn(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    emulator.register_app(OTHER_APP_ID, other_key.public_key())
    other = CertClient(
        emulator,
        other_key,
        app_id=OTHER_APP_ID,
        sns={
            "app_cert_sn": emulator.app_cert_sn(OTHER_APP_ID),
            "alipay_root_cert_sn": emulator.root_cert_sn,
        },
    )
    code = emulator.issue_code(app_id=OTHER_APP_ID)
    data = verified(emulator, read(other.exchange(code), TOKEN_NODE))
    assert "access_token" in data


def test_error_answers_carry_the_sn(emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> None:
    client = CertClient.of(emulator, app_key)
    sn = emulator.alipay_cert_sn

    bad_code = read(client.exchange("not-a-code"), TOKEN_NODE)
    assert json.loads(bad_code.content)["sub_code"] == "isv.code-invalid"
    assert bad_code.cert_sn == sn
    assert bad_code.sign == ""  # as Alipay has answered it in certificate mode

    emulator.inject(TOKEN, sub_code="isp.unknow-error")
    injected = read(client.exchange(emulator.issue_code()), TOKEN_NODE)
    assert injected.node == "error_response"
    assert verified(emulator, injected)["sub_code"] == "isp.unknow-error"
    assert injected.cert_sn == sn

    emulator.inject(TOKEN, gbk_error=True, sub_code="isv.code-invalid", sub_msg="授权码无效")
    gbk = read(client.exchange(emulator.issue_code()), TOKEN_NODE, "GBK")
    assert verified(emulator, gbk)["sub_msg"] == "授权码无效"
    assert gbk.cert_sn == sn

    bad_token = read(client.call(USER_INFO, {}, auth_token="nope"), USER_INFO_NODE)
    assert bad_token.node == USER_INFO_NODE
    assert verified(emulator, bad_token)["sub_code"] == "aop.invalid-auth-token"
    assert bad_token.cert_sn == sn


def test_rotation_changes_the_sn_on_answers(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    client = CertClient.of(emulator, app_key)
    old_sn, old_pem = emulator.alipay_cert_sn, emulator.alipay_cert_pem

    new_sn = emulator.rotate_alipay_cert()
    assert new_sn == emulator.alipay_cert_sn != old_sn
    answer = read(client.exchange(emulator.issue_code()), TOKEN_NODE)
    assert answer.cert_sn == new_sn
    # An app holding the old file does not know the SN; the key is still the same.
    assert [leaf.sn for leaf in leaf_certificates(old_pem)] == [old_sn]
    (old_leaf,) = leaf_certificates(old_pem)
    assert verify(answer.content, answer.sign, old_leaf.public_key, "RSA2")
    assert "access_token" in verified(emulator, answer)


def test_rotation_with_a_new_key_signs_with_it(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    client = CertClient.of(emulator, app_key)
    (old_leaf,) = leaf_certificates(emulator.alipay_cert_pem)

    new_sn = emulator.rotate_alipay_cert(new_key=True)
    answer = read(client.exchange(emulator.issue_code()), TOKEN_NODE)

    assert answer.cert_sn == new_sn != old_leaf.sn
    assert not same_key(emulator.alipay_public_key, old_leaf.public_key)
    assert not verify(answer.content, answer.sign, old_leaf.public_key, "RSA2")
    (new_leaf,) = leaf_certificates(emulator.alipay_cert_pem)
    assert same_key(new_leaf.public_key, emulator.alipay_public_key)
    assert "access_token" in verified(emulator, answer)


DOWNLOAD = "alipay.open.app.alipaycert.download"
DOWNLOAD_NODE = "alipay_open_app_alipaycert_download_response"


def test_the_download_serves_every_certificate_it_issued_by_sn(
    emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    client = CertClient.of(emulator, app_key)
    old_sn = emulator.alipay_cert_sn
    new_sn = emulator.rotate_alipay_cert()
    for sn in (old_sn, new_sn):
        response = client.call(DOWNLOAD, {"biz_content": f'{{"alipay_cert_sn":"{sn}"}}'})
        answer = read(response, DOWNLOAD_NODE)
        data = verified(emulator, answer)
        chain = base64.b64decode(data["alipay_cert_content"])
        leaves = leaf_certificates(chain)
        assert [leaf.sn for leaf in leaves] == [sn]
        assert len(pem_blocks(chain)) == 2  # the leaf and its intermediate


@pytest.mark.parametrize(
    ("biz_content", "sub_code"),
    [
        ('{"alipay_cert_sn":"' + "0" * 32 + '"}', "isv.alipay-cert-not-exist"),
        ('{"alipay_cert_sn":""}', "isv.missing-alipay-cert-sn"),
        ("{}", "isv.missing-alipay-cert-sn"),
        ("not json", "isv.missing-alipay-cert-sn"),
        (None, "isv.missing-alipay-cert-sn"),
    ],
    ids=["unknown-sn", "empty-sn", "no-sn", "not-json", "no-biz-content"],
)
def test_the_download_refuses_what_it_cannot_serve(
    emulator: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    biz_content: str | None,
    sub_code: str,
) -> None:
    client = CertClient.of(emulator, app_key)
    business = {} if biz_content is None else {"biz_content": biz_content}
    answer = read(client.call(DOWNLOAD, business), DOWNLOAD_NODE)
    assert answer.node == "error_response"
    assert verified(emulator, answer)["sub_code"] == sub_code


def test_the_download_does_not_exist_in_key_mode(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emu = AlipayEmulator(
        strict=True, app_public_key=app_key.public_key(), alipay_private_key=alipay_key
    )
    with emu.serve():
        client = CertClient(emu, app_key)
        response = client.call(DOWNLOAD, {"biz_content": '{"alipay_cert_sn":"' + "0" * 32 + '"}'})
        answer = read(response, DOWNLOAD_NODE)
        assert answer.node == "error_response" and answer.cert_sn is None
        assert verify(answer.content, answer.sign, alipay_key.public_key(), "RSA2")
        assert answer.data["sub_code"] == "isv.invalid-method"


def test_key_mode_accepts_sn_params_and_answers_without_an_sn(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> None:
    emu = AlipayEmulator(
        strict=True, app_public_key=app_key.public_key(), alipay_private_key=alipay_key
    )
    with emu.serve():
        client = CertClient(emu, app_key, sns={"app_cert_sn": "x", "alipay_root_cert_sn": "y"})
        response = client.exchange(emu.issue_code())
        answer = read(response, TOKEN_NODE)
        assert answer.node == TOKEN_NODE and answer.cert_sn is None
        assert b"alipay_cert_sn" not in response.content
        assert verify(answer.content, answer.sign, alipay_key.public_key(), "RSA2")


def test_point_refuses_cert_mode(emulator: AlipayEmulator) -> None:
    from flask import Flask

    with pytest.raises(RuntimeError, match="certificate mode"):
        emulator.point(Flask("site"))


# -- the command line ----------------------------------------------------------------


def test_cli_cert_mode_writes_the_files_and_prints_their_paths(tmp_path: Path) -> None:
    cert_dir = tmp_path / "nested" / "certs"
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", "--cert-mode", "--cert-dir", str(cert_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    settings: dict[str, str] = {}
    last = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            last = line
            if line.startswith("# Alipay emulator on"):
                break
            if "=" in line and not line.startswith("#"):
                name, value = line.strip().split("=", 1)
                settings[name] = value
        else:
            raise AssertionError(f"the emulator exited: {process.wait()}")

        assert last.startswith("# Alipay emulator on http://127.0.0.1:")
        assert "ALIPAY_PUBLIC_KEY" not in settings
        assert settings["ALIPAY_PRIVATE_KEY"]  # no --app-public-key: a throwaway app key
        app_file = settings["ALIPAY_APP_CERT_FILE"]
        assert app_file == str(cert_dir / f"appCertPublicKey_{APP_ID}.crt")
        assert settings["ALIPAY_ALIPAY_CERT_FILE"] == str(cert_dir / "alipayCertPublicKey_RSA2.crt")
        assert settings["ALIPAY_ROOT_CERT_FILE"] == str(cert_dir / "alipayRootCert.crt")
        app_text = Path(app_file).read_text(encoding="ascii")
        alipay_text = Path(settings["ALIPAY_ALIPAY_CERT_FILE"]).read_text(encoding="ascii")
        root_text = Path(settings["ALIPAY_ROOT_CERT_FILE"]).read_text(encoding="ascii")
        assert len(leaf_certificates(alipay_text)) == 1
        assert len(root_cert_sn(root_text).split("_")) == 1

        # The printed settings are enough to get past the certificate checks.
        app_key = load_private_key(settings["ALIPAY_PRIVATE_KEY"])
        (app_leaf,) = leaf_certificates(app_text)
        assert same_key(app_leaf.public_key, app_key.public_key())
        gateway = settings["ALIPAY_GATEWAY_URL"]
        assert gateway.startswith("http://127.0.0.1:")
        query = {
            "app_id": settings["ALIPAY_APP_ID"],
            "method": TOKEN,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "app_cert_sn": app_leaf.sn,
            "alipay_root_cert_sn": root_cert_sn(root_text),
        }
        # Not a code: an unknown one answers "sign":"" in certificate mode, as at Alipay.
        business = {"grant_type": "refresh_token", "refresh_token": "unknown"}
        query["sign"] = sign_text(string_to_sign({**query, **business}), app_key, "RSA2", "utf-8")
        response = requests.post(
            gateway + "?" + urllib.parse.urlencode(query), data=business, timeout=10
        )
        answer = read(response, TOKEN_NODE)
        (alipay_leaf,) = leaf_certificates(alipay_text)
        assert answer.cert_sn == alipay_leaf.sn
        assert verify(answer.content, answer.sign, alipay_leaf.public_key, "RSA2")
        assert answer.data["sub_code"] == "isv.refresh-token-invalid"  # past every cert check
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_cert_dir_defaults_under_the_current_folder(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", "--cert-mode"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            printed.append(line)
            if line.startswith("# Alipay emulator on"):
                break
        else:
            raise AssertionError(f"the emulator exited: {process.wait()}: {printed}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    folder = (tmp_path / "alipay-emulator-certs").resolve()
    assert f"ALIPAY_ROOT_CERT_FILE={folder / 'alipayRootCert.crt'}\n" in printed
    assert sorted(p.name for p in folder.iterdir()) == [
        "alipayCertPublicKey_RSA2.crt",
        "alipayRootCert.crt",
        f"appCertPublicKey_{APP_ID}.crt",
    ]


def test_cli_cert_dir_needs_cert_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [*EMULATOR, "--port", "0", "--cert-dir", "x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--cert-mode" in result.stderr
    assert not (tmp_path / "x").exists()
