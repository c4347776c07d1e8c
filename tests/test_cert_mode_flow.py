"""Certificate mode end to end: the extension against the emulator's own PKI."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.cli import FlaskGroup
from support.browser import authorize, finish, sign_in, start_login
from support.keys import VECTORS, pem_private
from support.raw_http import raw_server
from support.site import build_site

from flask_alipay import AlipayError, CertificateRotated, login_failed, user_logged_in
from flask_alipay.certs import load_roots, pem_blocks, trusted_leaf
from flask_alipay.config import load_config
from flask_alipay.gateway import MAX_DOWNLOADED_CERTS
from flask_alipay.protocol import TOKEN_METHOD, node_name, parse, verify
from flask_alipay.rotation import (
    CERT_DOWNLOAD_METHOD,
    cert_download_business,
    read_downloaded_cert,
)
from flask_alipay.signing import sign_text
from flask_alipay.testing import AlipayEmulator


@pytest.fixture(scope="module")
def cert_emulator(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> Iterator[AlipayEmulator]:
    emulator = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
    )
    with emulator.serve():
        yield emulator


@pytest.fixture
def cert_config(cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    cert_emulator.reset()
    return {**cert_emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)}


def test_sign_in_in_certificate_mode(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    assert "ALIPAY_PUBLIC_KEY" not in cert_config
    site = build_site(cert_config)
    users: list[Any] = []
    user_logged_in.connect(
        lambda sender, user, **extra: users.append(user), sender=site, weak=False
    )
    assert sign_in(site.test_client()).status_code == 302
    assert users[0]["nick_name"] == "小明"
    for request in cert_emulator.requests:
        assert request.query["app_cert_sn"] == cert_emulator.app_cert_sn()
        assert request.query["alipay_root_cert_sn"] == cert_emulator.root_cert_sn


def test_certificate_files_by_path(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    paths = cert_emulator.write_cert_files(tmp_path)
    config = {k: v for k, v in cert_emulator.config().items() if not k.endswith("_CERT")}
    site = build_site(
        {
            **config,
            **{k: str(v) for k, v in paths.items()},
            "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        }
    )
    assert sign_in(site.test_client()).status_code == 302


def downloads(emulator: AlipayEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.method == CERT_DOWNLOAD_METHOD]


def test_a_rotated_alipay_certificate_is_downloaded_once_and_trusted(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    site = build_site(cert_config)
    users: list[Any] = []
    user_logged_in.connect(
        lambda sender, user, **extra: users.append(user), sender=site, weak=False
    )
    new_sn = cert_emulator.rotate_alipay_cert(new_key=True)
    assert sign_in(site.test_client()).status_code == 302
    assert users and users[0]["nick_name"] == "小明"
    (download,) = downloads(cert_emulator)
    assert json.loads(download.params["biz_content"]) == {"alipay_cert_sn": new_sn}
    assert any(new_sn in record.getMessage() for record in caplog.records)
    # The next sign-in uses the downloaded certificate: no second download.
    assert sign_in(site.test_client()).status_code == 302
    assert len(downloads(cert_emulator)) == 1
    with site.app_context():
        assert site.extensions["alipay"].gateway.downloaded_certs == (new_sn,)


def test_concurrent_answers_under_a_new_certificate_download_it_once(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    cert_emulator.rotate_alipay_cert()
    statuses: list[int] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: sign_in(site.test_client()).status_code, range(6)))
    assert statuses == [302] * 6
    assert len(downloads(cert_emulator)) == 1


def test_a_certificate_that_does_not_chain_to_the_root_bundle_is_refused(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors: list[AlipayError] = []
    login_failed.connect(
        lambda sender, error, **extra: errors.append(error), sender=site, weak=False
    )
    cert_emulator.rotate_alipay_cert(new_key=True, untrusted=True)
    try:
        response = sign_in(site.test_client())
    finally:
        cert_emulator.rotate_alipay_cert()  # a trusted one again, for later tests
    assert response.status_code == 502
    assert errors[0].reason == "cert_rotated"
    assert "not issued by ALIPAY_ROOT_CERT" in errors[0].message
    assert "rotated its certificate" in errors[0].hint
    assert len(downloads(cert_emulator)) == 1
    with site.app_context():
        assert site.extensions["alipay"].gateway.downloaded_certs == ()


def test_a_download_answer_that_does_not_verify_is_refused(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors: list[AlipayError] = []
    login_failed.connect(
        lambda sender, error, **extra: errors.append(error), sender=site, weak=False
    )
    cert_emulator.rotate_alipay_cert()
    cert_emulator.inject(method=CERT_DOWNLOAD_METHOD, bad_signature=True)
    response = sign_in(site.test_client())
    assert response.status_code == 502
    assert errors[0].reason == "cert_rotated"
    assert "did not verify" in errors[0].message


def test_a_refused_download_is_a_502_with_the_rotation_hint(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors: list[AlipayError] = []
    login_failed.connect(
        lambda sender, error, **extra: errors.append(error), sender=site, weak=False
    )
    cert_emulator.rotate_alipay_cert()
    cert_emulator.inject(method=CERT_DOWNLOAD_METHOD, sub_code="isp.unknow-error")
    response = sign_in(site.test_client())
    assert response.status_code == 502
    assert errors[0].reason == "cert_rotated" and errors[0].sub_code == "isp.unknow-error"
    assert "rotated its certificate" in errors[0].hint  # in the log line, and in debug mode


def failures(site: Flask) -> list[AlipayError]:
    errors: list[AlipayError] = []
    login_failed.connect(
        lambda sender, error, **extra: errors.append(error), sender=site, weak=False
    )
    return errors


def finish_together(site: Flask, count: int) -> list[Any]:
    """``count`` sign-ins whose callbacks (token call, then any download) start at once."""
    clients = [site.test_client() for _ in range(count)]
    callbacks = [authorize(start_login(client)) for client in clients]
    barrier = threading.Barrier(count)

    def callback(n: int) -> Any:
        barrier.wait(timeout=30)
        return finish(clients[n], callbacks[n])

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(callback, range(count)))


def test_concurrent_answers_share_one_failed_download(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors = failures(site)
    cert_emulator.rotate_alipay_cert()
    # Answered late, so that every callback asks while the first download is out.
    cert_emulator.inject(method=CERT_DOWNLOAD_METHOD, sub_code="isp.unknow-error", delay=1, times=6)
    responses = finish_together(site, 6)
    assert [r.status_code for r in responses] == [502] * 6
    assert len(downloads(cert_emulator)) == 1
    assert len(errors) == 6
    assert {(e.reason, e.sub_code) for e in errors} == {("cert_rotated", "isp.unknow-error")}
    with site.app_context():
        assert site.extensions["alipay"].gateway.downloaded_certs == ()


def test_a_download_that_times_out_is_a_504_for_every_waiter(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site({**cert_config, "ALIPAY_TIMEOUT": 1})
    errors = failures(site)
    cert_emulator.rotate_alipay_cert()
    cert_emulator.inject(method=CERT_DOWNLOAD_METHOD, delay=3, times=6)
    responses = finish_together(site, 6)
    assert [r.status_code for r in responses] == [504] * 6
    assert {e.reason for e in errors} == {"timeout"}
    # One download for all six, not six in a row (which took 6 x ALIPAY_TIMEOUT).
    assert len(downloads(cert_emulator)) == 1


def test_a_download_does_not_wait_for_another_sns(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    first_sn = cert_emulator.rotate_alipay_cert()
    # The first SN's download is answered late, and then refused.
    cert_emulator.inject(method=CERT_DOWNLOAD_METHOD, sub_code="isp.unknow-error", delay=3)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(sign_in, site.test_client())
        for _ in range(200):
            if downloads(cert_emulator) or slow.done():
                break
            time.sleep(0.05)
        second_sn = cert_emulator.rotate_alipay_cert()
        assert sign_in(site.test_client()).status_code == 302
        assert not slow.done(), "the second SN waited for the first one's download"
        assert slow.result(timeout=30).status_code == 502
    asked = [json.loads(r.params["biz_content"]) for r in downloads(cert_emulator)]
    assert asked == [{"alipay_cert_sn": first_sn}, {"alipay_cert_sn": second_sn}]


@contextmanager
def gateway_that_hangs_up_on_downloads(emulator: AlipayEmulator) -> Iterator[str]:
    """A gateway in front of the emulator that forwards every call but the download,
    on which it closes the connection without a word."""
    assert emulator.server is not None
    target = emulator.server.gateway_url

    def forward(conn: socket.socket, request: bytes) -> None:
        head, _, body = request.partition(b"\r\n\r\n")
        path = head.split(b"\r\n")[0].split(b" ")[1].decode("ascii")
        if CERT_DOWNLOAD_METHOD in path:
            return  # raw_server closes the connection
        answer = requests.post(
            target + "?" + path.partition("?")[2],
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            timeout=10,
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html;charset=utf-8\r\n"
            + f"Content-Length: {len(answer.content)}\r\nConnection: close\r\n\r\n".encode()
            + answer.content
        )

    with raw_server(forward) as (url, _):
        yield url


def test_an_unreachable_download_is_a_502_with_the_rotation_hint(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    with gateway_that_hangs_up_on_downloads(cert_emulator) as gateway:
        site = build_site({**cert_config, "ALIPAY_GATEWAY_URL": gateway})
        errors = failures(site)
        cert_emulator.rotate_alipay_cert()
        response = sign_in(site.test_client())
    assert response.status_code == 502
    assert errors[0].reason == "cert_rotated"
    assert "could not be downloaded" in errors[0].message
    assert "could not be reached" in errors[0].message
    assert "rotated its certificate" in errors[0].hint


def test_the_answer_that_named_a_new_certificate_is_verified_with_it(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    errors = failures(site)
    new_sn = cert_emulator.rotate_alipay_cert(new_key=True)
    cert_emulator.inject(method=TOKEN_METHOD, bad_signature=True)
    response = sign_in(site.test_client())
    assert response.status_code == 502
    assert errors[0].reason == "signature"
    # The download itself was good: the certificate is held, the answer still refused.
    assert len(downloads(cert_emulator)) == 1
    with site.app_context():
        assert site.extensions["alipay"].gateway.downloaded_certs == (new_sn,)


def test_a_download_must_bring_the_certificate_asked_for_signed_under_it(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    """One real download answer that verifies, used two wrong ways: each is refused."""
    old_sn = cert_emulator.alipay_cert_sn
    new_sn = cert_emulator.rotate_alipay_cert()  # the same key: only the SN checks can refuse
    site = build_site(cert_config)
    with site.app_context():
        gateway = site.extensions["alipay"].gateway
        request = gateway.sign(CERT_DOWNLOAD_METHOD, cert_download_business(old_sn))
        reply = gateway.send(request.url, request.body, request.headers)
    cfg = gateway.config
    answer = parse(cfg, CERT_DOWNLOAD_METHOD, reply.status_code, reply.content)
    assert answer.cert_sn == new_sn  # the old certificate, in an answer signed under the new
    old = trusted_leaf(base64.b64decode(answer.data["alipay_cert_content"]), cfg.root_certs)
    assert old.sn == old_sn
    verify(cfg, answer, old.public_key)  # it verifies: nothing but the SNs gives it away
    with pytest.raises(CertificateRotated, match="not the one asked for"):
        read_downloaded_cert(cfg, reply.status_code, reply.content, new_sn)
    with pytest.raises(CertificateRotated, match="signed under another certificate"):
        read_downloaded_cert(cfg, reply.status_code, reply.content, old_sn)


@pytest.fixture(scope="module")
def own_pki(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AlipayEmulator:
    """An emulator's PKI, never rotated: its Alipay certificate carries ``alipay_key``."""
    return AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
    )


def download_answer(content: str, sn: str, key: rsa.RSAPrivateKey) -> bytes:
    """A download answer written and signed by hand, as Alipay would sign it."""
    data = {"code": "10000", "msg": "Success", "alipay_cert_content": content}
    node = json.dumps(data, separators=(",", ":"))
    sign = sign_text(node, key, "RSA2", "utf-8")
    name = node_name(CERT_DOWNLOAD_METHOD)
    return f'{{"{name}":{node},"alipay_cert_sn":"{sn}","sign":"{sign}"}}'.encode()


@pytest.mark.parametrize(
    ("wrap", "accepted"),
    [
        (lambda text: text, True),
        (lambda text: "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76)), True),
        (lambda text: " " + text[:40] + "\n\t" + text[40:] + "\n", True),
        (lambda text: text[:40] + "*" + text[40:], False),
        (lambda text: text[:40] + "\\" + text[40:], False),
        (lambda text: text.rstrip("=") + "=", False),
    ],
    ids=["plain", "mime-lines", "spaces-and-tabs", "star", "backslash", "bad-padding"],
)
def test_downloaded_base64_may_be_wrapped_in_whitespace_and_nothing_else(
    own_pki: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    alipay_key: rsa.RSAPrivateKey,
    wrap: Any,
    accepted: bool,
) -> None:
    cfg = load_config(
        {
            "ALIPAY_APP_ID": own_pki.app_id,
            "ALIPAY_PRIVATE_KEY": pem_private(app_key),
            "ALIPAY_APP_CERT": own_pki.app_cert_pem(),
            "ALIPAY_ALIPAY_CERT": own_pki.alipay_cert_pem,
            "ALIPAY_ROOT_CERT": own_pki.root_cert_pem,
        }
    )
    sn = own_pki.alipay_cert_sn
    content = wrap(base64.b64encode(own_pki.alipay_cert_download_pem.encode()).decode())
    body = download_answer(content, sn, alipay_key)
    if accepted:
        assert read_downloaded_cert(cfg, 200, body, sn).sn == sn
    else:
        with pytest.raises(CertificateRotated, match="it is not base64"):
            read_downloaded_cert(cfg, 200, body, sn)


def test_downloaded_certificates_are_bounded(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    site = build_site(cert_config)
    sns = []
    for _ in range(MAX_DOWNLOADED_CERTS + 2):
        sns.append(cert_emulator.rotate_alipay_cert())
        assert sign_in(site.test_client()).status_code == 302
    with site.app_context():
        held = site.extensions["alipay"].gateway.downloaded_certs
    assert held == tuple(sns[-MAX_DOWNLOADED_CERTS:])


def test_check_prints_each_certificate_expiry(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    cert_emulator.reset()
    config = {**cert_emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)}
    result = run_check(config)
    for key in ("ALIPAY_APP_CERT", "ALIPAY_ALIPAY_CERT", "ALIPAY_ROOT_CERT"):
        assert re.search(rf"{key}: .+ expires \d{{4}}-\d{{2}}-\d{{2}}", result.output), key


@pytest.mark.parametrize(("days", "warned"), [(12, True), (29, True), (31, False), (200, False)])
def test_check_warns_of_a_certificate_only_within_30_days_of_its_expiry(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey, days: int, warned: bool
) -> None:
    issuer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Soon Expiring Alipay")])
    now = datetime.now(timezone.utc)
    soon = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(cert_emulator.alipay_public_key)
        .serial_number(7)
        .not_valid_before(now - timedelta(days=300))
        .not_valid_after(now + timedelta(days=days, hours=1))
        .sign(issuer_key, hashes.SHA256())
    )
    pem = soon.public_bytes(serialization.Encoding.PEM).decode()
    config = {
        **cert_emulator.config(),
        "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        "ALIPAY_ALIPAY_CERT": pem,
    }
    result = run_check(config)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "Soon Expiring" in line]
    assert "ALIPAY_ALIPAY_CERT: CN=Soon Expiring Alipay expires" in line
    if warned:
        assert line.startswith("WARNING") and f"in {days} days" in line, result.output
    else:
        assert line.startswith("OK") and "days" not in line, result.output


def test_check_reports_every_root_certificate_including_those_it_cannot_load(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    """Alipay's real bundle: four roots, one of them ECC (E1), which some cryptography
    versions cannot load; each gets its line, loaded or not."""
    bundle = (VECTORS / "alipayRootCert.crt").read_text()
    config = {
        **cert_emulator.config(),
        "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        "ALIPAY_ROOT_CERT": bundle,
    }
    result = run_check(config)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "ALIPAY_ROOT_CERT:" in line]
    assert len(lines) == len(pem_blocks(bundle)) == 4, result.output
    (e1,) = [line for line in lines if "Ant Financial Certification Authority E1" in line]
    assert e1.startswith("OK")
    loads = load_roots(bundle)
    if not any("E1" in root.subject.rfc4514_string() for root in loads):
        assert "cannot be loaded" in e1 and "expiry is not checked" in e1
    unloaded = [line for line in lines if "cannot be loaded" in line]
    assert len(unloaded) == 4 - len(loads)


def test_app_certificate_of_another_key_fails_at_start(
    cert_config: dict[str, Any], other_key: rsa.RSAPrivateKey
) -> None:
    from flask_alipay import AlipayConfigError

    with pytest.raises(AlipayConfigError, match="ALIPAY_APP_CERT does not carry the public half"):
        build_site({**cert_config, "ALIPAY_PRIVATE_KEY": pem_private(other_key)})


def run_check(config: dict[str, Any], *args: str) -> Any:
    def factory() -> Flask:
        return build_site(config)

    return CliRunner().invoke(FlaskGroup(create_app=factory), ["alipay", "check", *args])


def test_check_understands_certificate_mode(
    cert_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    cert_emulator.reset()
    config = {**cert_emulator.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)}
    result = run_check(config, "--live")
    assert result.exit_code == 0, result.output
    assert f"app_cert_sn {cert_emulator.app_cert_sn()}" in result.output
    assert f"alipay_root_cert_sn {cert_emulator.root_cert_sn}" in result.output
    assert "PUBLIC_KEY is not set" not in result.output
    assert "accepted the APPID, the key and the signature" in result.output
    assert "Alipay accepted" not in result.output  # the emulator answered, not Alipay
    stale = run_check({**config, "ALIPAY_PUBLIC_KEY": cert_emulator.alipay_public_key_base64})
    assert "ALIPAY_PUBLIC_KEY is ignored in certificate mode" in stale.output


def test_a_root_bundle_beginning_with_alipays_real_sm2_root_still_signs_in(
    cert_config: dict[str, Any], cert_emulator: AlipayEmulator
) -> None:
    """The real alipayRootCert.crt begins with an SM2 root (NRCAC's ROOTCA), which
    cryptography cannot make: prepend Alipay's own, blank-line separated.  It is not
    RSA-signed, so it must not count in alipay_root_cert_sn, and sign-in passes."""
    real = (VECTORS / "alipayRootCert.crt").read_text(encoding="ascii")
    sm2_root = real[: real.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    assert "MIIBszCCAVegAwIBAgIIaeL+wBcKxns" in sm2_root  # SM3withSM2, not RSA
    bundle = sm2_root + "\n\n" + cert_emulator.root_cert_pem
    site = build_site({**cert_config, "ALIPAY_ROOT_CERT": bundle})
    assert sign_in(site.test_client()).status_code == 302
    (call, *_) = cert_emulator.requests
    assert call.query["alipay_root_cert_sn"] == cert_emulator.root_cert_sn
