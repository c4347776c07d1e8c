"""The one package that does HTTP: one app's keep-alive connection to Alipay's gateway.

``protocol.py`` decides what to send and how to read what comes back; this
module only sends and reads, and it does so as a hostile network would test it:

* redirects are never followed (a 3xx would re-send the auth_code elsewhere);
* ``ALIPAY_TIMEOUT`` is a deadline for the whole call, connect and every read,
  enforced by a watchdog that cuts the call's socket when it passes;
* every byte read is bounded, compressed or not;
* failures are AlipayErrors that quote no URL.
"""

from __future__ import annotations

import http.client
import logging
import socket
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Protocol
from urllib.parse import urlencode

import requests
import urllib3
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .. import protocol, rotation
from ..config import AlipayConfig
from ..errors import (
    AlipayError,
    CertificateRotated,
    GatewayTimedOut,
    GatewayUnreachable,
    MalformedAnswer,
)
from ..logs import printable
from .deadline import Watch, WatchedAdapter, deadline

__all__ = ["MAX_ANSWER_BYTES", "Gateway", "GatewayReply"]

log = logging.getLogger("flask_alipay")

#: Gateway answers larger than this are refused, before or after decompression.
MAX_ANSWER_BYTES = 1024 * 1024
#: Alipay certificates downloaded after a rotation, kept per process.  A rotation
#: brings one new SN; the bound keeps forged SNs from growing anything.
MAX_DOWNLOADED_CERTS = 8
_CHUNK = 65536
#: The encodings we ask for; anything else in an answer is refused.
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class GatewayReply:
    """What came back: the HTTP status and the whole body, already bounded."""

    status_code: int
    #: A token answer's body holds the tokens: never in a repr.
    content: bytes = field(repr=False)


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
        self.http = _NoRedirectSession()
        self.http.headers["User-Agent"] = "Flask-Alipay-Login"
        self.http.headers["Accept-Encoding"] = _ACCEPT_ENCODING
        # The gateway needs no cookies; a hostile one must not grow a jar that lives
        # as long as the process and is sent back on every call.
        self.http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = WatchedAdapter()
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        # requests re-reads proxies, CA bundle and ~/.netrc from the environment on
        # every call (0.1-1.5 ms); read them once here instead.  No netrc credentials
        # are ever sent to the gateway.
        env = self.http.merge_environment_settings(config.gateway_url, {}, None, None, None)
        self.http.proxies.update(env["proxies"])
        self.http.verify = env["verify"]
        self.http.trust_env = False
        #: Certificate mode: Alipay certificates downloaded since start-up, by SN.
        self._downloaded = rotation.DownloadedCerts(MAX_DOWNLOADED_CERTS)

    @property
    def url(self) -> str:
        return self.config.gateway_url

    def sign(
        self, method: str, business: Mapping[str, str], *, auth_token: str | None = None
    ) -> protocol.SignedRequest:
        """A signed request for ``method``; its string to sign is logged at DEBUG, redacted."""
        request = protocol.signed_request(self.config, method, business, auth_token=auth_token)
        if log.isEnabledFor(logging.DEBUG):
            # The text holds what the browser sent (the auth_code): one escaped line.
            log.debug("string to sign for %s: %s", method, printable(request.redacted_text))
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
        """The verified node of a reply to ``method``, or the AlipayError it stands for.

        In certificate mode an answer may name an Alipay certificate issued since
        start-up: it is downloaded once, trusted only if it chains to the root
        bundle, and the answer is verified with it.
        """
        status, content = reply.status_code, reply.content
        held = self._downloaded.snapshot()
        try:
            return protocol.read_answer(self.config, method, status, content, held)
        except CertificateRotated as rotated:
            if rotated.sn is None or not self.config.cert_mode:
                raise
            sn = rotated.sn
        held = {**self._downloaded.snapshot(), sn: self.download_cert(sn)}
        return protocol.read_answer(self.config, method, status, content, held)

    @property
    def downloaded_keys(self) -> tuple[RSAPublicKey, ...]:
        """The keys of Alipay certificates downloaded since start-up."""
        return tuple(self._downloaded.snapshot().values())

    @property
    def downloaded_certs(self) -> tuple[str, ...]:
        """The SNs of Alipay certificates downloaded since start-up, oldest first."""
        return tuple(self._downloaded.snapshot())

    def download_cert(self, sn: str) -> RSAPublicKey:
        """Alipay's certificate ``sn``: one download however many ask at once, its
        failure shared by all who waited for it (see rotation.DownloadedCerts)."""
        return self._downloaded.get(sn, lambda: self._download(sn), self.config.timeout)

    def _download(self, sn: str) -> RSAPublicKey:
        """Download certificate ``sn`` and trust it, or raise CertificateRotated.

        A download that times out stays a GatewayTimedOut (504): a timeout is a
        timeout, whichever call it hit.
        """
        request = self.sign(rotation.CERT_DOWNLOAD_METHOD, rotation.cert_download_business(sn))
        try:
            reply = self.send(request.url, request.body, request.headers)
        except (GatewayUnreachable, MalformedAnswer) as error:
            raise CertificateRotated(
                f"Alipay's new certificate could not be downloaded: {error.message}"
            ) from None
        leaf = rotation.read_downloaded_cert(self.config, reply.status_code, reply.content, sn)
        log.warning(
            "Alipay rotated its certificate: downloaded %s (valid until %s), trusted "
            "through ALIPAY_ROOT_CERT. Update ALIPAY_ALIPAY_CERT before the next deploy.",
            sn,
            leaf.not_after.date().isoformat() if leaf.not_after else "?",
            extra={"alipay_cert_sn": sn},
        )
        return leaf.public_key

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
        """POST within the deadline and read a bounded answer; failures quote no URL.

        requests puts the URL into its exception messages, so the errors raised
        here are built outside the ``except`` and chain nothing.
        """
        timeout = self.config.timeout
        failure: AlipayError | None = None
        with deadline(timeout) as watch:
            try:
                response = self.http.post(
                    url,
                    data=body,
                    headers=dict(headers),
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                )
                try:
                    content = _read_answer(response, watch)
                finally:
                    response.close()
            except AlipayError as error:
                failure = error
            except _TRANSPORT_ERRORS as error:
                failure = _transport_failure(error, watch)
        if watch.fired:
            # The watchdog cut this call's sockets, and one may be back in the pool by
            # now: start the next call on fresh connections.
            for adapter in self.http.adapters.values():
                adapter.close()
        if failure is not None:
            raise failure
        return GatewayReply(response.status_code, content)

    def close(self) -> None:
        self.http.close()


#: What a broken connection raises on the way: requests' own errors, and urllib3's and
#: http.client's when the body is read straight from the socket.
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


def _transport_failure(error: Exception, watch: Watch) -> AlipayError:
    if watch.expired() or isinstance(error, (requests.Timeout, socket.timeout)):
        return GatewayTimedOut("The Alipay gateway timed out.")
    return GatewayUnreachable("The Alipay gateway could not be reached.")


def _read_answer(response: requests.Response, watch: Watch) -> bytes:
    """The body of a 200 answer, decompressed, within the deadline and MAX_ANSWER_BYTES.

    Any other status, redirects included, is refused without reading its body.
    """
    if response.status_code != 200:
        return b""  # protocol.parse() refuses it by its status
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise MalformedAnswer("The Alipay gateway's answer is too large.")
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    raw, out = 0, bytearray()
    while True:
        watch.check()
        chunk = response.raw.read(_CHUNK, decode_content=False)
        if not chunk:
            break
        raw += len(chunk)
        if raw > MAX_ANSWER_BYTES:
            raise MalformedAnswer("The Alipay gateway's answer is too large.")
        out += decoder.feed(chunk, MAX_ANSWER_BYTES - len(out))
    out += decoder.finish(MAX_ANSWER_BYTES - len(out))
    watch.check()
    return bytes(out)


class _NoRedirectSession(requests.Session):
    """A session that never follows a redirect, and so never reads a redirect's body.

    ``allow_redirects=False`` alone is not enough: requests still reads (and
    decompresses) a 3xx body to prepare the next hop.  With no redirect target
    there is no next hop.
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class _Decoder:
    """Content-Encoding undone with a hard bound on the output, so no bomb can grow."""

    def __init__(self, wbits: int | None) -> None:
        self._zlib = None if wbits is None else zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        if self._zlib is None:
            return data
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            raise MalformedAnswer("The Alipay gateway's compressed answer is corrupt.") from None
        if len(out) > room or self._zlib.unconsumed_tail:
            raise MalformedAnswer("The Alipay gateway's answer is too large.")
        return out

    def finish(self, room: int) -> bytes:
        if self._zlib is None:
            return b""
        out = self._zlib.flush(room + 1)
        if len(out) > room:
            raise MalformedAnswer("The Alipay gateway's answer is too large.")
        return out


def _decoder(encoding: str) -> _Decoder:
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return _Decoder(None)
    if name in ("gzip", "x-gzip"):
        return _Decoder(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _Decoder(zlib.MAX_WBITS)
    raise MalformedAnswer("The Alipay gateway's answer has an unsupported Content-Encoding.")
