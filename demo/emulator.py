"""The demo's Alipay: one emulator per instance folder, which survives code reloads.

``flask --app demo run --debug`` builds the app twice, in the reloader's watcher
and in the server process it restarts at every change.  The first build starts
the emulator on a port kept in ``instance/``; a later build finds it answering
there and uses it.  The keys live in ``instance/`` too, so a consent page left
open, the accounts added on it, and the signed-in session all outlive a reload.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization

from flask_alipay.keys import public_key_base64
from flask_alipay.testing import AlipayEmulator
from flask_alipay.testing.emulator import AUTHORIZE_PATH, GATEWAY_PATH
from flask_alipay.testing.keystore import ALIPAY_KEY_FILE, APP_KEY_FILE, kept_private_key

__all__ = ["dev_emulator_settings", "running_here"]

#: The emulator's default APPID, which the demo signs in to.
APP_ID = "2021000000000001"

#: The emulators this process started, by instance folder.
_RUNNING: dict[Path, AlipayEmulator] = {}


def _answers(url: str) -> bool:
    """Whether an Alipay emulator answers at ``url``."""
    try:
        page = requests.get(url + AUTHORIZE_PATH, timeout=2)
    except requests.RequestException:
        return False
    return "Alipay emulator" in page.text


def dev_emulator_settings(instance: Path, port: int | None = None) -> dict[str, Any]:
    """The ALIPAY_* settings for the instance's emulator, starting it if nobody has."""
    folder = instance / "emulator"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    app_key = kept_private_key(folder / APP_KEY_FILE)
    alipay_key = kept_private_key(folder / ALIPAY_KEY_FILE)
    state_file = folder / "emulator.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    url = state.get("url")
    wanted = port or state.get("port") or 0
    if not (url and (port is None or url.endswith(f":{port}")) and _answers(url)):
        emulator = AlipayEmulator(
            app_id=APP_ID,
            app_public_key=app_key.public_key(),
            alipay_private_key=alipay_key,
            auto_approve=False,
        )
        try:
            server = emulator.start(port=int(wanted))
        except OSError:  # the kept port is taken by something else: any free one
            server = emulator.start(port=0)
        _RUNNING[instance.resolve()] = emulator
        url = server.url
        state_file.write_text(json.dumps({"url": url, "port": int(url.rsplit(":", 1)[1])}))
        print(f" * Alipay emulator (支付宝模拟器) running on {url}", file=sys.stderr)
    private_pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return {
        "ALIPAY_APP_ID": APP_ID,
        "ALIPAY_AUTHORIZE_URL": url + AUTHORIZE_PATH,
        "ALIPAY_GATEWAY_URL": url + GATEWAY_PATH,
        "ALIPAY_PUBLIC_KEY": public_key_base64(alipay_key.public_key()),
        "ALIPAY_PRIVATE_KEY": private_pem,
    }


def running_here(instance: Path) -> AlipayEmulator | None:
    """The instance's emulator when this process runs it (the reloader's other process may)."""
    return _RUNNING.get(instance.resolve())
