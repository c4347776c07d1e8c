"""Certificate mode: SNs against the public vectors, and the config keys."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from support.keys import VECTORS, pem_private

from flask_alipay import AlipayConfigError
from flask_alipay.certs import (
    CertificateError,
    cert_sn,
    leaf_certificates,
    load_roots,
    pem_blocks,
    root_cert_sn,
    trusted_leaf,
)
from flask_alipay.config import load_config


def vector_sn(vectors: dict[str, Any], kind: str) -> tuple[str, str]:
    (entry,) = [v for v in vectors["certificate_sn"] if v["kind"].startswith(kind)]
    return (VECTORS / entry["file"]).read_text(), entry["expected"]


def test_app_cert_sn_vector(vectors: dict[str, Any]) -> None:
    text, expected = vector_sn(vectors, "app_cert_sn")
    assert cert_sn(pem_blocks(text)[0]) == expected
    assert leaf_certificates(text)[0].sn == expected


def test_alipay_cert_sn_vector(vectors: dict[str, Any]) -> None:
    text, expected = vector_sn(vectors, "alipay_cert_sn")
    (leaf,) = leaf_certificates(text)
    assert leaf.sn == expected and leaf.public_key.key_size == 2048


def test_root_cert_sn_vector_without_warnings(vectors: dict[str, Any]) -> None:
    text, expected = vector_sn(vectors, "alipay_root_cert_sn")
    assert len(pem_blocks(text)) == 4  # two RSA-signed, two ECC-signed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the iTrusChina NULL parameter must not matter
        assert root_cert_sn(text) == expected


def test_literal_backslash_n_pem_text(vectors: dict[str, Any]) -> None:
    text, expected = vector_sn(vectors, "app_cert_sn")
    assert leaf_certificates(text.strip().replace("\n", "\\n"))[0].sn == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no PEM CERTIFICATE block"),
        ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "truncated"),
    ],
)
def test_broken_certificates(text: str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        root_cert_sn(text)


def cert_config(app_key: rsa.RSAPrivateKey, **changes: Any) -> dict[str, Any]:
    config = {
        "ALIPAY_APP_ID": "2021001161683774",
        "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        "ALIPAY_APP_CERT_FILE": str(VECTORS / "appCertPublicKey_2021001161683774.crt"),
        "ALIPAY_ALIPAY_CERT": (VECTORS / "alipayCertPublicKey_RSA2.crt").read_text(),
        "ALIPAY_ROOT_CERT_FILE": str(VECTORS / "alipayRootCert.crt"),
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def test_app_cert_must_carry_our_public_key(app_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(AlipayConfigError, match="ALIPAY_APP_CERT does not carry the public half"):
        load_config(cert_config(app_key))


@pytest.mark.parametrize(
    "missing", ["ALIPAY_APP_CERT_FILE", "ALIPAY_ALIPAY_CERT", "ALIPAY_ROOT_CERT_FILE"]
)
def test_certificate_mode_needs_all_three(app_key: rsa.RSAPrivateKey, missing: str) -> None:
    key = missing.removesuffix("_FILE")
    with pytest.raises(
        AlipayConfigError, match=rf"{key} \(or {key}_FILE\) is required in certificate mode"
    ):
        load_config(cert_config(app_key, **{missing: None}))


def test_a_certificate_path_goes_in_the_file_setting(app_key: rsa.RSAPrivateKey) -> None:
    path = str(VECTORS / "alipayCertPublicKey_RSA2.crt")
    with pytest.raises(AlipayConfigError, match="for a path, set ALIPAY_ALIPAY_CERT_FILE"):
        load_config(cert_config(app_key, ALIPAY_ALIPAY_CERT=path))
    with pytest.raises(AlipayConfigError, match="ALIPAY_APP_CERT and ALIPAY_APP_CERT_FILE are"):
        load_config(cert_config(app_key, ALIPAY_APP_CERT="-----BEGIN CERTIFICATE-----"))


def test_unreadable_and_broken_certificate_settings(
    app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(AlipayConfigError, match="ALIPAY_ROOT_CERT_FILE names a file that cannot"):
        load_config(cert_config(app_key, ALIPAY_ROOT_CERT_FILE=str(tmp_path / "nope.crt")))
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    own = self_signed(app_key)
    with pytest.raises(AlipayConfigError, match="ALIPAY_ALIPAY_CERT is not a usable certificate"):
        load_config(
            cert_config(
                app_key, ALIPAY_APP_CERT_FILE=None, ALIPAY_APP_CERT=own, ALIPAY_ALIPAY_CERT=broken
            )
        )
    loaded = load_config(cert_config(app_key, ALIPAY_APP_CERT_FILE=None, ALIPAY_APP_CERT=own))
    assert loaded.cert_mode and loaded.alipay_public_key is None
    assert loaded.app_cert_sn == leaf_certificates(own)[0].sn
    assert list(loaded.alipay_certs) == ["7513daaaa48aa3ba2e4018d84402479c"]
    assert loaded.alipay_root_cert_sn == (
        "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    )


def self_signed(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "2021001161683774")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# A downloaded certificate: the chain check of the official Java SDK ------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .sign(issuer_key, hashes.SHA256())
    )


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    keys = {name: rsa.generate_private_key(65537, 2048) for name in ("root", "ca", "leaf", "evil")}
    root = _cert("Root", keys["root"], "Root", keys["root"], days=(-1, 3650))
    ca = _cert("Class 2 R1", keys["ca"], "Root", keys["root"], days=(-1, 3650))
    leaf = _cert("Alipay", keys["leaf"], "Class 2 R1", keys["ca"])
    return {"keys": keys, "root": root, "ca": ca, "leaf": leaf, "roots": load_roots(_pem(root))}


def test_a_leaf_and_its_intermediate_chain_to_the_root(pki: dict[str, Any]) -> None:
    leaf = trusted_leaf(_pem(pki["leaf"], pki["ca"]), pki["roots"])
    assert leaf.sn == cert_sn(pki["leaf"].public_bytes(serialization.Encoding.DER))
    assert leaf.public_key.public_numbers() == pki["keys"]["leaf"].public_key().public_numbers()
    assert leaf.not_after == pki["leaf"].not_valid_after_utc
    # In either order, as the Java SDK sorts by DN.
    assert trusted_leaf(_pem(pki["ca"], pki["leaf"]), pki["roots"]).sn == leaf.sn


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: _pem(p["leaf"]), "not issued by ALIPAY_ROOT_CERT"),
        (
            lambda p: _pem(
                p["leaf"], _cert("Class 2 R1", p["keys"]["evil"], "Root", p["keys"]["evil"])
            ),
            "does not verify",
        ),
        (
            lambda p: _pem(
                _cert("Alipay", p["keys"]["leaf"], "Class 2 R1", p["keys"]["evil"]), p["ca"]
            ),
            "does not verify",
        ),
        (
            lambda p: _pem(
                _cert("Alipay", p["keys"]["leaf"], "Class 2 R1", p["keys"]["ca"], days=(-9, -1)),
                p["ca"],
            ),
            "expired or not yet valid",
        ),
        (
            lambda p: _pem(
                p["leaf"], p["ca"], _cert("Other", p["keys"]["evil"], "Root", p["keys"]["root"])
            ),
            "not one complete chain",
        ),
        (lambda p: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "read"),
    ],
    ids=["no-intermediate", "forged-intermediate", "forged-leaf", "expired", "extra", "junk"],
)
def test_a_chain_that_the_root_does_not_vouch_for_is_refused(
    pki: dict[str, Any], build: Any, message: str
) -> None:
    with pytest.raises(CertificateError, match=message):
        trusted_leaf(build(pki), pki["roots"])


def test_alipays_real_certificate_needs_its_intermediate(vectors: dict[str, Any]) -> None:
    """The real bundle lacks the Class 2 R1 CA: a download must bring it along."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        roots = load_roots((VECTORS / "alipayRootCert.crt").read_bytes())
    assert roots
    with pytest.raises(CertificateError, match="not issued by ALIPAY_ROOT_CERT"):
        trusted_leaf((VECTORS / "alipayCertPublicKey_RSA2.crt").read_bytes(), roots)
