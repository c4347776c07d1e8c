"""The emulator's opt-in control channel: another process steers it over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from support.browser import sign_in
from support.keys import pem_private, pem_public
from support.site import build_site

from flask_alipay.testing import AlipayEmulator

TOKEN = "alipay.system.oauth.token"
USER_INFO = "alipay.user.info.share"
PATHS = [
    ("POST", "inject"),
    ("POST", "reset"),
    ("POST", "rotate"),
    ("GET", "stats"),
    ("GET", "users"),
]
DOWNLOAD = "alipay.open.app.alipaycert.download"


@pytest.fixture
def steered(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> Iterator[AlipayEmulator]:
    emu = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        control=True,
    )
    with emu.serve():
        yield emu


@pytest.fixture
def control(steered: AlipayEmulator) -> Callable[..., requests.Response]:
    assert steered.server is not None
    base = steered.server.url + "/_emulator/"

    def call(verb: str, name: str, **kwargs: Any) -> requests.Response:
        return requests.request(verb, base + name, timeout=10, **kwargs)

    return call


@pytest.fixture
def steered_site(steered: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> Flask:
    return build_site({**steered.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)})


@pytest.mark.parametrize(("verb", "name"), PATHS)
def test_off_by_default(emulator: AlipayEmulator, verb: str, name: str) -> None:
    assert emulator.server is not None
    url = f"{emulator.server.url}/_emulator/{name}"
    response = requests.request(verb, url, json={"html_status": 502}, timeout=10)
    assert response.status_code == 404
    assert not emulator.injections


def test_inject_queues_what_inject_would(
    steered: AlipayEmulator, control: Callable[..., requests.Response], steered_site: Flask
) -> None:
    answer = control("POST", "inject", json={"method": TOKEN, "html_status": 502, "times": 2})
    assert answer.status_code == 200
    assert answer.json()["queued"]["html_status"] == 502
    assert answer.json()["injections_left"] == 2
    assert steered.injections[0].method == TOKEN
    assert sign_in(steered_site.test_client()).status_code == 502
    assert sign_in(steered_site.test_client()).status_code == 502
    assert sign_in(steered_site.test_client()).status_code == 302


@pytest.mark.parametrize(
    ("arguments", "status"),
    [
        ({"delay": 3}, 504),
        ({"truncated": True}, 502),
        ({"bad_signature": True}, 502),
        ({"method": USER_INFO, "sub_code": "aop.invalid-auth-token"}, 502),
        ({"sub_code": "isv.code-invalid", "code": "40002"}, 400),
    ],
)
def test_injected_faults_reach_the_site(
    control: Callable[..., requests.Response],
    steered: AlipayEmulator,
    app_key: rsa.RSAPrivateKey,
    arguments: dict[str, Any],
    status: int,
) -> None:
    site = build_site(
        {**steered.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key), "ALIPAY_TIMEOUT": 1}
    )
    assert control("POST", "inject", json=arguments).status_code == 200
    assert sign_in(site.test_client()).status_code == status


def test_reset_clears_injections(
    steered: AlipayEmulator, control: Callable[..., requests.Response], steered_site: Flask
) -> None:
    control("POST", "inject", json={"unsigned": True, "times": 5})
    control("POST", "inject", json={"method": USER_INFO, "truncated": True})
    answer = control("POST", "reset", json={})
    assert answer.status_code == 200
    assert answer.json() == {"injections_cleared": 6, "injections_left": 0}
    assert not steered.injections
    assert sign_in(steered_site.test_client()).status_code == 302


def test_stats_count_calls_by_method(
    steered: AlipayEmulator, control: Callable[..., requests.Response], steered_site: Flask
) -> None:
    empty = control("GET", "stats").json()
    assert empty["gateway_requests"] == {}
    assert empty["gateway_requests_total"] == 0
    assert empty["injections_left"] == 0
    for _ in range(2):
        assert sign_in(steered_site.test_client(), login_as="amy").status_code == 302
    control("POST", "inject", json={"method": TOKEN, "delay": 0.1, "times": 3})
    stats = control("GET", "stats").json()
    assert stats["gateway_requests"] == {TOKEN: 2, USER_INFO: 2}
    assert stats["gateway_requests_total"] == 4
    assert stats["authorize_requests"] == 2
    assert stats["users"] == 2  # the default user and amy
    assert stats["injections_left"] == 3
    assert stats["injections"][0]["method"] == TOKEN
    # reset() forgets the recorded requests but not the counts.
    control("POST", "reset", json={})
    assert control("GET", "stats").json()["gateway_requests_total"] == 4
    assert steered.requests == []


def test_users_gives_ids_and_profiles(
    steered: AlipayEmulator, control: Callable[..., requests.Response], steered_site: Flask
) -> None:
    sign_in(steered_site.test_client(), login_as="bo")
    users = control("GET", "users").json()
    assert set(users) == {"default", "bo"}
    assert users["bo"]["open_id"] == steered.users["bo"].open_id
    assert users["bo"]["nick_name"] == steered.users["bo"].nick_name


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "JSON object"),
        ([1, 2], "JSON object"),
        ({"html_status": 502, "colour": "red"}, "unknown inject() arguments: colour"),
        ({"method": 7}, "method must be a string"),
        ({"code": None}, "code must be a string"),
        ({"delay": "4"}, "delay must be a number"),
        ({"delay": -1}, "delay must be a number"),
        ({"delay": True}, "delay must be a number"),
        ({"truncated": "yes"}, "truncated must be true or false"),
        ({"html_status": 1000}, "html_status must be an HTTP status"),
        ({"times": 0}, "times must be a whole number"),
        ({"times": 1.5}, "times must be a whole number"),
    ],
)
def test_inject_refuses_bad_arguments(
    steered: AlipayEmulator,
    control: Callable[..., requests.Response],
    body: object,
    message: str,
) -> None:
    if isinstance(body, str):
        answer = control("POST", "inject", data=body, headers={"Content-Type": "application/json"})
    else:
        answer = control("POST", "inject", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert not steered.injections


def _start(args: list[str], out: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Run the emulator command; return it and its URL once it listens."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask_alipay.testing", "--port", "0", *args],
            stdout=sink,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.startswith("# Alipay emulator on "):
                return process, line.split()[4]
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise AssertionError(f"the emulator did not start: {out.read_text(encoding='utf-8')}")


@pytest.mark.parametrize("on", [True, False], ids=["--control", "default"])
def test_command_line_flag(tmp_path: Path, app_key: rsa.RSAPrivateKey, on: bool) -> None:
    key_file = tmp_path / "app_public_key.pem"
    key_file.write_text(pem_public(app_key.public_key()), encoding="ascii")
    args = ["--auto-approve", "--app-public-key", str(key_file)]
    process, url = _start([*args, "--control"] if on else args, tmp_path / "out.txt")
    try:
        stats = requests.get(url + "/_emulator/stats", timeout=10)
        injected = requests.post(url + "/_emulator/inject", json={"truncated": True}, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)
    printed = (tmp_path / "out.txt").read_text(encoding="utf-8")
    if on:
        assert stats.status_code == 200
        assert stats.json()["injections_left"] == 0
        assert injected.json()["injections_left"] == 1
        assert f"# Control channel on {url}/_emulator/" in printed
    else:
        assert (stats.status_code, injected.status_code) == (404, 404)
        assert "Control channel" not in printed


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("name", ["inject", "reset", "rotate"])
def test_a_cross_site_simple_post_is_refused(
    steered: AlipayEmulator,
    control: Callable[..., requests.Response],
    name: str,
    content_type: str,
) -> None:
    # What a page on any site can send without a CORS preflight.
    answer = control(
        "POST", name, data='{"html_status": 502}', headers={"Content-Type": content_type}
    )
    assert answer.status_code == 415
    assert steered.injections == []


@pytest.mark.parametrize(("verb", "name"), PATHS)
def test_a_rebound_host_is_refused(
    steered: AlipayEmulator, control: Callable[..., requests.Response], verb: str, name: str
) -> None:
    # A DNS-rebinding page: its own name, resolving to the emulator's address.
    answer = control(verb, name, json={"html_status": 502}, headers={"Host": "evil.example:80"})
    assert answer.status_code == 403
    assert steered.injections == []


def test_localhost_is_the_same_address(
    steered: AlipayEmulator, control: Callable[..., requests.Response]
) -> None:
    assert steered.server is not None
    port = steered.server.url.rsplit(":", 1)[1]
    answer = control("GET", "stats", headers={"Host": f"localhost:{port}"})
    assert answer.status_code == 200


# Rotating Alipay's certificate from another process -------------------------------


@pytest.fixture
def steered_certs(
    app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey
) -> Iterator[AlipayEmulator]:
    emu = AlipayEmulator(
        strict=True,
        app_public_key=app_key.public_key(),
        alipay_private_key=alipay_key,
        cert_mode=True,
        control=True,
    )
    with emu.serve():
        yield emu


def rotate_url(emulator: AlipayEmulator) -> str:
    assert emulator.server is not None
    return emulator.server.url + "/_emulator/rotate"


def test_rotate_issues_a_new_certificate_that_a_site_downloads(
    steered_certs: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    site = build_site({**steered_certs.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)})
    old_sn = steered_certs.alipay_cert_sn
    answer = requests.post(rotate_url(steered_certs), json={"new_key": True}, timeout=10)
    assert answer.status_code == 200
    new_sn = answer.json()["alipay_cert_sn"]
    assert new_sn == steered_certs.alipay_cert_sn != old_sn
    assert sign_in(site.test_client()).status_code == 302
    assert [r.method for r in steered_certs.requests].count(DOWNLOAD) == 1


def test_rotate_untrusted_gives_a_certificate_no_site_trusts(
    steered_certs: AlipayEmulator, app_key: rsa.RSAPrivateKey
) -> None:
    site = build_site({**steered_certs.config(), "ALIPAY_PRIVATE_KEY": pem_private(app_key)})
    answer = requests.post(rotate_url(steered_certs), json={"untrusted": True}, timeout=10)
    assert answer.status_code == 200
    assert sign_in(site.test_client()).status_code == 502


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([True], "JSON object"),
        ({"new_key": "yes"}, "new_key must be true or false"),
        ({"colour": True}, "unknown rotate_alipay_cert() arguments: colour"),
    ],
)
def test_rotate_refuses_bad_arguments(
    steered_certs: AlipayEmulator, body: object, message: str
) -> None:
    sn = steered_certs.alipay_cert_sn
    answer = requests.post(rotate_url(steered_certs), json=body, timeout=10)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert steered_certs.alipay_cert_sn == sn


def test_rotate_is_refused_as_the_other_control_posts_are(
    steered_certs: AlipayEmulator,
) -> None:
    sn = steered_certs.alipay_cert_sn
    url = rotate_url(steered_certs)
    simple = requests.post(url, data="{}", headers={"Content-Type": "text/plain"}, timeout=10)
    rebound = requests.post(url, json={}, headers={"Host": "evil.example:80"}, timeout=10)
    assert (simple.status_code, rebound.status_code) == (415, 403)
    assert steered_certs.alipay_cert_sn == sn


def test_rotate_in_public_key_mode_says_there_is_nothing_to_rotate(
    steered: AlipayEmulator, control: Callable[..., requests.Response]
) -> None:
    answer = control("POST", "rotate", json={})
    assert answer.status_code == 409
    assert "cert_mode=True" in answer.json()["error"]
