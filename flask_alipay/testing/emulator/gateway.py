"""The gateway endpoint: read a call off the wire, record it, answer it.

Reading is the emulator's own, deliberately not the library's request builder
run backwards: the raw query and body bytes, never Flask's form parser,
percent-decoded in the charset the query names (as the real gateway does), and
a body only when it is form-encoded.  A client that puts ``charset`` in the
body, or encodes in one charset and names another, fails here as it would on
Alipay.  Then the call is recorded, meets its injection if one is queued, and
goes to ``methods.py``; ``answers.py`` writes what comes back.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Protocol

from flask import Response, request

from flask_alipay.protocol import SIGN_TYPES, wire_charset
from flask_alipay.signing import string_to_sign

from .answers import Rendered, Signing, gbk_error, html_error, render
from .checks import placement_warnings
from .methods import Answer, Call, Methods, injected_error
from .pki import AlipayKeys
from .state import GatewayRequest, Injection, State

__all__ = ["GatewayView", "read_call"]

# Printable ASCII stays as sent; only stray raw bytes get percent-escaped.
_PRINTABLE_ASCII = "".join(chr(i) for i in range(0x20, 0x7F))


def _decode_pairs(raw: bytes, charset: str) -> list[tuple[str, str]]:
    """Percent-decode ``k=v&...`` in the request charset, as the gateway does."""
    text = urllib.parse.quote_from_bytes(raw, safe=_PRINTABLE_ASCII)
    return urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=charset, errors="replace")


def _first_value(raw: bytes, name: str) -> str | None:
    """A parameter read before the charset is known: latin-1 keeps every byte."""
    for key, value in _decode_pairs(raw, "latin-1"):
        if key == name:
            return value
    return None


def _is_form(content_type: str | None) -> bool:
    """Only form-encoded bodies are read for parameters, as the gateway does."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/x-www-form-urlencoded"


def read_call(
    raw_query: bytes,
    content_type: str | None,
    body: bytes,
    host_url: str,
    http_method: str = "POST",
) -> Call:
    """A call from its raw bytes: decoded in the charset the query names (utf-8 if
    none or an unknown one is named; the checks refuse those), body only if a form;
    where it departs from the SDKs' placement is noted on the record."""
    if not _is_form(content_type):
        body = b""
    named_charset = _first_value(raw_query, "charset")
    charset = wire_charset(named_charset) or "utf-8"
    query_pairs = _decode_pairs(raw_query, charset)
    form_pairs = _decode_pairs(body, charset)
    query, form = dict(query_pairs), dict(form_pairs)
    record = GatewayRequest(
        method=query.get("method") or form.get("method"),
        query=query,
        form=form,
        string_to_sign=string_to_sign({**query, **form}),
        content_type=content_type,
        charset=named_charset,
        warnings=placement_warnings(query_pairs, form_pairs, http_method),
    )
    return Call(record, query_pairs, form_pairs, charset, host_url)


class AnswerSettings(Protocol):
    """The emulator's settings the endpoint reads, at call time (tests change them)."""

    sign_unescaped_slashes: bool


class GatewayView:
    """``gateway.do``: one call in, one answer out, misbehaving when told to."""

    def __init__(
        self, state: State, methods: Methods, keys: AlipayKeys, settings: AnswerSettings
    ) -> None:
        self.state = state
        self.methods = methods
        self.keys = keys
        self.settings = settings

    def view(self) -> Response:
        """The Flask view: the body is read raw, and only when it is form-encoded."""
        content_type = request.headers.get("Content-Type")
        body = request.get_data(cache=False) if _is_form(content_type) else b""
        call = read_call(request.query_string, content_type, body, request.host_url, request.method)
        injection = self.state.record(call.record)
        sign_type = call.record.query.get("sign_type", "RSA2")
        if sign_type not in SIGN_TYPES:
            sign_type = "RSA2"
        rendered = self._respond(call, sign_type, injection)
        return Response(rendered.body, status=rendered.status, content_type=rendered.content_type)

    def _respond(self, call: Call, sign_type: str, injection: Injection | None) -> Rendered:
        """Process the call, or misbehave as the injection says, in its order."""
        if injection is None:
            return self._render(self.methods.process(call), call.charset, sign_type)
        if injection.delay:
            time.sleep(injection.delay)
        if injection.html_status is not None:
            return html_error(injection.html_status)
        if injection.gbk_error:
            return gbk_error(injection, call.charset, sign_type, self._signing())
        if injection.sub_code is not None:
            answer = injected_error(call.record.method, injection)
        else:
            answer = self.methods.process(call)
        return self._render(answer, call.charset, sign_type, injection)

    def _render(
        self, answer: Answer, charset: str, sign_type: str, injection: Injection | None = None
    ) -> Rendered:
        """Write an answer with the signing key of this moment."""
        return render(answer, charset, sign_type, self._signing(), injection)

    def _signing(self) -> Signing:
        """Key and SN of this moment, even while ``rotate_alipay_cert()`` runs."""
        key, cert_sn = self.keys.current()
        return Signing(key, cert_sn, self.settings.sign_unescaped_slashes, self.keys.other_key)
