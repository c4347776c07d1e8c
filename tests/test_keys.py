"""Keys in every form users paste, and errors that never quote them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.keys import pem_body, pem_private, pem_public

from flask_alipay.keys import (
    KeyFormatError,
    load_private_key,
    load_public_key,
    public_key_base64,
    same_public_key,
)


def _same(a: rsa.RSAPrivateKey, b: rsa.RSAPrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_private_pem_with_real_newlines(app_key: rsa.RSAPrivateKey, fmt: str) -> None:
    assert _same(load_private_key(pem_private(app_key, fmt)), app_key)


@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_private_pem_with_literal_backslash_n(app_key: rsa.RSAPrivateKey, fmt: str) -> None:
    squashed = pem_private(app_key, fmt).strip().replace("\n", "\\n")
    assert "\n" not in squashed
    assert _same(load_private_key(squashed), app_key)


@pytest.mark.parametrize("fmt", ["pkcs8", "pkcs1"])
def test_private_bare_base64_body(app_key: rsa.RSAPrivateKey, fmt: str) -> None:
    body = pem_body(pem_private(app_key, fmt))
    assert "-----" not in body and "\n" not in body
    assert _same(load_private_key(body), app_key)


def test_private_pem_with_crlf_and_quotes(app_key: rsa.RSAPrivateKey) -> None:
    text = '"' + pem_private(app_key).replace("\n", "\r\n") + '"'
    assert _same(load_private_key(text), app_key)


def test_private_bytes_accepted(app_key: rsa.RSAPrivateKey) -> None:
    assert _same(load_private_key(pem_private(app_key).encode()), app_key)


def test_public_pem_and_bare(app_key: rsa.RSAPrivateKey) -> None:
    public = app_key.public_key()
    pem = pem_public(public)
    assert same_public_key(load_public_key(pem), public)
    assert same_public_key(load_public_key(pem_body(pem)), public)
    assert same_public_key(load_public_key(public_key_base64(public)), public)
    pkcs1 = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    ).decode()
    assert same_public_key(load_public_key(pkcs1), public)


def test_public_key_base64_is_one_line_without_header(app_key: rsa.RSAPrivateKey) -> None:
    text = public_key_base64(app_key.public_key())
    assert "\n" not in text and "BEGIN" not in text
    assert text == pem_body(pem_public(app_key.public_key()))


def test_same_public_key_tells_keys_apart(
    app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    assert same_public_key(app_key.public_key(), app_key.public_key())
    assert not same_public_key(app_key.public_key(), other_key.public_key())


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("", "empty"),
        ("not a key at all!", "base64"),
        ("QUJDREVGRw==", "could not be parsed"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "could not be parsed"),
    ],
)
def test_private_garbage_is_a_clear_error(text: str, phrase: str) -> None:
    with pytest.raises(KeyFormatError, match=phrase):
        load_private_key(text)


def test_private_error_never_quotes_the_key(app_key: rsa.RSAPrivateKey) -> None:
    body = pem_body(pem_private(app_key))
    broken = body[:200] + "!!" + body[200:]
    with pytest.raises(KeyFormatError) as caught:
        load_private_key(broken)
    message = str(caught.value)
    assert body[:40] not in message and body[180:220] not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_encrypted_private_key_is_refused(app_key: rsa.RSAPrivateKey) -> None:
    pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(KeyFormatError, match="encrypted"):
        load_private_key(pem)


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_private_key(pem)
    public_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="not an RSA key"):
        load_public_key(public_pem)


def test_private_key_given_as_public_is_refused(app_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyFormatError, match="private key"):
        load_public_key(pem_private(app_key))
