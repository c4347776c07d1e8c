"""Certificate rotation as data: the download request, and trusting what it brings.

When Alipay rotates its certificate, answers name an ``alipay_cert_sn`` the
site does not hold.  ``gateway/`` then asks ``alipay.open.app.alipaycert.download``
for it once; this module builds that request's business parameters and reads
the answer, trusting the certificate only if it chains to ``ALIPAY_ROOT_CERT``,
and keeps what was downloaded (:class:`DownloadedCerts`).  No I/O happens here:
``gateway/`` hands in the function that downloads.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from . import protocol
from .certs import CertificateError, LeafCertificate, trusted_leaf
from .errors import (
    AlipayError,
    CertificateRotated,
    GatewayTimedOut,
    MalformedAnswer,
    UnverifiedAnswer,
)
from .keys import same_public_key

if TYPE_CHECKING:
    from .config import AlipayConfig

__all__ = [
    "CERT_DOWNLOAD_METHOD",
    "DownloadedCerts",
    "cert_download_business",
    "read_downloaded_cert",
]

#: Certificate mode: fetch the Alipay certificate an answer names (after a rotation).
CERT_DOWNLOAD_METHOD = "alipay.open.app.alipaycert.download"


def cert_download_business(sn: str) -> dict[str, str]:
    """The business parameters of ``alipay.open.app.alipaycert.download`` for one SN."""
    return {"biz_content": json.dumps({"alipay_cert_sn": sn}, separators=(",", ":"))}


def read_downloaded_cert(
    cfg: AlipayConfig, status: int, body: bytes, sn: str, now: datetime | None = None
) -> LeafCertificate:
    """The certificate ``sn`` from a download answer, trusted only if it chains to
    ``ALIPAY_ROOT_CERT``; raises CertificateRotated saying what failed.

    The answer is signed under the new SN itself, so it is verified with the
    downloaded certificate, and only once the chain check has passed.  What is
    kept is then read again from the bytes that verified.
    """
    try:
        answer = protocol.parse(cfg, CERT_DOWNLOAD_METHOD, status, body)
    except MalformedAnswer as error:
        raise CertificateRotated(
            f"Alipay's new certificate could not be downloaded: {error}"
        ) from None
    if protocol.is_error(answer):
        refused = protocol.alipay_error(answer.data)
        raise CertificateRotated(
            "Alipay refused to send its new certificate.",
            code=refused.code,
            sub_code=refused.sub_code,
            sub_msg=refused.sub_msg,
        )
    leaf = _chained_leaf(cfg, answer.data, now)
    if leaf.sn != sn:
        raise CertificateRotated("Alipay's downloaded certificate is not the one asked for.")
    if answer.cert_sn != sn:
        raise CertificateRotated(
            "Alipay's certificate download answer is signed under another certificate "
            "than the one asked for."
        )
    try:
        verified = protocol.verify(cfg, answer, leaf.public_key)
    except UnverifiedAnswer:
        raise CertificateRotated("Alipay's certificate download answer did not verify.") from None
    trusted = _chained_leaf(cfg, verified.data, now)
    if trusted.sn != leaf.sn or not same_public_key(trusted.public_key, leaf.public_key):
        raise CertificateRotated(
            "The certificate in Alipay's verified download answer is not the one it verified with."
        )
    return trusted


#: Whitespace a base64 text may be wrapped with (as MIME wraps it, and as the Java
#: SDK's decoder skips); any other stray character makes it not base64.
_BASE64_WRAPPING = re.compile(r"[ \t\r\n]+")


def _chained_leaf(
    cfg: AlipayConfig, data: Mapping[str, Any], now: datetime | None
) -> LeafCertificate:
    """The leaf of ``alipay_cert_content`` (base64 of PEM), if it chains to the root bundle."""
    content = data.get("alipay_cert_content")
    text = _BASE64_WRAPPING.sub("", content) if isinstance(content, str) else ""
    try:
        pem = base64.b64decode(text, validate=True)
        return trusted_leaf(pem, cfg.root_certs, now)
    except (binascii.Error, ValueError) as error:
        reason = error if isinstance(error, CertificateError) else "it is not base64"
        raise CertificateRotated(f"Alipay's downloaded certificate is refused: {reason}.") from None


class _Flight:
    """One SN's download in progress: its outcome, once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.key: RSAPublicKey | None = None
        self.error: AlipayError | None = None

    def outcome(self, wait: float) -> RSAPublicKey:
        """The downloaded key, or (a copy of) the error the download raised."""
        if not self.done.wait(wait):
            raise GatewayTimedOut("The Alipay gateway timed out.")
        if self.key is not None:
            return self.key
        # A copy, so that threads raising one error never share one traceback.
        raise (
            copy.copy(self.error)
            if self.error is not None
            else CertificateRotated("Alipay's new certificate could not be downloaded.")
        )


class DownloadedCerts:
    """Alipay certificates downloaded since start-up, by SN, at most ``limit`` of them.

    A rotation makes many concurrent answers name one new SN.  The first request
    downloads it; the others wait (at most ``wait`` seconds, ALIPAY_TIMEOUT) for
    that one result and share it, success or failure, so N requests never queue
    for N downloads of ALIPAY_TIMEOUT each.  Different SNs never wait for each other.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._keys: OrderedDict[str, RSAPublicKey] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, RSAPublicKey]:
        """The keys held now, by SN, oldest first."""
        with self._lock:
            return dict(self._keys)

    def get(self, sn: str, download: Callable[[], RSAPublicKey], wait: float) -> RSAPublicKey:
        """The key of certificate ``sn``: held, or downloaded by one caller for all."""
        with self._lock:
            key = self._keys.get(sn)
            if key is not None:
                return key
            flight = self._flights.get(sn)
            leading = flight is None
            if flight is None:
                flight = self._flights[sn] = _Flight()
        if not leading:
            return flight.outcome(wait)
        try:
            flight.key = download()
        except AlipayError as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[sn]
                if flight.key is not None:
                    self._keys[sn] = flight.key
                    while len(self._keys) > self._limit:
                        self._keys.popitem(last=False)
            flight.done.set()
        return flight.key
