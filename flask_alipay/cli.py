"""``flask alipay ...``: registered through the ``flask.commands`` entry point.

A plain click group, not an AppGroup: ``keygen`` and ``emulator`` must work in
any folder, before an app or a key exists.  ``check`` loads the app named by
``--app`` / ``FLASK_APP`` itself, so that a broken config is reported, not raised.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.cli import ScriptInfo

from . import doctor
from .extension import DIAGNOSING, AlipayLogin
from .keys import public_key_base64

__all__ = ["alipay"]

PRIVATE_NAME = "app_private_key.pem"
PUBLIC_NAME = "app_public_key.pem"


class _AlipayGroup(click.Group):
    """Loads ``emulator`` only when it is asked for: keygen and check never import it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "emulator"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "emulator":
            from .testing.cli import emulator_command

            return emulator_command
        return super().get_command(ctx, cmd_name)


@click.group("alipay", cls=_AlipayGroup)
def alipay() -> None:
    """Sign in with Alipay: keys, config checks and a local emulator."""


@alipay.command("keygen")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for app_private_key.pem and app_public_key.pem.",
)
@click.option(
    "--bits",
    type=click.IntRange(2048, 4096),
    default=2048,
    show_default=True,
    help="RSA key size.",
)
def keygen(out: Path, bits: int) -> None:
    """Make the app key pair (应用密钥) and print the public key for the console."""
    private_path, public_path = out / PRIVATE_NAME, out / PUBLIC_NAME
    taken = [p for p in (private_path, public_path) if p.exists()]
    if taken:
        names = " and ".join(str(p) for p in taken)
        raise click.ClickException(
            f"{names} already exist{'s' if len(taken) == 1 else ''}; nothing was written. "
            "Move the old keys away, or use --out for another folder."
        )
    _make_private_folder(out)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    click.echo("# App public key (应用公钥): paste this one line into the Alipay console.")
    click.echo(public_key_base64(key.public_key()))
    click.echo("# Then point your app at the private key (keep the file secret):")
    click.echo(f"ALIPAY_PRIVATE_KEY_FILE={private_path.resolve()}")


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` and any missing parents 0700, whatever the umask; keep existing ones."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode passes through the umask


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create a file that must not exist yet, with exactly ``mode`` before any byte is in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have narrowed or widened it
        handle.write(data)


_MARKS = {"error": "ERROR  ", "warning": "WARNING", "ok": "OK     "}
_COLOURS = {"error": "red", "warning": "yellow", "ok": "green"}


@alipay.command("check")
@click.option("--live", is_flag=True, help="Also send one signed call with a made-up code.")
@click.option("--name", default="alipay", show_default=True, help="The AlipayLogin's name.")
@click.pass_context
def check(ctx: click.Context, live: bool, name: str) -> None:
    """Check the app's ALIPAY_* settings; exit 1 if anything is an error."""
    app = _load_app(ctx)
    ext = app.extensions.get(name)
    if not isinstance(ext, AlipayLogin):
        raise click.ClickException(
            f"the app has no AlipayLogin named {name!r}: call AlipayLogin(app) in it."
        )
    with app.app_context():
        report = doctor.examine(app, ext)
        findings = report.findings
        if live:
            if report.config is None or any(f.level == "error" for f in findings):
                findings.append(
                    doctor.Finding("error", "Live check skipped: fix the errors above first.")
                )
            else:
                findings.append(doctor.gateway_finding(report.config, ext.config_prefix))
                findings.append(doctor.probe(report.config))
    click.echo("Callback URL to register as 授权回调地址: " + report.callback_url)
    for finding in findings:
        mark = click.style(_MARKS[finding.level], fg=_COLOURS[finding.level])
        click.echo(f"{mark} {finding.message}")
        if finding.fix:
            click.echo(f"        fix: {finding.fix}")
    counts = doctor.summary(findings)
    click.echo(f"{counts['error']} error(s), {counts['warning']} warning(s).")
    ctx.exit(1 if counts["error"] else 0)


def _load_app(ctx: click.Context) -> Flask:
    info = ctx.ensure_object(ScriptInfo)
    token = DIAGNOSING.set(True)
    try:
        return info.load_app()
    finally:
        DIAGNOSING.reset(token)
