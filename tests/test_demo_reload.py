"""`flask --app demo run --debug` for real: the reloader, a code change, and what survives it.

The reloader builds the app in its watcher process and again in every server
process it restarts.  One emulator must serve them all, the session must
outlive a reload (one SECRET_KEY kept in instance/), and a consent page opened
before the reload must still finish the sign-in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


class Running:
    """A `flask run` process whose output is collected as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.output, re.MULTILINE)) < count:
            assert self.process.poll() is None, f"flask run exited:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output}"
            time.sleep(0.1)


@contextmanager
def flask_run_debug(site: Path, port: int, **env: str) -> Iterator[Running]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ALIPAY_", "FLASK_", "WERKZEUG_"))
        and name not in ("SECRET_KEY", "DATABASE_URL", "DEMO_EMULATOR_PORT")
    }
    environment.update(PYTHONUNBUFFERED="1", FLASK_SKIP_DOTENV="1", **env)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "demo", "run", "--debug", "--port", str(port)],
        cwd=site,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = Running(process)
    try:
        yield running
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the demo, so a code change for the reloader touches no file of ours."""
    shutil.copytree(ROOT / "demo", tmp_path / "demo", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize("emulator_port", [False, True], ids=["any-port", "DEMO_EMULATOR_PORT"])
def test_a_code_reload_keeps_one_emulator_the_session_and_an_open_consent_page(
    site: Path, emulator_port: bool
) -> None:
    port = free_port()
    env = {"DEMO_EMULATOR_PORT": str(free_port())} if emulator_port else {}
    base = f"http://127.0.0.1:{port}"
    with flask_run_debug(site, port, **env) as server:
        server.wait_for(r"Debugger is active")
        browser = requests.Session()
        browser.get(base + "/", timeout=10).raise_for_status()
        # Sign in once, and open a second consent page that stays open over the reload.
        first = browser.get(base + "/alipay/login", allow_redirects=False, timeout=10)
        approved = requests.post(
            first.headers["Location"],
            data={"user": "default", "decision": "approve"},
            allow_redirects=False,
            timeout=10,
        )
        assert browser.get(approved.headers["Location"], timeout=10).status_code == 200
        assert browser.get(base + "/profile", allow_redirects=False, timeout=10).status_code == 200
        pending = browser.get(
            base + "/alipay/login", params={"next": "/profile"}, allow_redirects=False, timeout=10
        )

        (site / "demo" / "__init__.py").touch()  # a code change: the reloader restarts
        server.wait_for(r"Restarting with", count=2)
        server.wait_for(r"Debugger is active", count=2)

        # Still signed in: the SECRET_KEY is the one kept in instance/.
        assert browser.get(base + "/profile", allow_redirects=False, timeout=10).status_code == 200
        # The consent page opened before the reload still answers, and the sign-in finishes.
        approved = requests.post(
            pending.headers["Location"],
            data={"user": "default", "decision": "approve"},
            allow_redirects=False,
            timeout=10,
        )
        assert approved.status_code == 302
        done = browser.get(approved.headers["Location"], allow_redirects=False, timeout=10)
        assert done.status_code == 302 and done.headers["Location"] == "/profile"
    started = re.findall(r"Alipay emulator \S+ running on (\S+)", server.output)
    assert len(started) == 1, server.output  # one emulator for the watcher and every reload
    if emulator_port:
        assert started[0].endswith(":" + env["DEMO_EMULATOR_PORT"])
    assert "Traceback" not in server.output
