"""The emulator's two command lines and the pytest plugin, used as a newcomer would."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from support.browser import sign_in
from support.keys import pem_private, pem_public
from support.site import build_site

from flask_alipay import AlipayError, UnverifiedAnswer, login_failed, user_logged_in
from flask_alipay.signing import sign_text, string_to_sign
from flask_alipay.testing import beijing_now

pytest_plugins = ["pytester"]


@contextmanager
def running(*args: str) -> Iterator[dict[str, str]]:
    """Start the emulator command; yield the KEY=VALUE settings it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    settings: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("# Alipay emulator on"):
                break
            if "=" in line and not line.startswith("#"):
                name, value = line.strip().split("=", 1)
                settings[name] = value
        else:
            raise AssertionError(f"the emulator exited: {process.wait()}")
        yield settings
    finally:
        process.terminate()
        process.wait(timeout=10)


def signs_in(config: dict[str, str]) -> str:
    site = build_site(config)
    seen: list[str] = []

    def on_login(sender: object, user: object, **extra: object) -> None:
        seen.append(getattr(user, "id", ""))

    user_logged_in.connect(on_login, sender=site)
    try:
        response = sign_in(site.test_client())
    finally:
        user_logged_in.disconnect(on_login, sender=site)
    assert response.status_code == 302, response.get_data(as_text=True)
    return seen[0]


def test_flask_alipay_emulator_prints_settings_that_work() -> None:
    args = ("-m", "flask", "alipay", "emulator", "--port", "0", "--auto-approve")
    with running(*args) as settings:
        assert set(settings) == {
            "ALIPAY_APP_ID",
            "ALIPAY_AUTHORIZE_URL",
            "ALIPAY_GATEWAY_URL",
            "ALIPAY_PUBLIC_KEY",
            "ALIPAY_PRIVATE_KEY",
        }
        assert settings["ALIPAY_GATEWAY_URL"].startswith("http://127.0.0.1:")
        assert signs_in(settings)


def test_env_prefix_prints_settings_for_from_prefixed_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ("-m", "flask", "alipay", "emulator", "--port", "0", "--auto-approve")
    with running(*args, "--env-prefix", "FLASK_") as printed:
        assert printed and all(name.startswith("FLASK_ALIPAY_") for name in printed)
        for name, value in printed.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FLASK_SECRET_KEY", "test-secret")
        app = Flask("prefixed")
        app.config.from_prefixed_env()  # as README's Usage app reads its settings
        assert app.config["ALIPAY_GATEWAY_URL"] == printed["FLASK_ALIPAY_GATEWAY_URL"]
        assert signs_in({k: v for k, v in app.config.items() if k.startswith("ALIPAY_")})


def test_keys_dir_keeps_the_key_pair_across_restarts(tmp_path: Path) -> None:
    keys = tmp_path / "emulator-keys"
    args = ("-m", "flask_alipay.testing", "--port", "0", "--auto-approve", "--keys", str(keys))
    with running(*args) as first:
        pass
    with running(*args) as second:
        assert second["ALIPAY_PUBLIC_KEY"] == first["ALIPAY_PUBLIC_KEY"]
        assert second["ALIPAY_PRIVATE_KEY"] == first["ALIPAY_PRIVATE_KEY"]
        # An app configured from the first run still signs in once it has the new address.
        endpoints = {k: second[k] for k in ("ALIPAY_AUTHORIZE_URL", "ALIPAY_GATEWAY_URL")}
        assert signs_in({**first, **endpoints})
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in keys.iterdir()} == {
        "alipay_private_key.pem": 0o600,
        "app_private_key.pem": 0o600,
    }


def test_a_restarted_emulators_new_key_gets_a_hint_that_says_so() -> None:
    args = ("-m", "flask_alipay.testing", "--port", "0", "--auto-approve")
    with running(*args) as first:
        pass
    with running(*args) as second:
        stale = {
            **first,  # ALIPAY_PUBLIC_KEY from the run before the restart
            "ALIPAY_PRIVATE_KEY": second["ALIPAY_PRIVATE_KEY"],
            "ALIPAY_AUTHORIZE_URL": second["ALIPAY_AUTHORIZE_URL"],
            "ALIPAY_GATEWAY_URL": second["ALIPAY_GATEWAY_URL"],
        }
        site = build_site(stale)
        failures: list[AlipayError] = []
        login_failed.connect(
            lambda sender, error, **extra: failures.append(error), sender=site, weak=False
        )
        assert sign_in(site.test_client()).status_code == 502
    (error,) = failures
    assert isinstance(error, UnverifiedAnswer)
    assert "an emulator that restarted with a new key pair" in error.hint
    assert "--keys DIR" in error.hint


def test_python_m_takes_the_apps_public_key(tmp_path: Path, app_key: rsa.RSAPrivateKey) -> None:
    key_file = tmp_path / "app_public_key.pem"
    key_file.write_text(pem_public(app_key.public_key()))
    args = ("-m", "flask_alipay.testing", "--port", "0", "--auto-approve")
    with running(*args, "--app-public-key", str(key_file), "--app-id", "2021000000000777") as s:
        assert "ALIPAY_PRIVATE_KEY" not in s
        assert s["ALIPAY_APP_ID"] == "2021000000000777"
        assert signs_in({**s, "ALIPAY_PRIVATE_KEY": pem_private(app_key)})


def test_bad_app_public_key_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flask_alipay.testing", "--app-public-key", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not an RSA public key" in result.stderr


PLUGIN_TESTS = """
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask_alipay.keys import public_key_base64
from flask_alipay import AlipayLogin, current_alipay_user, login_required
import pytest


def make(config):
    app = Flask("userapp")
    app.config.update(SECRET_KEY="x", **config)
    AlipayLogin(app)

    @app.route("/me")
    @login_required
    def me():
        return current_alipay_user["nick_name"]

    return app


def test_factory_with_alipay_config(alipay_config, alipay_emulator, alipay_sign_in):
    client = make(alipay_config).test_client()
    alipay_emulator.add_user("alice", nick_name="爱丽丝")
    assert alipay_sign_in(client, "alice", next="/me").headers["Location"] == "/me"
    assert client.get("/me").get_data(as_text=True) == "爱丽丝"


@pytest.fixture
def app(alipay_test_keys):
    # Configured for production; the plugin points it at the emulator.
    pem = alipay_test_keys.app_private_key_pem
    production_alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return make({
        "ALIPAY_APP_ID": "2021000000000042",
        "ALIPAY_PRIVATE_KEY": pem,
        "ALIPAY_PUBLIC_KEY": public_key_base64(production_alipay_key.public_key()),
    })


def test_existing_app_is_pointed(app, alipay_emulator, alipay_sign_in):
    client = app.test_client()
    assert alipay_sign_in(client).status_code == 302
    assert client.get("/me").get_data(as_text=True) == "小明"
    with app.app_context():
        assert app.extensions["alipay"].config.gateway_url == alipay_emulator.server.gateway_url


def test_app_gets_its_settings_back(app):
    with app.app_context():
        assert app.extensions["alipay"].config.gateway_url == "https://openapi.alipay.com/gateway.do"
"""


def test_pytest_plugin_needs_no_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_app=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


PYTEST_FLASK_TESTS = """
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask_alipay import AlipayLogin, current_alipay_user, login_required
from flask_alipay.keys import public_key_base64


def make(config):
    app = Flask("userapp")
    # live_server names itself after the host's reverse DNS unless SERVER_NAME says otherwise.
    app.config.update(SECRET_KEY="x", SERVER_NAME="127.0.0.1", **config)
    AlipayLogin(app)

    @app.route("/me")
    @login_required
    def me():
        return current_alipay_user["nick_name"]

    return app


@pytest.fixture
def app(request, alipay_test_keys):
    if request.node.get_closest_marker("production"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        return make({
            "ALIPAY_APP_ID": "2021000000000042",
            "ALIPAY_PRIVATE_KEY": alipay_test_keys.app_private_key_pem,
            "ALIPAY_PUBLIC_KEY": public_key_base64(key),
        })
    return make(request.getfixturevalue("alipay_config"))  # an app fixture on alipay_config


def browse(live_server):
    browser = requests.Session()
    login = browser.get(live_server.url("/alipay/login?next=/me"), allow_redirects=False)
    consent = requests.get(login.headers["Location"], allow_redirects=False, timeout=10)
    done = browser.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    assert done.status_code == 302, done.text
    return login.headers["Location"], browser.get(live_server.url("/me")).text


def test_pytest_flask_client(client, alipay_sign_in):
    assert alipay_sign_in(client, next="/me").headers["Location"] == "/me"
    assert client.get("/me").get_data(as_text=True) == "小明"


def test_live_server_signs_in_on_the_emulator(live_server, alipay_emulator):
    authorize, me = browse(live_server)
    assert authorize.startswith(alipay_emulator.server.authorize_url + "?")
    assert me == "小明"


@pytest.mark.production
def test_live_server_of_a_production_app_is_pointed(live_server, alipay_emulator):
    authorize, me = browse(live_server)
    assert not authorize.startswith("https://openauth.alipay.com")
    assert authorize.startswith(alipay_emulator.server.authorize_url + "?")
    assert me == "小明"
"""


#: pytest-flask's plain form: the app fixture takes alipay_config like any other fixture.
PLAIN_APP_FIXTURE_TESTS = """
import pytest
import requests
from flask import Flask
from flask_alipay import AlipayLogin, current_alipay_user, login_required


@pytest.fixture
def app(alipay_config):
    app = Flask("plainapp")
    app.config.update(SECRET_KEY="x", SERVER_NAME="127.0.0.1", **alipay_config)
    AlipayLogin(app)

    @app.route("/me")
    @login_required
    def me():
        return current_alipay_user["nick_name"]

    return app


def test_plain_app_fixture_and_client(client, alipay_emulator, alipay_sign_in):
    alipay_emulator.add_user("alice", nick_name="爱丽丝")
    assert alipay_sign_in(client, "alice", next="/me").headers["Location"] == "/me"
    assert client.get("/me").get_data(as_text=True) == "爱丽丝"


def test_plain_app_fixture_and_live_server(live_server, alipay_emulator):
    browser = requests.Session()
    login = browser.get(live_server.url("/alipay/login?next=/me"), allow_redirects=False)
    assert login.headers["Location"].startswith(alipay_emulator.server.authorize_url + "?")
    consent = requests.get(login.headers["Location"], allow_redirects=False, timeout=10)
    done = browser.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    assert done.status_code == 302, done.text
    assert browser.get(live_server.url("/me")).text == "小明"
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist-2"])
def test_plugin_with_pytest_flask_and_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    # FlaskGroup sets FLASK_RUN_FROM_CLI=true in os.environ when an earlier test runs the
    # flask command in-process; inherited, it makes live_server's app.run() return at once.
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    pytester.makepyfile(
        test_pytest_flask_app=PYTEST_FLASK_TESTS, test_plain_app_fixture=PLAIN_APP_FIXTURE_TESTS
    )
    pytester.makeini(
        "[pytest]\nlive_server_scope = function\n"
        "markers = production: an app configured for production\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--live-server-host=127.0.0.1", *workers
    )
    result.assert_outcomes(passed=5)


def test_strict_on_the_command_line_refuses_a_misplaced_parameter(
    app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Everything in the query of a POST (Logto's placement): answered unless --strict."""
    key_file = tmp_path / "app_public_key.pem"
    key_file.write_text(pem_public(app_key.public_key()))
    base = ("-m", "flask_alipay.testing", "--port", "0", "--app-public-key", str(key_file))
    answers = {}
    for flags in ((), ("--strict",)):
        with running(*base, *flags) as printed:
            params = {
                "app_id": printed["ALIPAY_APP_ID"],
                "method": "alipay.system.oauth.token",
                "format": "JSON",
                "charset": "utf-8",
                "sign_type": "RSA2",
                "timestamp": beijing_now().strftime("%Y-%m-%d %H:%M:%S"),
                "version": "1.0",
                "grant_type": "authorization_code",
                "code": "0" * 32,
            }
            params["sign"] = sign_text(string_to_sign(params), app_key, "RSA2", "utf-8")
            url = printed["ALIPAY_GATEWAY_URL"] + "?" + urlencode(params)
            answers[flags] = requests.post(url, timeout=10).json()
    node = "alipay_system_oauth_token_response"
    lenient = answers[()].get("error_response") or answers[()][node]
    strict = answers[("--strict",)].get("error_response") or answers[("--strict",)][node]
    assert lenient["sub_code"] == "isv.code-invalid"  # read, then refused for the code
    assert strict["sub_code"] == "isv.invalid-parameter"  # refused for the placement
