"""Alipay's keys and, in certificate mode, a throwaway PKI laid out like Alipay's.

The certificates are made here with ``cryptography``; their SNs come from the
library's ``certs.cert_sn`` and ``certs.root_cert_sn``, which its tests check
against the certificates and SNs of Alipay's Node SDK tests (``tests/vectors``),
so an app and the emulator agree on an SN because both are right, not because
they share a mistake.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from flask_alipay.certs import cert_sn, root_cert_sn
from flask_alipay.keys import same_public_key

__all__ = ["CERT_SETTINGS", "AlipayKeys", "Issued", "Pki", "new_rsa_key", "write_cert_files"]

#: The ``ALIPAY_*`` settings that hold certificates, in the order they are written; each
#: has a ``_FILE`` twin that names the file instead.
CERT_SETTINGS = ("ALIPAY_APP_CERT", "ALIPAY_ALIPAY_CERT", "ALIPAY_ROOT_CERT")
#: A made-up Alipay partner id (2088...) for the certificates' subjects.
_PARTNER_ID = "2088000000000000"
_CA_ORG = "Flask-Alipay-Login"
_CA_UNIT = "Alipay Emulator"
_CA_DAYS = 3650
_LEAF_DAYS = 365
#: Certificates start a little in the past, so a slow clock elsewhere still accepts them.
_BACKDATE = timedelta(minutes=5)


def new_rsa_key() -> RSAPrivateKey:
    """A fresh 2048-bit RSA key, the size Alipay's key tool makes."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _x509_name(common_name: str, unit: str, organization: str) -> x509.Name:
    """A name in ASN.1 order (C first), so RFC 4514 reads ``CN=…,OU=…,O=…,C=CN`` as Alipay's."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_name(common_name: str) -> x509.Name:
    """A name for one of the emulator's own CAs."""
    return _x509_name(common_name, _CA_UNIT, _CA_ORG)


@dataclass(frozen=True)
class Issued:
    """A certificate with the two forms the emulator hands out: PEM text and Alipay's SN."""

    cert: x509.Certificate
    pem: str
    sn: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> Issued:
        """Both forms at once, so a PEM and its SN never disagree."""
        der = cert.public_bytes(serialization.Encoding.DER)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return cls(cert=cert, pem=pem, sn=cert_sn(der))


def _issue(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Name,
    issuer_key: RSAPrivateKey | EllipticCurvePrivateKey,
    *,
    days: int,
    ca: bool | None,
) -> Issued:
    """One certificate signed with SHA-256 (RSA or ECDSA, after the issuer's key).

    ``ca`` None leaves BasicConstraints out, as on Alipay's own certificate.
    """
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=not ca,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=bool(ca),
            crl_sign=bool(ca),
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    return Issued.of(builder.sign(issuer_key, hashes.SHA256()))


class Pki:
    """Alipay's certificate layout in miniature.

    An ECC root and an RSA root make the root bundle, in that order (only the
    RSA one counts in ``alipay_root_cert_sn``); an RSA intermediate outside the bundle signs
    the Alipay certificate and every app certificate, as Ant Financial's
    "Class 2 R1" CA does.  Callers hold the emulator's lock while they change
    :attr:`alipay` or :attr:`app_certs`.
    """

    def __init__(self, alipay_key: RSAPublicKey) -> None:
        root_key = new_rsa_key()
        root_name = _ca_name("Emulated Alipay Root CA")
        self.root = _issue(
            root_name, root_key.public_key(), root_name, root_key, days=_CA_DAYS, ca=True
        )
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_name = _ca_name("Emulated Alipay ECC Root CA")
        self.ec_root = _issue(ec_name, ec_key.public_key(), ec_name, ec_key, days=_CA_DAYS, ca=True)
        self._intermediate_key = new_rsa_key()
        self.intermediate = _issue(
            _ca_name("Emulated Ant Financial Certification Authority Class 2 R1"),
            self._intermediate_key.public_key(),
            root_name,
            root_key,
            days=_CA_DAYS,
            ca=True,
        )
        # As the real file: blank-line separated, a non-RSA root first (Alipay's is SM2).
        self.root_bundle = self.ec_root.pem + "\n" + self.root.pem
        self.root_sn = root_cert_sn(self.root_bundle)
        #: What ``alipay.open.app.alipaycert.download`` serves, by SN: each Alipay
        #: certificate ever issued, followed by its issuing intermediate.
        self.alipay_chains: dict[str, str] = {}
        self.alipay = self.issue_alipay(alipay_key)
        #: The certificate Alipay issued each APPID's key, by APPID.
        self.app_certs: dict[str, Issued] = {}

    def issue_alipay(self, public_key: RSAPublicKey, *, untrusted: bool = False) -> Issued:
        """Alipay's certificate: no BasicConstraints at all, like the real one.

        ``untrusted`` issues it from a stranger's CA outside the root bundle, as a
        forged download would be.
        """
        subject = _x509_name(f"支付宝(中国)网络技术有限公司-{_PARTNER_ID}", "Alipay", _CA_ORG)
        if untrusted:
            stranger = new_rsa_key()
            name = _ca_name("Emulated Ant Financial Certification Authority Class 2 R1")
            ca = _issue(name, stranger.public_key(), name, stranger, days=_CA_DAYS, ca=True)
            issued = _issue(subject, public_key, name, stranger, days=_LEAF_DAYS, ca=None)
            self.alipay_chains[issued.sn] = issued.pem + ca.pem
            return issued
        issued = self._issue_leaf(subject, public_key, ca=None)
        self.alipay_chains[issued.sn] = issued.pem + self.intermediate.pem
        return issued

    def issue_app(self, app_id: str, public_key: RSAPublicKey) -> Issued:
        """An app's certificate (``appCertPublicKey_<APPID>.crt``): a leaf with ca=False."""
        subject = _x509_name(f"{_PARTNER_ID}-{app_id}", "Alipay", _CA_ORG)
        return self._issue_leaf(subject, public_key, ca=False)

    def register_app(
        self, app_id: str, public_key: RSAPublicKey | None, old_key: RSAPublicKey | None
    ) -> None:
        """Give an APPID's key a certificate: the same key keeps its certificate (and SN),
        a different key gets a new one, no key has none."""
        if public_key is None:
            self.app_certs.pop(app_id, None)
        elif old_key is None or not same_public_key(old_key, public_key):
            self.app_certs[app_id] = self.issue_app(app_id, public_key)

    def _issue_leaf(self, subject: x509.Name, public_key: RSAPublicKey, ca: bool | None) -> Issued:
        """Leaves are signed by the intermediate, never the root, as Alipay's are."""
        return _issue(
            subject,
            public_key,
            self.intermediate.cert.subject,
            self._intermediate_key,
            days=_LEAF_DAYS,
            ca=ca,
        )


class AlipayKeys:
    """Alipay's side of the signatures: the key that signs answers, its certificate in
    certificate mode, and a stranger's key for ``wrong_key`` injections.

    The key and the certificate's SN change together (:meth:`rotate`), so a reader
    takes both under the lock (:meth:`current`).
    """

    def __init__(
        self, private_key: RSAPrivateKey | None, cert_mode: bool, lock: threading.RLock
    ) -> None:
        self.private_key = private_key or new_rsa_key()
        self.pki = Pki(self.private_key.public_key()) if cert_mode else None
        self._lock = lock
        self._wrong_key: RSAPrivateKey | None = None

    def certs(self) -> Pki:
        """The PKI, or a RuntimeError that says how to get one."""
        if self.pki is None:
            raise RuntimeError(
                "the emulator is in public-key mode and has no certificates: "
                "make it with AlipayEmulator(cert_mode=True)"
            )
        return self.pki

    def alipay_cert(self) -> Issued:
        """Alipay's current certificate (it changes on :meth:`rotate`)."""
        pki = self.certs()
        with self._lock:
            return pki.alipay

    def app_cert(self, app_id: str) -> Issued:
        """The certificate issued for an APPID's key; KeyError if it has none."""
        pki = self.certs()
        with self._lock:
            issued = pki.app_certs.get(app_id)
        if issued is None:
            raise KeyError(f"no app certificate for APPID {app_id!r}: register_app() it with a key")
        return issued

    def current(self) -> tuple[RSAPrivateKey, str | None]:
        """The signing key and, in certificate mode, the SN answers name: one moment's pair."""
        with self._lock:
            return self.private_key, self.pki.alipay.sn if self.pki is not None else None

    def rotate(self, new_key: bool, untrusted: bool = False) -> str:
        """A new Alipay certificate (a new SN), and with ``new_key`` a new signing key."""
        pki = self.certs()
        with self._lock:
            if new_key:
                self.private_key = new_rsa_key()
            pki.alipay = pki.issue_alipay(self.private_key.public_key(), untrusted=untrusted)
            return pki.alipay.sn

    def alipay_chain(self, sn: str) -> str | None:
        """The PEM chain served for an Alipay certificate SN, or None if none has it."""
        pki = self.certs()
        with self._lock:
            return pki.alipay_chains.get(sn)

    def other_key(self) -> RSAPrivateKey:
        """A key that is not Alipay's, made on first use: key generation is slow."""
        with self._lock:
            if self._wrong_key is None:
                self._wrong_key = new_rsa_key()
            return self._wrong_key


def write_cert_files(
    directory: str | Path, app_id: str, app_cert: str, alipay_cert: str, root_cert: str
) -> dict[str, Path]:
    """Write the three certificates under Alipay's file names in ``directory`` (made if
    missing), with Unix newlines; return ``{ALIPAY_*_FILE setting: absolute path}``."""
    files = {
        "ALIPAY_APP_CERT_FILE": (f"appCertPublicKey_{app_id}.crt", app_cert),
        "ALIPAY_ALIPAY_CERT_FILE": ("alipayCertPublicKey_RSA2.crt", alipay_cert),
        "ALIPAY_ROOT_CERT_FILE": ("alipayRootCert.crt", root_cert),
    }
    folder = Path(directory).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for setting, (name, text) in files.items():
        path = folder / name
        path.write_text(text, encoding="ascii", newline="\n")
        paths[setting] = path
    return paths
