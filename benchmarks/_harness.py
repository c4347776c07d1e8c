"""Shared plumbing for the benchmarks: keys, processes, sign-ins, timing helpers.

Nothing here measures anything by itself.  Every process it starts binds
127.0.0.1 only and is stopped by :class:`Processes` when the block ends.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
APP_ID = "2021000000000001"
#: How long a child process may take to say it is listening.
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class KeyFiles:
    """A throwaway app key pair, in every form the three sites want."""

    folder: Path
    private_pem: Path  # PKCS#8 PEM: flask_alipay and the minimal site
    private_pkcs1_body: str  # one-line PKCS#1 base64 body: what the official SDK takes
    public_pem: Path  # the app public key, for the emulator


def make_keys(folder: Path) -> KeyFiles:
    """Generate a 2048-bit app key pair and write it under ``folder``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = folder / "app_private_key.pem"
    private_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pkcs1_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_pem = folder / "app_public_key.pem"
    public_pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyFiles(
        folder=folder,
        private_pem=private_pem,
        private_pkcs1_body=base64.b64encode(pkcs1_der).decode("ascii"),
        public_pem=public_pem,
    )


# -- processes ---------------------------------------------------------------


@dataclass
class Child:
    """A child process we started, and what it printed when it came up."""

    name: str
    proc: subprocess.Popen[bytes]
    settings: dict[str, str]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


class Processes:
    """Starts the emulator and the sites; stops every one of them on exit."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="flask-alipay-bench-")
        self.folder = Path(self._tmp.name)
        self.children: list[Child] = []

    def __enter__(self) -> Processes:
        # A SIGTERM to this script unwinds through __exit__, so no child is left behind.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every child we started (by its own pid), then remove the temp folder."""
        for child in reversed(self.children):
            stop(child.proc)
        self.children.clear()
        self._tmp.cleanup()

    def _spawn(self, name: str, argv: list[str], ready: re.Pattern[str]) -> Child:
        """Start ``argv``; wait for a stdout line matching ``ready`` (its group 1 is the URL)."""
        out_path = self.folder / f"{name}.out"
        err_path = self.folder / f"{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        child = Child(name=name, proc=proc, settings={}, url="")
        self.children.append(child)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = out_path.read_text("utf-8", errors="replace")
            match = ready.search(text)
            if match:
                child.url = match.group(1)
                child.settings = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.MULTILINE))
                return child
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        detail = err_path.read_text("utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{name} did not start:\n{detail}")

    def emulator(self, keys: KeyFiles) -> Child:
        """``python -m flask_alipay.testing`` on a free loopback port, auto-approving."""
        argv = [
            sys.executable,
            "-m",
            "flask_alipay.testing",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--app-id",
            APP_ID,
            "--app-public-key",
            str(keys.public_pem),
            "--auto-approve",
        ]
        return self._spawn("emulator", argv, re.compile(r"# Alipay emulator on (\S+)"))

    def site(
        self,
        kind: str,
        emulator: Child,
        keys: KeyFiles,
        *,
        profile: str | None = None,
        profile_out: Path | None = None,
    ) -> Child:
        """One of the three sites (ours, minimal, sdk) in its own process."""
        config = {
            "app_id": APP_ID,
            "authorize_url": emulator.settings["ALIPAY_AUTHORIZE_URL"],
            "gateway_url": emulator.settings["ALIPAY_GATEWAY_URL"],
            "alipay_public_key": emulator.settings["ALIPAY_PUBLIC_KEY"],
            "app_private_key_file": str(keys.private_pem),
            "app_private_key_pkcs1_body": keys.private_pkcs1_body,
            "secret_key": "benchmark-secret-key-" + "x" * 24,
        }
        config_path = self.folder / f"site-{kind}.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        argv = [sys.executable, str(HERE / "site_server.py"), kind, "--config", str(config_path)]
        if profile:
            argv += ["--profile", profile, "--profile-out", str(profile_out)]
        return self._spawn(f"site-{kind}", argv, re.compile(r"LISTENING (\S+)"))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM one process we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


# -- the browser -------------------------------------------------------------


def sign_in(site_url: str, user: str) -> None:
    """One complete sign-in, as a browser with a fresh cookie jar does it.

    login -> the emulator's authorize URL (auto-approved as ``user``) ->
    the callback (token and profile calls) -> a protected page.
    """
    with requests.Session() as browser:
        login = browser.get(f"{site_url}/alipay/login?next=/me", allow_redirects=False)
        _expect(login, 302, "login")
        authorize = browser.get(
            login.headers["Location"] + "&login_as=" + user, allow_redirects=False
        )
        _expect(authorize, 302, "authorize")
        callback = browser.get(authorize.headers["Location"], allow_redirects=False)
        _expect(callback, 302, "callback")
        target = callback.headers["Location"]
        if not target.startswith("http"):
            target = site_url + target
        if urlsplit(target).path != "/me":
            raise RuntimeError(f"callback redirected to {target!r}, not /me")
        page = browser.get(target, allow_redirects=False)
        _expect(page, 200, "protected page")
        if not page.text.startswith("hello "):
            raise RuntimeError(f"unexpected protected page: {page.text[:200]!r}")


def _expect(response: requests.Response, status: int, step: str) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{step}: HTTP {response.status_code}, expected {status}: {response.text[:300]!r}"
        )


# -- measuring ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, all its threads."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    return int(psutil.Process(pid).memory_info().rss)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float]) -> str:
    """min–max of a list, for the tables."""
    return f"{min(values):.3g}–{max(values):.3g}"


def machine() -> dict[str, str | int | None]:
    """What the numbers were measured on."""
    import cryptography

    return {
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def save_results(name: str, data: dict[str, object]) -> Path:
    """Write ``benchmarks/results/<name>.json`` for chart.py and the docs."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long a phase of a benchmark took, to stderr."""
    start = time.perf_counter()
    yield
    print(f"  [{label}: {time.perf_counter() - start:.1f}s]", file=sys.stderr)
