"""`flask alipay keygen` and `flask alipay check [--live]`, against the emulator."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.cli import FlaskGroup
from support.keys import pem_body, pem_private, pem_public

from flask_alipay import AlipayLogin, AlipayRefused, doctor
from flask_alipay.config import load_config
from flask_alipay.keys import load_private_key, public_key_base64
from flask_alipay.protocol import ENDPOINTS
from flask_alipay.testing import AlipayEmulator

# keygen --------------------------------------------------------------------


def flask_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keygen_in_an_empty_folder_with_no_app(tmp_path: Path) -> None:
    result = flask_cli("alipay", "keygen", "--out", "keys", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    private = tmp_path / "keys" / "app_private_key.pem"
    public = tmp_path / "keys" / "app_public_key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    text = private.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = load_private_key(text)
    assert key.key_size == 2048
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert lines == [
        public_key_base64(key.public_key()),
        f"ALIPAY_PRIVATE_KEY_FILE={private.resolve()}",
    ]
    assert pem_body(public.read_text()) == lines[0]
    assert pem_body(text)[20:80] not in result.stdout + result.stderr


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_keygen_modes_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    command = [sys.executable, "-m", "flask", "alipay", "keygen", "--out", "deep/keys"]
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PYTHONPATH")}
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(umask),
    )
    assert result.returncode == 0, result.stderr
    mode = {
        path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [tmp_path / "deep", *(tmp_path / "deep").rglob("*")]
    }
    assert mode == {
        "deep": 0o700,
        "deep/keys": 0o700,
        "deep/keys/app_private_key.pem": 0o600,
        "deep/keys/app_public_key.pem": 0o644,
    }


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    assert flask_cli("alipay", "keygen", cwd=tmp_path).returncode == 0
    before = (tmp_path / "app_private_key.pem").read_bytes()
    again = flask_cli("alipay", "keygen", cwd=tmp_path)
    assert again.returncode == 1
    assert "already exist" in again.stderr and "nothing was written" in again.stderr
    assert (tmp_path / "app_private_key.pem").read_bytes() == before


def test_keygen_refuses_when_only_the_public_file_exists(tmp_path: Path) -> None:
    (tmp_path / "app_public_key.pem").write_text("old")
    result = CliRunner().invoke(_group(None), ["alipay", "keygen", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert not (tmp_path / "app_private_key.pem").exists()


def test_keygen_bits(tmp_path: Path) -> None:
    runner = CliRunner()
    bigger = runner.invoke(
        _group(None), ["alipay", "keygen", "--out", str(tmp_path), "--bits", "3072"]
    )
    assert bigger.exit_code == 0, bigger.output
    assert load_private_key((tmp_path / "app_private_key.pem").read_text()).key_size == 3072
    weak = runner.invoke(
        _group(None), ["alipay", "keygen", "--out", str(tmp_path / "w"), "--bits", "1024"]
    )
    assert weak.exit_code == 2


# check ---------------------------------------------------------------------


def _group(factory: Callable[[], Flask] | None) -> FlaskGroup:
    return FlaskGroup(create_app=factory) if factory else FlaskGroup()


def run_check(config: dict[str, Any], *args: str, secret: bool = True) -> Result:
    def factory() -> Flask:
        app = Flask("checked")
        if secret:
            app.config["SECRET_KEY"] = "s"
        app.config.update({k: v for k, v in config.items() if v is not None})
        AlipayLogin(app)
        return app

    return CliRunner().invoke(_group(factory), ["alipay", "check", *args])


@pytest.fixture
def good(alipay_emulator: AlipayEmulator, app_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {
        **alipay_emulator.config(),
        "ALIPAY_PRIVATE_KEY": pem_private(app_key),
        "ALIPAY_REDIRECT_URI": "https://shop.example.cn/alipay/callback",
    }


def test_good_config(good: dict[str, Any]) -> None:
    result = run_check(good)
    assert result.exit_code == 0, result.output
    assert (
        "Callback URL to register as 授权回调地址: https://shop.example.cn/alipay/callback"
        in result.output
    )
    assert "0 error(s), 0 warning(s)." in result.output


def test_callback_url_from_server_name(good: dict[str, Any]) -> None:
    config = {
        **good,
        "ALIPAY_REDIRECT_URI": None,
        "SERVER_NAME": "shop.example.cn",
        "PREFERRED_URL_SCHEME": "https",
        "ALIPAY_URL_PREFIX": "/auth/alipay",
    }
    result = run_check(config)
    assert "https://shop.example.cn/auth/alipay/callback" in result.output
    unknown = run_check({**good, "ALIPAY_REDIRECT_URI": None})
    assert "https://<your domain>/alipay/callback" in unknown.output


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"ALIPAY_PRIVATE_KEY": None},
            "ALIPAY_PRIVATE_KEY (or ALIPAY_PRIVATE_KEY_FILE) is required",
        ),
        (
            {"ALIPAY_PRIVATE_KEY": "bm90IGEga2V5"},
            "ALIPAY_PRIVATE_KEY is not a usable RSA private key",
        ),
        ({"ALIPAY_PUBLIC_KEY": "@@@"}, "ALIPAY_PUBLIC_KEY is not a usable RSA public key"),
        ({"ALIPAY_SIGN_TYPE": "RSA3"}, "ALIPAY_SIGN_TYPE must be one of"),
        ({"ALIPAY_CHARSET": "big5"}, "ALIPAY_CHARSET must be one of"),
        ({"ALIPAY_SCOPE": "auth-all"}, "ALIPAY_SCOPE must be scope names"),
        ({"ALIPAY_APP_ID": None}, "ALIPAY_APP_ID is required"),
    ],
)
def test_errors_exit_1_with_every_finding(
    good: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    result = run_check({**good, **change, "ALIPAY_TIMEOUT": "never"})
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "ALIPAY_TIMEOUT must be a number" in result.output  # all problems, not the first
    assert "2 error(s)" in result.output


def test_running_unverified_is_reported_as_an_error(good: dict[str, Any]) -> None:
    missing = run_check({**good, "ALIPAY_PUBLIC_KEY": None})
    assert missing.exit_code == 1
    assert "ALIPAY_PUBLIC_KEY (or ALIPAY_PUBLIC_KEY_FILE) is required" in missing.output
    unverified = run_check({**good, "ALIPAY_PUBLIC_KEY": None, "ALIPAY_VERIFY_ANSWERS": "false"})
    assert unverified.exit_code == 1
    assert "ERROR" in unverified.output and "ALIPAY_VERIFY_ANSWERS is False" in unverified.output


def test_swapped_public_key(good: dict[str, Any], app_key: rsa.RSAPrivateKey) -> None:
    result = run_check({**good, "ALIPAY_PUBLIC_KEY": pem_public(app_key.public_key())})
    assert result.exit_code == 1
    assert "is your app public key" in result.output
    assert "paste Alipay's public key (支付宝公钥) from the console" in result.output


def test_missing_secret_key(good: dict[str, Any]) -> None:
    result = run_check(good, secret=False)
    assert result.exit_code == 1 and "SECRET_KEY is not set" in result.output


def test_errors_never_echo_key_material(good: dict[str, Any], app_key: rsa.RSAPrivateKey) -> None:
    body = pem_body(pem_private(app_key))
    result = run_check({**good, "ALIPAY_PRIVATE_KEY": body[:300] + "!" + body[300:]})
    assert result.exit_code == 1
    assert body[:50] not in result.output and body[300:360] not in result.output


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"ALIPAY_PRIVATE_KEY": "weak"}, "ALIPAY_PRIVATE_KEY is 1024 bits"),
        ({"ALIPAY_SIGN_TYPE": "RSA"}, "ALIPAY_SIGN_TYPE is RSA, which signs with SHA-1"),
        ({"ALIPAY_REDIRECT_URI": "http://shop.example.cn/alipay/callback"}, "is http://"),
        ({"ALIPAY_REDIRECT_URI": "https://localhost/alipay/callback"}, "is on localhost"),
        ({"ALIPAY_REDIRECT_URI": "https://127.0.0.1:5000/alipay/callback"}, "is on 127.0.0.1"),
        (
            {"ALIPAY_APP_ID": "9021000123456789", "ALIPAY_GATEWAY_URL": None},
            "looks like a sandbox (沙箱) APPID",
        ),
        (
            {"ALIPAY_SCOPE": "auth_user,auth_ecrad"},
            "ALIPAY_SCOPE names auth_ecrad, which is not among the scopes Alipay documents",
        ),
    ],
)
def test_warnings_exit_0(good: dict[str, Any], change: dict[str, Any], expected: str) -> None:
    if change.get("ALIPAY_PRIVATE_KEY") == "weak":
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        change = {"ALIPAY_PRIVATE_KEY": pem_private(weak)}
    result = run_check({**good, **change})
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.output and expected in result.output
    assert "fix:" in result.output


# check --live ----------------------------------------------------------------


def test_live_ok(good: dict[str, Any], alipay_emulator: AlipayEmulator) -> None:
    result = run_check(good, "--live")
    assert result.exit_code == 0, result.output
    assert alipay_emulator.server is not None
    gateway = alipay_emulator.server.gateway_url
    host = urlsplit(gateway).netloc
    # It names the gateway it asked, warns that an emulator is not Alipay, and never
    # says "Alipay accepted" when the emulator answered.
    assert f"Live: asking {gateway}, which is not Alipay (http or loopback)" in result.output
    assert f"Live: the gateway at {host} accepted the APPID, the key and the signature" in (
        result.output
    )
    assert "Alipay accepted" not in result.output
    assert "0 error(s), 1 warning(s)." in result.output
    (probe,) = alipay_emulator.requests
    assert (
        probe.method == "alipay.system.oauth.token"
        and probe.form["grant_type"] == "authorization_code"
    )


def test_live_private_key_does_not_match(
    good: dict[str, Any], other_key: rsa.RSAPrivateKey
) -> None:
    result = run_check({**good, "ALIPAY_PRIVATE_KEY": pem_private(other_key)}, "--live")
    assert result.exit_code == 1
    assert "isv.invalid-signature" in result.output
    assert "does not match the app public key" in result.output


def test_live_unknown_app_id(good: dict[str, Any]) -> None:
    result = run_check({**good, "ALIPAY_APP_ID": "2021000000009999"}, "--live")
    assert result.exit_code == 1 and "isv.invalid-app-id" in result.output


def test_live_no_public_key_uploaded(good: dict[str, Any], alipay_emulator: AlipayEmulator) -> None:
    alipay_emulator.register_app("2021000000008888", None)
    result = run_check({**good, "ALIPAY_APP_ID": "2021000000008888"}, "--live")
    assert result.exit_code == 1 and "isv.missing-signature-config" in result.output


def test_live_wrong_alipay_public_key(good: dict[str, Any], other_key: rsa.RSAPrivateKey) -> None:
    result = run_check({**good, "ALIPAY_PUBLIC_KEY": pem_public(other_key.public_key())}, "--live")
    assert result.exit_code == 1
    assert "ALIPAY_PUBLIC_KEY is wrong" in result.output


def test_live_unreachable(good: dict[str, Any]) -> None:
    result = run_check({**good, "ALIPAY_GATEWAY_URL": "http://127.0.0.1:9/gateway.do"}, "--live")
    assert result.exit_code == 1 and "could not be reached" in result.output


def test_live_is_skipped_when_config_is_broken(
    good: dict[str, Any], alipay_emulator: AlipayEmulator
) -> None:
    result = run_check({**good, "ALIPAY_SCOPE": "auth user"}, "--live")
    assert result.exit_code == 1 and "Live check skipped" in result.output
    assert alipay_emulator.requests == []


def test_check_through_the_flask_command_line() -> None:
    """The real `flask --app demo alipay check --live`, as the docs show it."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIPAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "demo", "alipay", "check", "--live"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted the APPID, the key and the signature" in result.stdout
    assert "which is not Alipay" in result.stdout and "Alipay accepted" not in result.stdout


def test_check_without_the_extension() -> None:
    result = CliRunner().invoke(FlaskGroup(create_app=lambda: Flask("bare")), ["alipay", "check"])
    assert result.exit_code == 1 and "no AlipayLogin named 'alipay'" in result.output


def test_one_run_prints_errors_warnings_and_the_callback(good: dict[str, Any]) -> None:
    """An error must not hide the warnings or the callback URL to register."""
    result = run_check(
        {
            **good,
            "ALIPAY_PUBLIC_KEY": None,  # an error: the app would not start
            "ALIPAY_SIGN_TYPE": "RSA",  # a warning
            "ALIPAY_REDIRECT_URI": "http://shop.example.cn/alipay/callback",  # a warning
        }
    )
    assert result.exit_code == 1
    assert "Callback URL to register as 授权回调地址: http://shop.example.cn/alipay/callback" in (
        result.output
    )
    assert "ALIPAY_PUBLIC_KEY (or ALIPAY_PUBLIC_KEY_FILE) is required" in result.output
    assert "ALIPAY_SIGN_TYPE is RSA, which signs with SHA-1" in result.output
    assert "is http://: Alipay wants https" in result.output
    assert "1 error(s), 2 warning(s)." in result.output


def test_the_callback_line_survives_a_key_that_does_not_parse(good: dict[str, Any]) -> None:
    result = run_check(
        {
            **good,
            "ALIPAY_PRIVATE_KEY": "bm90IGEga2V5",
            "ALIPAY_REDIRECT_URI": None,
            "ALIPAY_URL_PREFIX": "/login/alipay",
        }
    )
    assert result.exit_code == 1
    assert "https://<your domain>/login/alipay/callback" in result.output


def test_live_against_alipays_own_gateway_says_alipay(good: dict[str, Any]) -> None:
    """The wording for Alipay's real gateways (not reachable from here, so no probe)."""
    config = load_config({**good, "ALIPAY_GATEWAY_URL": None, "ALIPAY_AUTHORIZE_URL": None})
    assert config.gateway_url == ENDPOINTS[False][1]
    asked = doctor.gateway_finding(config)
    assert asked.level == "ok" and asked.message == (
        f"Live: asking Alipay's gateway at {ENDPOINTS[False][1]}."
    )
    verdict = doctor._verdict(AlipayRefused(sub_code="isv.code-invalid"), config)
    assert verdict.level == "ok" and verdict.message.startswith("Live: Alipay accepted")


# keygen and check never import the emulator ------------------------------------------

#: Runs `flask ...` in this process, then says which emulator modules got imported.
IMPORTS_PROBE = """
import sys
from flask.cli import main
try:
    main()
except SystemExit as done:
    code = done.code
else:
    code = 0
loaded = sorted(name for name in sys.modules if name.startswith("flask_alipay.testing"))
print("loaded: " + " ".join(loaded))
sys.exit(code)
"""

#: A production-shaped app: no emulator in it, settings from a JSON file beside it.
CHECKED_APP = """
import json
from pathlib import Path
from flask import Flask
from flask_alipay import AlipayLogin

app = Flask(__name__)
app.config.update(json.loads((Path(__file__).parent / "settings.json").read_text()))
AlipayLogin(app)
"""


def loaded_modules(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("loaded:")]
    assert lines, result.stdout + result.stderr
    return result, set(lines[-1].removeprefix("loaded:").split())


EMULATOR = "flask_alipay.testing.emulator"


def test_keygen_and_check_do_not_import_the_emulator(
    tmp_path: Path, good: dict[str, Any], alipay_emulator: AlipayEmulator
) -> None:
    keygen, loaded = loaded_modules("alipay", "keygen", "--out", "keys", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    assert EMULATOR not in loaded, loaded

    (tmp_path / "checked_app.py").write_text(CHECKED_APP)
    (tmp_path / "settings.json").write_text(json.dumps({"SECRET_KEY": "s", **good}))
    check, loaded = loaded_modules(
        "--app", "checked_app", "alipay", "check", "--live", cwd=tmp_path
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "accepted the APPID, the key and the signature" in check.stdout  # it ran
    assert EMULATOR not in loaded, loaded

    # The probe does see the emulator when a command needs it.
    emulator, loaded = loaded_modules("alipay", "emulator", "--help", cwd=tmp_path)
    assert emulator.returncode == 0, emulator.stderr
    assert EMULATOR in loaded
