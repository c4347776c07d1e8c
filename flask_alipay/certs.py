"""Certificate mode (公钥证书): serial-number fingerprints and the certificates' keys.

SN = md5(issuer DN in RFC 4514 order + serial in decimal).  Alipay's real
``alipayRootCert.crt`` holds a certificate that ``cryptography`` 50 refuses (a
NULL signature parameter), yet its SN is half of the expected
``alipay_root_cert_sn``.  So SNs come from a small lenient DER reader that
takes only the three fields it needs, and ``cryptography`` loads only the
certificates whose public keys are used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

__all__ = [
    "CertificateError",
    "LeafCertificate",
    "cert_sn",
    "certificate_expiries",
    "leaf_certificates",
    "load_roots",
    "pem_blocks",
    "root_cert_sn",
    "trusted_leaf",
]

_DER = Encoding.DER
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
#: Signature algorithms under this arc are RSA; only those count in the root SN.
_RSA_SIGNATURE_ARC = "1.2.840.113549.1.1."

_SEQUENCE, _SET, _INTEGER, _OID, _VERSION = 0x30, 0x31, 0x02, 0x06, 0xA0
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # T61String
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


class CertificateError(ValueError):
    """A certificate file or text that cannot be used."""


def pem_blocks(text: str | bytes) -> list[bytes]:
    """The DER of each CERTIFICATE block, in order."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.replace(b"\\n", b"\n")
    blocks = []
    for body in _PEM_BLOCK.findall(data):
        try:
            blocks.append(base64.b64decode(re.sub(rb"\s+", b"", body), validate=True))
        except (binascii.Error, ValueError):
            raise CertificateError("a CERTIFICATE block is not valid base64") from None
    if not blocks:
        raise CertificateError("no PEM CERTIFICATE block found")
    return blocks


@dataclass(frozen=True)
class _Fields:
    serial: int
    issuer: str
    signature_oid: str


def cert_sn(der: bytes) -> str:
    """Alipay's SN of one certificate."""
    fields = _read(der)
    return hashlib.md5((fields.issuer + str(fields.serial)).encode("utf-8")).hexdigest()


def root_cert_sn(text: str | bytes) -> str:
    """``alipay_root_cert_sn``: the SNs of the bundle's RSA-signed certificates, joined by ``_``."""
    sns = [
        cert_sn(der)
        for der in pem_blocks(text)
        if _read(der).signature_oid.startswith(_RSA_SIGNATURE_ARC)
    ]
    if not sns:
        raise CertificateError("the root bundle has no RSA-signed certificate")
    return "_".join(sns)


@dataclass(frozen=True)
class LeafCertificate:
    """A certificate that is not a CA: its SN, the RSA key it carries, its last day."""

    sn: str
    public_key: RSAPublicKey
    not_after: datetime | None = None


def leaf_certificates(text: str | bytes) -> list[LeafCertificate]:
    """The non-CA certificates of a file; a file may also hold its intermediates."""
    leaves = []
    for der in pem_blocks(text):
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue  # e.g. an old CA certificate cryptography refuses: never a leaf
        if _is_ca(cert):
            continue
        key = cert.public_key()
        if not isinstance(key, RSAPublicKey):
            raise CertificateError("the certificate does not carry an RSA key")
        leaves.append(LeafCertificate(cert_sn(der), key, cert.not_valid_after_utc))
    if not leaves:
        raise CertificateError("no leaf (non-CA) certificate found")
    return leaves


def _load(der: bytes) -> x509.Certificate | None:
    """A certificate cryptography can use, or None (an SM2 root, a NULL-parameter one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography 48 warns on the iTrus NULL parameter
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError:
            return None


def load_roots(text: str | bytes) -> tuple[x509.Certificate, ...]:
    """The root bundle's certificates that can anchor a chain check."""
    return tuple(cert for der in pem_blocks(text) if (cert := _load(der)) is not None)


def certificate_expiries(text: str | bytes) -> list[tuple[str, datetime | None]]:
    """(subject, last valid moment) of each certificate in a file, for ``flask alipay check``.

    A certificate ``cryptography`` cannot load (Alipay's bundle has an ECC root some
    versions refuse) comes as (a name from the lenient reader, None): reported as
    unread, never skipped.
    """
    found: list[tuple[str, datetime | None]] = []
    for number, der in enumerate(pem_blocks(text), start=1):
        cert = _load(der)
        if cert is not None:
            found.append((cert.subject.rfc4514_string(), cert.not_valid_after_utc))
            continue
        try:
            found.append((f"the certificate issued by {_read(der).issuer}", None))
        except CertificateError:
            found.append((f"certificate {number}", None))
    return found


def trusted_leaf(
    content: str | bytes, roots: Sequence[x509.Certificate], now: datetime | None = None
) -> LeafCertificate:
    """The leaf of a downloaded chain that Alipay's root bundle vouches for.

    As the official Java SDK checks a downloaded certificate
    (``AntCertificationUtil.isTrusted``): the certificates must form one
    chain, each issued by the one before it; the first must be issued by a
    root of the bundle, and each must be valid now.  The leaf is the last
    link, with an RSA key.  Raises CertificateError naming what failed.
    """
    moment = now or datetime.now(timezone.utc)
    chain = [_load(der) for der in pem_blocks(content)]
    if any(cert is None for cert in chain):
        raise CertificateError("the downloaded certificate cannot be read")
    ordered = _ordered([cert for cert in chain if cert is not None])
    issuer = next((root for root in roots if root.subject == ordered[0].issuer), None)
    if issuer is None:
        raise CertificateError("the downloaded certificate is not issued by ALIPAY_ROOT_CERT")
    for cert in ordered:
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise CertificateError("the downloaded certificate is expired or not yet valid")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise CertificateError(
                "the downloaded certificate's chain does not verify to ALIPAY_ROOT_CERT"
            ) from None
        issuer = cert
    leaf = ordered[-1]
    key = leaf.public_key()
    if not isinstance(key, RSAPublicKey):
        raise CertificateError("the downloaded certificate does not carry an RSA key")
    der = leaf.public_bytes(_DER)
    return LeafCertificate(cert_sn(der), key, leaf.not_valid_after_utc)


def _ordered(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates as one chain, issuer first (the Java SDK's ``sortByDn``)."""
    subjects = {cert.subject for cert in certs}
    heads = [cert for cert in certs if cert.issuer not in subjects or cert.issuer == cert.subject]
    if len(heads) != 1 or len(subjects) != len(certs):
        raise CertificateError("the downloaded certificates are not one complete chain")
    chain = heads
    while len(chain) < len(certs):
        following = [c for c in certs if c.issuer == chain[-1].subject and c not in chain]
        if len(following) != 1:
            raise CertificateError("the downloaded certificates are not one complete chain")
        chain.append(following[0])
    return chain


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


# A lenient DER reader: just serial, issuer and signature algorithm ------------


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``i``."""
    try:
        tag = data[i]
        length = data[i + 1]
        start = i + 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 4:
                raise CertificateError("unsupported DER length")
            length = int.from_bytes(data[start : start + count], "big")
            start += count
    except IndexError:
        raise CertificateError("truncated certificate") from None
    end = start + length
    if end > len(data):
        raise CertificateError("truncated certificate")
    return tag, start, end


def _expect(data: bytes, i: int, tag: int) -> tuple[int, int]:
    found, start, end = _tlv(data, i)
    if found != tag:
        raise CertificateError("unexpected certificate structure")
    return start, end


def _oid(content: bytes) -> str:
    if not content:
        raise CertificateError("empty OID")
    parts = [content[0] // 40, content[0] % 40] if content[0] < 80 else [2, content[0] - 80]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _name(data: bytes, start: int, end: int) -> str:
    rdns = []
    i = start
    while i < end:
        set_start, set_end = _expect(data, i, _SET)
        attributes = []
        j = set_start
        while j < set_end:
            seq_start, seq_end = _expect(data, j, _SEQUENCE)
            oid_start, oid_end = _expect(data, seq_start, _OID)
            tag, value_start, value_end = _tlv(data, oid_end)
            codec = _STRING_CODECS.get(tag, "latin-1")
            value = data[value_start:value_end].decode(codec, "replace")
            oid = ObjectIdentifier(_oid(data[oid_start:oid_end]))
            attributes.append(x509.NameAttribute(oid, value))
            j = seq_end
        rdns.append(x509.RelativeDistinguishedName(attributes))
        i = set_end
    return x509.Name(rdns).rfc4514_string()


def _read(der: bytes) -> _Fields:
    cert_start, _ = _expect(der, 0, _SEQUENCE)
    tbs_start, tbs_end = _expect(der, cert_start, _SEQUENCE)
    i = tbs_start
    tag, _, end = _tlv(der, i)
    if tag == _VERSION:
        i = end
    serial_start, serial_end = _expect(der, i, _INTEGER)
    serial = int.from_bytes(der[serial_start:serial_end], "big", signed=True)
    _, inner_alg_end = _expect(der, serial_end, _SEQUENCE)
    issuer_start, issuer_end = _expect(der, inner_alg_end, _SEQUENCE)
    alg_start, _ = _expect(der, tbs_end, _SEQUENCE)
    oid_start, oid_end = _expect(der, alg_start, _OID)
    return _Fields(
        serial=serial,
        issuer=_name(der, issuer_start, issuer_end),
        signature_oid=_oid(der[oid_start:oid_end]),
    )
