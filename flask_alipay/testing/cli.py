"""``flask alipay emulator`` and ``python -m flask_alipay.testing``: one command, two doors."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from flask_alipay.keys import KeyFormatError, load_public_key
from flask_alipay.testing.emulator import CERT_SETTINGS, CONTROL_PATH, AlipayEmulator
from flask_alipay.testing.keystore import ALIPAY_KEY_FILE, APP_KEY_FILE, kept_private_key

__all__ = ["DEFAULT_CERT_DIR", "emulator_command"]

#: Where ``--cert-mode`` writes its throwaway certificates, under the current folder.
DEFAULT_CERT_DIR = "alipay-emulator-certs"


def _app_public_key(value: str) -> RSAPublicKey:
    """A path to a key file, or the key text itself."""
    path = Path(value).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # key text too long to be a file name
        is_file = False
    text = path.read_text(encoding="ascii", errors="replace") if is_file else value
    try:
        return load_public_key(text)
    except KeyFormatError as error:
        raise click.BadParameter(f"not an RSA public key ({error})") from None


def _key(folder: Path | None, name: str) -> rsa.RSAPrivateKey:
    """A key kept in ``folder`` across restarts, or a new one for this run only."""
    if folder is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        return kept_private_key(folder / name)
    except OSError as error:
        reason = error.strerror or str(error)
        raise click.ClickException(f"cannot keep keys in {folder}: {reason}") from None
    except KeyFormatError:
        raise click.ClickException(f"{folder / name} is not an RSA private key") from None


def _write_certs(emulator: AlipayEmulator, directory: Path) -> dict[str, Path]:
    """The certificate files, written before listening so a bad folder fails early."""
    try:
        return emulator.write_cert_files(directory.expanduser().resolve())
    except OSError as error:
        reason = error.strerror or str(error)
        raise click.ClickException(f"cannot write certificates to {directory}: {reason}") from None


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0: any free).")
@click.option("--app-id", default="2021000000000001", show_default=True, help="APPID to serve.")
@click.option(
    "--app-public-key",
    metavar="PATH_OR_KEY",
    help="Your app public key (file or text). Without it a throwaway app key pair is "
    "made and its private half printed.",
)
@click.option(
    "--auto-approve", is_flag=True, help="Skip the consent page and sign in the default user."
)
@click.option(
    "--cert-mode",
    is_flag=True,
    help="Certificate mode (公钥证书): make throwaway certificates, demand app_cert_sn and "
    "alipay_root_cert_sn, answer with alipay_cert_sn.",
)
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help=f"Where --cert-mode writes its certificate files (created if missing; earlier "
    f"emulator files there are overwritten).  [default: ./{DEFAULT_CERT_DIR}]",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse parameters outside the official SDKs' query/body split, which the real "
    "gateway (and the emulator by default) answers anyway.",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Keep the emulator's key pair (and the throwaway app key) in DIR, so the settings "
    "it prints stay valid across restarts. Without it every start makes new keys.",
)
@click.option(
    "--env-prefix",
    default="",
    metavar="PREFIX",
    help="Print the settings with this prefix, e.g. FLASK_ for Flask's from_prefixed_env().",
)
@click.option(
    "--control",
    is_flag=True,
    help=f"Let another process steer the emulator over HTTP, for load and fault tests: "
    f"POST {CONTROL_PATH}inject (a JSON object of inject() arguments), POST "
    f"{CONTROL_PATH}reset, POST {CONTROL_PATH}rotate (with --cert-mode: a JSON object of "
    f"rotate_alipay_cert() arguments), GET {CONTROL_PATH}stats and {CONTROL_PATH}users. "
    "Unauthenticated, so loopback only; POSTs must be application/json and the Host header "
    "must be the address served, so no web page can steer it.",
)
def emulator_command(
    host: str,
    port: int,
    app_id: str,
    app_public_key: str | None,
    auto_approve: bool,
    cert_mode: bool,
    cert_dir: Path | None,
    strict: bool,
    keys_dir: Path | None,
    env_prefix: str,
    control: bool,
) -> None:
    """Run a local Alipay (authorize page and gateway) for development and tests.

    Prints the ALIPAY_* settings that point an app at it; no account, no network.
    """
    if cert_dir is not None and not cert_mode:
        raise click.UsageError("--cert-dir is for certificate mode: add --cert-mode")
    if env_prefix and not env_prefix.replace("_", "").isalnum():
        raise click.BadParameter("letters, digits and _ only", param_hint="--env-prefix")
    keys = keys_dir.expanduser().resolve() if keys_dir is not None else None
    private_line = None
    if app_public_key:
        public_key = _app_public_key(app_public_key)
    else:
        app_key = _key(keys, APP_KEY_FILE)
        public_key = app_key.public_key()
        der = app_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        private_line = "ALIPAY_PRIVATE_KEY=" + base64.b64encode(der).decode("ascii")
    emulator = AlipayEmulator(
        app_id=app_id,
        app_public_key=public_key,
        alipay_private_key=_key(keys, ALIPAY_KEY_FILE),
        auto_approve=auto_approve,
        cert_mode=cert_mode,
        control=control,
        strict=strict,
    )
    cert_paths = _write_certs(emulator, cert_dir or Path(DEFAULT_CERT_DIR)) if cert_mode else {}
    try:
        server = emulator.start(host=host, port=port, quiet=False)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    click.echo("# Point your app at the Alipay emulator with these settings:")
    settings = emulator.config()
    if cert_mode:
        # File paths, not the PEM text config() gives: one setting per line.
        settings = {name: value for name, value in settings.items() if name not in CERT_SETTINGS}
        settings.update({name: str(path) for name, path in cert_paths.items()})
    for name, value in settings.items():
        click.echo(f"{env_prefix}{name}={value}")
    if private_line:
        if keys is None:
            click.echo("# A throwaway app key made for this run (not a secret):")
        else:
            click.echo(f"# A throwaway app key, kept in {keys} (not a secret):")
        click.echo(env_prefix + private_line)
    if control and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"Warning: the control channel has no authentication; {host} is not loopback.", err=True
        )
    if control:
        click.echo(
            f"# Control channel on {server.url}{CONTROL_PATH} (inject, reset, rotate, stats, users)"
        )
    click.echo(f"# Alipay emulator on {server.url} (Ctrl-C stops it)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
