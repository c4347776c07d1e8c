"""Every command shown in README.md and docs/*.md is run here, so the docs cannot rot.

The convention: a shell command goes in a fenced block whose info string is ``sh``,
one command per line, with no ``$ `` prompt and no comment after it.  Lines that
start with ``#`` are comments and are ignored.  Config snippets and output samples
use other info strings (``python``, ``text``, ``ini``, ``dotenv``).

Each command must match one pattern in RUNNERS, and its runner runs it for real:
``flask`` becomes ``sys.executable -m flask`` and ``python`` becomes ``sys.executable``,
with no ALIPAY_* variables in the environment, so the demo plays Alipay in-process.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flask_alipay.config import inspect_config, markdown_table
from flask_alipay.errors import HINTS, REASON_HINTS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = sorted((ROOT / "docs").glob("*.md"))

FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
# The configured URL, or the path on a placeholder host: https://<your domain>/alipay/callback
CALLBACK_URL = re.compile(r"https?://[^\n]+/alipay/callback\b")
SETTING = re.compile(r"^(ALIPAY_[A-Z_]+)=(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def sh_lines(path: Path) -> Iterator[Command]:
    """The non-blank, non-comment lines of every ``sh`` block in a Markdown file."""
    fence = info = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opened = FENCE.match(line)
        if fence is None:
            if opened:
                fence, info = opened["fence"], opened["info"]
        elif line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            fence = info = None
        elif info == "sh" and line.strip() and not line.lstrip().startswith("#"):
            yield Command(path.relative_to(ROOT).as_posix(), number, line.strip())


COMMANDS = [command for page in PAGES for command in sh_lines(page)]


# Running commands ---------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This machine's environment without ALIPAY_* or FLASK_* settings, or a .env file."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ALIPAY_", "FLASK_"))
        and name not in ("DEMO_EMULATOR_PORT", "SECRET_KEY")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["FLASK_SKIP_DOTENV"] = "1"
    return env


def to_argv(text: str) -> list[str]:
    """The command as this interpreter runs it."""
    words = shlex.split(text, comments=True)
    if words[0] == "flask":
        return [sys.executable, "-m", "flask", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"no interpreter for {words[0]!r}")


def option(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE``."""
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def with_option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with ``--name`` set to ``value``, replaced or appended."""
    kept: list[str] = []
    words = iter(argv)
    for word in words:
        if word == name:
            next(words, None)
        elif not word.startswith(name + "="):
            kept.append(word)
    return [*kept, name, value]


def run(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stdout


class Server:
    """A long-running command whose output is read line by line as it comes."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Block until a line matches ``pattern``; fail if the command exits or stalls."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}:\n{self.output}")
            self.output += line
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def serving(argv: list[str], cwd: Path) -> Iterator[Server]:
    server = Server(argv, cwd)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


# The runners: one per kind of command ------------------------------------------------

Runner = Callable[[re.Match[str], Path], None]


def covered_by_ci(found: re.Match[str], tmp_path: Path) -> None:
    """README's test command is what CI runs, word for word: check that it still is."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert found[0] in ci, f".ci/run no longer runs {found[0]!r}"


def install_then_run(found: re.Match[str], tmp_path: Path) -> None:
    """``pip install -e ".[extra]" && command``: CI installs exactly so; run the command."""
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(rf"^{found['extra']} =$", setup, re.MULTILINE), found["extra"]
    dispatch(found["rest"], tmp_path)


def run_keygen(found: re.Match[str], tmp_path: Path) -> None:
    """In an empty folder with no app: two key files, the console line, the config line."""
    argv = to_argv(found[0])
    status, output = run(argv, cwd=tmp_path)
    assert status == 0, output
    folder = tmp_path / (option(argv, "--out") or ".")
    private, public = folder / "app_private_key.pem", folder / "app_public_key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text(encoding="ascii").startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == int(option(argv, "--bits") or 2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public.read_bytes().strip() == public_pem.strip()
    lines = [line.strip() for line in output.splitlines()]
    assert pem_body(public_pem.decode("ascii")) in lines, "the one-line 应用公钥 is not printed"
    file_lines = [line for line in lines if line.startswith("ALIPAY_PRIVATE_KEY_FILE=")]
    assert len(file_lines) == 1, output
    printed = Path(file_lines[0].split("=", 1)[1])
    assert printed.is_absolute() and printed.resolve() == private.resolve()

    before = private.read_bytes(), public.read_bytes()
    status, output = run(argv, cwd=tmp_path)
    assert status == 1, f"keygen overwrote existing keys:\n{output}"
    assert (private.read_bytes(), public.read_bytes()) == before


def run_check(found: re.Match[str], tmp_path: Path) -> None:
    """The demo on its emulator: no errors, the callback URL to register; --live: OK."""
    status, output = run(to_argv(found[0]), cwd=ROOT)
    assert status == 0, output
    assert CALLBACK_URL.search(output), f"the callback URL to register is not printed:\n{output}"
    if found[0].endswith("--live"):
        assert "isv.code-invalid" in output, f"the live probe's answer is not reported:\n{output}"


def run_emulator(found: re.Match[str], tmp_path: Path) -> None:
    """On a free port: the ALIPAY_* lines, then an authorize request it answers."""
    argv = with_option(to_argv(found[0]), "--port", "0")
    key_file = option(argv, "--app-public-key")
    if key_file and key_file.endswith(".pem") and not (tmp_path / key_file).exists():
        # The public key file that `flask alipay keygen` leaves, made here.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp_path / key_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key_file).write_bytes(pem)
    with serving(argv, cwd=tmp_path) as server:
        server.wait_for(r"^# Alipay emulator on http://\S+")
        prefix = re.escape(option(argv, "--env-prefix") or "")
        settings = dict(re.findall(rf"^{prefix}(ALIPAY_[A-Z_]+)=(.*)$", server.output, re.M))
        for name in ("APP_ID", "AUTHORIZE_URL", "GATEWAY_URL"):
            assert "ALIPAY_" + name in settings, server.output
        if "--cert-mode" in argv:  # the three certificate files instead of Alipay's public key
            for name in ("APP_CERT", "ALIPAY_CERT", "ROOT_CERT"):
                path = Path(settings["ALIPAY_" + name + "_FILE"])
                assert path.is_file() and path.is_relative_to(tmp_path.resolve()), path
            assert "ALIPAY_PUBLIC_KEY" not in settings
        else:
            assert "ALIPAY_PUBLIC_KEY" in settings, server.output
        assert ("ALIPAY_PRIVATE_KEY" in settings) == (key_file is None), server.output
        query = {
            "app_id": settings["ALIPAY_APP_ID"],
            "scope": "auth_user",
            "redirect_uri": "https://example.com/alipay/callback",
            "state": "docs",
        }
        url = settings["ALIPAY_AUTHORIZE_URL"] + "?" + urlencode(query)
        answer = requests.get(url, allow_redirects=False, timeout=10)
        if "--auto-approve" in argv:
            assert answer.status_code == 302
            assert "auth_code=" in answer.headers["Location"]
        else:
            assert answer.status_code == 200
            assert 'name="decision"' in answer.text  # the consent page


def run_demo(found: re.Match[str], tmp_path: Path) -> None:
    """``flask run`` on a port picked here, serving the demo's home page."""
    argv = with_option(to_argv(found[0]), "--port", str(free_port()))
    with serving(argv, cwd=ROOT) as server:
        url = server.wait_for(r"Running on (http://\S+)")[1]
        answer = requests.get(url + "/", timeout=10)
        assert answer.status_code == 200
        assert "使用支付宝登录" in answer.text


RUNNERS: list[tuple[str, Runner]] = [
    (r'pip install -e "\.\[test\]" && python -m pytest', covered_by_ci),
    (r'pip install -e "\.\[(?P<extra>\w+)\]" && (?P<rest>.+)', install_then_run),
    (r"flask alipay keygen(?: .*)?", run_keygen),
    (r"flask --app demo alipay check(?: --live)?", run_check),
    (r"flask alipay emulator(?: .*)?", run_emulator),
    (r"python -m flask_alipay\.testing(?: .*)?", run_emulator),
    (r"flask --app demo run(?: .*)?", run_demo),
]


def runner_for(text: str) -> tuple[re.Match[str], Runner] | None:
    for pattern, runner in RUNNERS:
        found = re.fullmatch(pattern, text)
        if found:
            return found, runner
    return None


def dispatch(text: str, tmp_path: Path) -> None:
    chosen = runner_for(text)
    assert chosen is not None, f"no runner covers {text!r}: add one to RUNNERS"
    found, runner = chosen
    runner(found, tmp_path)


# The tests ----------------------------------------------------------------------------


def test_every_page_is_there() -> None:
    expected = {
        "README.md",
        "setup-alipay.md",
        "setup-alipay.zh-CN.md",
        "configuration.md",
        "signals.md",
        "proxies.md",
        "local-development.md",
        "testing.md",
        "troubleshooting.md",
    }
    assert expected <= {page.name for page in DOCS}
    assert COMMANDS, "no `sh` blocks found: is the fence parser broken?"


def test_every_command_is_covered() -> None:
    uncovered = [str(command) for command in COMMANDS if runner_for(command.text) is None]
    assert not uncovered, "no runner in RUNNERS for:\n" + "\n".join(uncovered)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_command_follows_the_convention(command: Command) -> None:
    assert not command.text.startswith("$"), "drop the `$ ` prompt"
    assert shlex.split(command.text, comments=True) == shlex.split(command.text), (
        "move the comment to a line of its own, starting with #"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_command_runs(command: Command, tmp_path: Path) -> None:
    dispatch(command.text, tmp_path)


# The pages themselves -----------------------------------------------------------------

LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", [*DOCS, ROOT / "README.zh-CN.md"], ids=lambda page: page.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to missing anchor {target}"


def test_index_links_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for page in DOCS:
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


def test_setup_guides_link_each_other() -> None:
    english = (ROOT / "docs" / "setup-alipay.md").read_text(encoding="utf-8")
    chinese = (ROOT / "docs" / "setup-alipay.zh-CN.md").read_text(encoding="utf-8")
    assert "(setup-alipay.zh-CN.md)" in english
    assert "(setup-alipay.md)" in chinese


def test_troubleshooting_explains_every_failure() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    missing = [name for name in [*HINTS, *REASON_HINTS] if f"`{name}`" not in text]
    assert not missing, f"docs/troubleshooting.md does not explain {missing}"


class ReadRecorder(dict[str, object]):
    """An empty config that remembers every key the extension asks it for."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def test_configuration_lists_every_setting() -> None:
    config = ReadRecorder()
    inspect_config(config)
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(config.read - set(reference.split("`")))
    assert not missing, f"docs/configuration.md does not list {missing}"


@pytest.mark.parametrize("page", ["docs/configuration.md", "README.md"])
def test_settings_tables_come_from_the_settings_table(page: str) -> None:
    """The tables are SETTINGS as markdown_table() renders it, word for word."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert markdown_table() in text, (
        f"{page}'s settings table is not settings.markdown_table(): paste the output of\n"
        '  python -c "from flask_alipay.settings import markdown_table; print(markdown_table())"'
    )


def test_chinese_readme_has_the_same_quickstart() -> None:
    """README.zh-CN.md's commands are README's quickstart, word for word, and they link."""
    english = [c.text for c in sh_lines(ROOT / "README.md")]
    chinese = [c.text for c in sh_lines(ROOT / "README.zh-CN.md")]
    assert chinese == english[:2], chinese
    assert "(README.zh-CN.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
