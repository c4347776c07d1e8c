"""Answers written the way Alipay writes them, and spoiled on demand.

This is the emulator's own writer, deliberately independent of the library's
answer parser, so the parser meets bytes shaped like Alipay's rather than its
own assumptions: compact JSON with raw Chinese and ``/`` escaped as ``\\/``,
the node's exact bytes signed, and in certificate mode ``alipay_cert_sn``
between the node and ``sign``.  Injections then spoil an answer the ways
Alipay's have been seen to go wrong: a bad or missing signature, another
key, a cut body, an error in GBK, an HTML error page.

Nothing here knows HTTP frameworks: :func:`render` gives a :class:`Rendered`
(status, content type, bytes) that ``gateway.py`` sends.
"""

from __future__ import annotations

import base64
import http
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from flask_alipay.protocol import CHARSETS, ERROR_NODE
from flask_alipay.signing import sign_text

from .methods import Answer
from .state import Injection

__all__ = ["Rendered", "Signing", "alipay_json", "gbk_error", "html_error", "render"]


@dataclass(frozen=True)
class Rendered:
    """An answer as bytes on the wire, with the status and content type to send."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Signing:
    """What signs one answer: the key and certificate SN of one moment, and the options."""

    key: RSAPrivateKey
    #: Certificate mode: the SN of the certificate that holds ``key``; None otherwise.
    cert_sn: str | None
    #: Sign the node with ``\\/`` read as ``/``: what the Java SDK's retry accepts.
    unescaped_slashes: bool
    #: A stranger's key, for ``wrong_key`` injections.
    other_key: Callable[[], RSAPrivateKey]


def alipay_json(data: Mapping[str, Any], charset: str) -> str:
    """JSON as Alipay writes it: compact, raw Chinese, ``/`` escaped as ``\\/``.

    Characters the charset cannot encode (an emoji in GBK) become ``\\u`` escapes,
    so the text encodes exactly and the signed bytes are the sent bytes.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "/" is never structural in JSON, so every one is inside a string.
    text = text.replace("/", "\\/")
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        text = "".join(_encodable(char, charset) for char in text)
    return text


def _encodable(char: str, charset: str) -> str:
    """One character as the charset can carry it: itself, or its JSON ``\\u`` escape."""
    try:
        char.encode(charset)
    except UnicodeEncodeError:
        return json.dumps(char)[1:-1]
    return char


def render(
    answer: Answer,
    charset: str,
    sign_type: str,
    signing: Signing,
    injection: Injection | None = None,
) -> Rendered:
    """``{"<node>":{...},"sign":"..."}`` with the node's exact bytes signed; in
    certificate mode ``"alipay_cert_sn"`` sits between the node and ``"sign"``.  An
    answer Alipay leaves unsigned has no ``sign`` member, or ``"sign":""``."""
    node_text = alipay_json(answer.data, charset)
    parts = [f"{{{json.dumps(answer.node)}:{node_text}"]
    if signing.cert_sn is not None:
        parts.append(f',"alipay_cert_sn":"{signing.cert_sn}"')
    if answer.signature == "empty":
        parts.append(',"sign":""')
    elif answer.signature == "signed" and (injection is None or not injection.unsigned):
        signature = _sign(node_text, charset, sign_type, signing, injection)
        parts.append(f',"sign":"{signature}"')
    parts.append("}")
    body = "".join(parts).encode(charset)
    if injection is not None and injection.truncated:
        body = body[: len(body) // 2]
    return Rendered(200, f"text/html;charset={charset}", body)


def _sign(
    node_text: str,
    charset: str,
    sign_type: str,
    signing: Signing,
    injection: Injection | None,
) -> str:
    """The node's signature, made wrong on purpose when the injection says so."""
    if signing.unescaped_slashes:
        node_text = node_text.replace("\\/", "/")
    key = signing.key
    if injection is not None and injection.wrong_key:
        key = signing.other_key()
    signature = sign_text(node_text, key, sign_type, charset)
    if injection is not None and injection.bad_signature:
        signature = _corrupt(signature)
    return signature


def _corrupt(signature: str) -> str:
    """A well-formed signature that does not verify: one bit flipped."""
    raw = bytearray(base64.b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def gbk_error(injection: Injection, charset: str, sign_type: str, signing: Signing) -> Rendered:
    """An ``error_response`` written in GBK while the header still names ``charset``:
    Alipay has answered errors in GBK to apps that asked for utf-8."""
    gbk = CHARSETS["gbk"]
    rendered = render(Answer(ERROR_NODE, injection.error()), gbk, sign_type, signing, injection)
    return Rendered(rendered.status, f"text/html;charset={charset}", rendered.body)


def html_error(status: int) -> Rendered:
    """What a proxy in front of the gateway shows when it is down: HTML, not JSON."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    page = (
        f"<html><head><title>{status} {phrase}</title></head><body>"
        f"<center><h1>{status} {phrase}</h1></center><hr><center>Tengine</center>"
        "</body></html>"
    )
    return Rendered(status, "text/html", page.encode("utf-8"))
