"""The one module that does HTTP: one app's keep-alive connection to Alipay's gateway.

``protocol.py`` decides what to send and how to read what comes back; this
module only sends, reads a bounded answer, and turns transport failures into
AlipayErrors that quote no URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from . import protocol
from .config import AlipayConfig
from .errors import AlipayError, GatewayTimedOut, GatewayUnreachable, MalformedAnswer, redact

__all__ = ["MAX_ANSWER_BYTES", "Gateway", "GatewayReply", "RedactingFilter"]

log = logging.getLogger("flask_alipay")

#: Gateway answers larger than this are refused unread.
MAX_ANSWER_BYTES = 1024 * 1024


class RedactingFilter(logging.Filter):
    """Hide secrets in other libraries' log lines.

    urllib3 logs each request line at DEBUG, and ``auth_token`` rides in the
    gateway's query string; Werkzeug's access log shows the callback's
    ``auth_code``.  Both loggers get this filter once, at import.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTING_FILTER = RedactingFilter()
for _name in ("urllib3.connectionpool", "werkzeug"):
    logging.getLogger(_name).addFilter(_REDACTING_FILTER)


@dataclass(frozen=True)
class GatewayReply:
    """What came back: the HTTP status and the whole body, already bounded."""

    status_code: int
    content: bytes


class _ClientAuth(Protocol):
    """What Authlib passes as ``auth``: its ClientAuth, which signs a token request."""

    def prepare(
        self, method: str, uri: str, headers: dict[str, str], body: str
    ) -> tuple[str, dict[str, str], bytes]: ...


class Gateway:
    """One Alipay app's gateway: sign, send, read, verify.

    Built once per app at ``init_app``, holding the config (with its parsed
    keys) and the one keep-alive ``requests.Session``.
    """

    def __init__(self, config: AlipayConfig) -> None:
        self.config = config
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "Flask-Alipay-Login"
        # requests re-reads proxies, CA bundle and ~/.netrc from the environment on
        # every call (0.1-1.5 ms); read them once here instead.  No netrc credentials
        # are ever sent to the gateway.
        env = self.http.merge_environment_settings(config.gateway_url, {}, None, None, None)
        self.http.proxies.update(env["proxies"])
        self.http.verify = env["verify"]
        self.http.trust_env = False

    @property
    def url(self) -> str:
        return self.config.gateway_url

    def sign(
        self, method: str, business: Mapping[str, str], *, auth_token: str | None = None
    ) -> protocol.SignedRequest:
        """A signed request for ``method``; its string to sign is logged at DEBUG, redacted."""
        request = protocol.signed_request(self.config, method, business, auth_token=auth_token)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("string to sign for %s: %s", method, request.redacted_text)
        return request

    def call(
        self,
        method: str,
        business: Mapping[str, str] | None = None,
        *,
        auth_token: str | None = None,
    ) -> dict[str, Any]:
        """A signed, verified gateway call; returns the answer's node or raises AlipayError."""
        request = self.sign(method, business or {}, auth_token=auth_token)
        return self.read(method, self.send(request.url, request.body, request.headers))

    def read(self, method: str, reply: GatewayReply) -> dict[str, Any]:
        """The verified node of a reply to ``method``, or the AlipayError it stands for."""
        return protocol.read_answer(self.config, method, reply.status_code, reply.content)

    def post(
        self,
        url: str,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: _ClientAuth | None = None,
        **_: Any,
    ) -> GatewayReply:
        """``session.post`` as Authlib's OAuth2Client calls it for token requests.

        Authlib builds the token request and ``auth`` (our client auth method)
        signs it; the gateway sends what comes out.
        """
        body: str | bytes = urlencode(data or {})
        sent_headers = dict(headers or {})
        if auth is not None:
            url, sent_headers, body = auth.prepare("POST", url, sent_headers, str(body))
        return self.send(url, body if isinstance(body, bytes) else body.encode(), sent_headers)

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> GatewayReply:
        """POST and read at most MAX_ANSWER_BYTES; failures quote no URL.

        requests puts the URL, and so ``auth_token``, into its exception
        messages, so the errors raised here are built outside the ``except``
        and chain nothing.
        """
        failure: AlipayError | None = None
        try:
            response = self.http.post(
                url, data=body, headers=dict(headers), timeout=self.config.timeout, stream=True
            )
            content = _read_bounded(response)
        except requests.Timeout:
            failure = GatewayTimedOut("The Alipay gateway timed out.")
        except requests.RequestException:
            failure = GatewayUnreachable("The Alipay gateway could not be reached.")
        if failure is not None:
            raise failure
        return GatewayReply(response.status_code, content)

    def close(self) -> None:
        self.http.close()


def _read_bounded(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise MalformedAnswer("The Alipay gateway's answer is too large.")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)
