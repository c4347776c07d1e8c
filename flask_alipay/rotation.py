"""Certificate rotation as data: the download request, and trusting what it brings.

When Alipay rotates its certificate, answers name an ``alipay_cert_sn`` the
site does not hold.  ``gateway/`` then asks ``alipay.open.app.alipaycert.download``
for it once; this module builds that request's business parameters and reads
the answer, trusting the certificate only if it chains to ``ALIPAY_ROOT_CERT``.
No I/O happens here.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import TYPE_CHECKING

from . import protocol
from .certs import CertificateError, LeafCertificate, trusted_leaf
from .errors import CertificateRotated, MalformedAnswer, UnverifiedAnswer

if TYPE_CHECKING:
    from .config import AlipayConfig

__all__ = ["CERT_DOWNLOAD_METHOD", "cert_download_business", "read_downloaded_cert"]

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
    downloaded certificate, and only once the chain check has passed.
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
    content = answer.data.get("alipay_cert_content")
    try:
        pem = base64.b64decode(str(content or ""), validate=True)
        leaf = trusted_leaf(pem, cfg.root_certs, now)
    except (binascii.Error, ValueError) as error:
        reason = error if isinstance(error, CertificateError) else "it is not base64"
        raise CertificateRotated(f"Alipay's downloaded certificate is refused: {reason}.") from None
    if leaf.sn != sn or answer.cert_sn != sn:
        raise CertificateRotated("Alipay's downloaded certificate is not the one the answer named.")
    try:
        protocol.verify(cfg, answer, leaf.public_key)
    except UnverifiedAnswer:
        raise CertificateRotated("Alipay's certificate download answer did not verify.") from None
    return leaf
