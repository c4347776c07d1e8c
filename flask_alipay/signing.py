"""The string to sign, signing, and finding and verifying the signed text of an answer.

Everything here works on plain values and bytes: no Flask, no HTTP.  Alipay signs
the exact bytes of one JSON member of its answer, so answers are never
re-serialised; a small scanner finds the member's byte range instead.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = [
    "SIGN_TYPES",
    "AnswerFormatError",
    "SignedAnswer",
    "UndecodableAnswer",
    "parse_answer",
    "read_node",
    "sign_params",
    "sign_text",
    "signed_bytes",
    "string_to_sign",
    "verify_signature",
]

#: Alipay's sign_type values and the hash each one means.
SIGN_TYPES: dict[str, type[hashes.HashAlgorithm]] = {
    "RSA2": hashes.SHA256,
    "RSA": hashes.SHA1,
}

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPENERS, _CLOSERS = b"{[", b"}]"
_WHITESPACE = b" \t\r\n"
_SCALAR_END = b",}]" + _WHITESPACE


class AnswerFormatError(ValueError):
    """A gateway answer whose shape is not the one Alipay signs."""


class UndecodableAnswer(AnswerFormatError):
    """A node whose bytes are not text in the charset they were read in."""


def string_to_sign(params: Mapping[str, object]) -> str:
    """Alipay's canonical string: non-empty params but ``sign``, sorted, raw ``k=v``."""
    pairs = sorted(
        (name, str(value))
        for name, value in params.items()
        if name != "sign" and value is not None and str(value) != ""
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


_PKCS1 = padding.PKCS1v15()
#: One hash object per sign_type: they are stateless descriptions, safe to share.
_HASHES: dict[str, hashes.HashAlgorithm] = {name: cls() for name, cls in SIGN_TYPES.items()}


def _hash(sign_type: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[sign_type]
    except KeyError:
        raise ValueError(f"unknown sign_type {sign_type!r}; use RSA2 or RSA") from None


def sign_text(text: str, key: RSAPrivateKey, sign_type: str, charset: str) -> str:
    """Sign the text in the request charset, as the gateway re-encodes it that way."""
    signature = key.sign(text.encode(charset), _PKCS1, _hash(sign_type))
    return base64.b64encode(signature).decode("ascii")


def sign_params(
    params: Mapping[str, object], key: RSAPrivateKey, sign_type: str, charset: str
) -> str:
    """Sign a request's parameters; the result goes in ``sign``."""
    return sign_text(string_to_sign(params), key, sign_type, charset)


def verify_signature(content: bytes, signature: str, key: RSAPublicKey, sign_type: str) -> bool:
    """Check Alipay's signature, retrying once with ``\\/`` unescaped as the Java SDK does."""
    return signed_bytes(content, signature, key, sign_type) is not None


def signed_bytes(content: bytes, signature: str, key: RSAPublicKey, sign_type: str) -> bytes | None:
    """The bytes the signature covers: ``content``, or it with ``\\/`` unescaped; else None.

    When only the unescaped bytes verify, those are what Alipay vouched for, so
    the caller must read the answer from them, not from ``content``: a man in
    the middle who doubles a backslash gets past this retry otherwise.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None
    algorithm = _hash(sign_type)
    if _verifies(key, raw, content, algorithm):
        return content
    unescaped = content.replace(b"\\/", b"/")
    if unescaped != content and _verifies(key, raw, unescaped, algorithm):
        return unescaped
    return None


def _verifies(
    key: RSAPublicKey, raw: bytes, content: bytes, algorithm: hashes.HashAlgorithm
) -> bool:
    try:
        key.verify(raw, content, _PKCS1, algorithm)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SignedAnswer:
    """One gateway answer: the node Alipay signed, as bytes and as data."""

    node: str
    content: bytes
    data: dict[str, Any]
    sign: str
    cert_sn: str | None
    charset: str


def parse_answer(body: bytes, node: str, charset: str) -> SignedAnswer:
    """Find ``node`` (or ``error_response``) in a gateway body without re-serialising it.

    The node is read in ``charset`` only: UndecodableAnswer says it is not text
    in it, and the caller decides whether another charset may be tried.
    """
    members = _top_level_members(body, double_byte=charset.lower() == "gbk")
    name = node if node in members else "error_response"
    if name not in members:
        raise AnswerFormatError(f"the answer has no {node} member")
    start, end = members[name]
    content = body[start:end]
    return SignedAnswer(
        node=name,
        content=content,
        data=read_node(content, charset, name),
        sign=_string_member(body, members, "sign") or "",
        cert_sn=_string_member(body, members, "alipay_cert_sn"),
        charset=charset,
    )


def read_node(content: bytes, charset: str, name: str = "the node") -> dict[str, Any]:
    """A node's JSON object, read from exactly these bytes."""
    if content[:1] != b"{":
        raise AnswerFormatError(f"{name} is not a JSON object")
    try:
        text = content.decode(charset)
    except UnicodeDecodeError:
        raise UndecodableAnswer(f"{name} is not {charset} text") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise AnswerFormatError(f"{name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise AnswerFormatError(f"{name} is not a JSON object")
    return data


def _string_member(body: bytes, members: Mapping[str, tuple[int, int]], name: str) -> str | None:
    if name not in members:
        return None
    start, end = members[name]
    try:
        value = json.loads(body[start:end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise AnswerFormatError(f"{name} is not an ASCII string") from None
    if value is None:
        return None
    if not isinstance(value, str):
        raise AnswerFormatError(f"{name} is not a string")
    return value


def _skip_ws(body: bytes, i: int) -> int:
    n = len(body)
    while i < n and body[i] in _WHITESPACE:
        i += 1
    return i


def _string_end(body: bytes, i: int, double_byte: bool) -> int:
    """Index just past the string opening at ``i``.

    In GBK a trail byte may be 0x5C (a backslash), so a lead byte skips its pair.
    """
    n = len(body)
    j = i + 1
    while j < n:
        b = body[j]
        if b == _BACKSLASH:
            j += 2
        elif b == _QUOTE:
            return j + 1
        elif double_byte and b >= 0x81:
            j += 2
        else:
            j += 1
    raise AnswerFormatError("unterminated string in the answer")


def _value_end(body: bytes, i: int, double_byte: bool) -> int:
    n = len(body)
    if i >= n:
        raise AnswerFormatError("the answer ends early")
    first = body[i]
    if first == _QUOTE:
        return _string_end(body, i, double_byte)
    if first in _OPENERS:
        depth = 0
        j = i
        while j < n:
            b = body[j]
            if b == _QUOTE:
                j = _string_end(body, j, double_byte)
                continue
            if b in _OPENERS:
                depth += 1
            elif b in _CLOSERS:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise AnswerFormatError("unbalanced braces in the answer")
    j = i
    while j < n and body[j] not in _SCALAR_END:
        j += 1
    if j == i:
        raise AnswerFormatError("a value is missing in the answer")
    return j


def _top_level_members(body: bytes, double_byte: bool) -> dict[str, tuple[int, int]]:
    """Byte ranges of the top-level members' values; refuses duplicates and trailing junk."""
    n = len(body)
    i = _skip_ws(body, 0)
    if i >= n or body[i] != ord("{"):
        raise AnswerFormatError("the answer is not a JSON object")
    members: dict[str, tuple[int, int]] = {}
    i = _skip_ws(body, i + 1)
    if i < n and body[i] == ord("}"):
        i += 1
    else:
        while True:
            if i >= n or body[i] != _QUOTE:
                raise AnswerFormatError("expected a member name in the answer")
            key_end = _string_end(body, i, double_byte)
            try:
                key = json.loads(body[i:key_end].decode("latin-1"))
            except ValueError:
                raise AnswerFormatError("a member name is not valid JSON") from None
            i = _skip_ws(body, key_end)
            if i >= n or body[i] != ord(":"):
                raise AnswerFormatError("expected ':' in the answer")
            start = _skip_ws(body, i + 1)
            end = _value_end(body, start, double_byte)
            if key in members:
                raise AnswerFormatError("the answer repeats a member name")
            members[key] = (start, end)
            i = _skip_ws(body, end)
            if i < n and body[i] == ord(","):
                i = _skip_ws(body, i + 1)
                continue
            if i < n and body[i] == ord("}"):
                i += 1
                break
            raise AnswerFormatError("expected ',' or '}' in the answer")
    if _skip_ws(body, i) != n:
        raise AnswerFormatError("trailing data after the answer")
    return members
