"""The demo under gunicorn, and the harness that loads it (benchmarks/load.py, tests/test_load.py).

Two halves:

* ``gunicorn "loadsite:create_app()"`` serves the demo built by its own factory, with
  its users in the SQLite file named by ``LOADSITE_DATABASE``, and stamps every
  response with the serving worker's pid (``X-Worker-Pid``) so a test can tell
  which worker served which step of a sign-in.
* :func:`running_stack` starts the emulator (``python -m flask_alipay.testing
  --control --auto-approve``) and gunicorn as subprocesses on loopback ports,
  optionally with a :class:`Forwarder` between the site and the gateway that can
  be cut; :func:`sign_in` is one browser signing in, step by step.

Everything binds and targets 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import html
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ROOT = Path(__file__).resolve().parent.parent
TOKEN_METHOD = "alipay.system.oauth.token"
USER_INFO_METHOD = "alipay.user.info.share"
READY = "loadsite: worker {pid} ready"
STEPS = ("login", "authorize", "callback", "profile")


# -- the site, as gunicorn serves it ------------------------------------------------


class WorkerPid:
    """WSGI middleware: every response says which process served it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.pid = str(os.getpid())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Worker-Pid", self.pid)], exc_info)

        return self.app(environ, start)


def create_app() -> Any:
    """gunicorn's factory (``"loadsite:create_app()"``): the demo, stamped with the pid."""
    from demo import create_app as create_demo

    database = os.environ.get("LOADSITE_DATABASE")
    app = create_demo({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"} if database else None)
    app.wsgi_app = WorkerPid(app.wsgi_app)  # type: ignore[method-assign]
    print(READY.format(pid=os.getpid()), file=sys.stderr, flush=True)
    return app


# -- a gateway that can go down ---------------------------------------------------


class Forwarder:
    """A TCP hop on a loopback port to ``target``, which :meth:`cut` takes down.

    While cut, the port refuses connections and every connection through it has
    been dropped, as when the gateway is unreachable; :meth:`restore` listens on the
    same port again.  ``latency`` holds every answer back that long before its first
    byte, as a real gateway 30-300 ms away does: each answer on a kept-alive
    connection too (the site keeps its gateway connections open), not only the first.
    """

    #: Longest life of one forwarded connection, and of the forwarder itself.
    MAX_LIFE = 900.0

    def __init__(self, target: tuple[str, int], latency: float = 0.0) -> None:
        self.target = target
        self.latency = latency
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._born = time.monotonic()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        """Listen (again, on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    listener.close()
                    raise
                time.sleep(0.05)
        listener.listen(256)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._stop = threading.Event()
        self._listener = listener
        thread = threading.Thread(
            target=self._accept, args=(listener, self._stop), name="forwarder", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            _drop(sock)
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = [thread for thread in self._threads if thread.is_alive()]

    stop = cut

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set() and time.monotonic() - self._born < self.MAX_LIFE:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _drop(client)
                continue
            for sock in (client, upstream):
                sock.settimeout(self.MAX_LIFE)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if stop.is_set():
                    _drop(client)
                    _drop(upstream)
                    return
                self._sockets.update((client, upstream))
            turn = _Turn()
            for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(src, dst, turn, answers), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, turn: _Turn, answers: bool) -> None:
        deadline = time.monotonic() + self.MAX_LIFE
        try:
            while time.monotonic() < deadline:
                data = src.recv(65536)
                if not data:
                    break
                if not answers:
                    turn.asked()  # before it reaches the gateway, which may answer at once
                elif self.latency and turn.answer_starts():
                    time.sleep(self.latency)  # each answer's first byte arrives this much later
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _drop(src)
            _drop(dst)


class _Turn:
    """Who spoke last on one forwarded connection.  An answer begins with the first
    bytes the gateway sends after the client sent a request (HTTP/1.1 without
    pipelining: one request, then its whole answer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked = False

    def asked(self) -> None:
        with self._lock:
            self._asked = True

    def answer_starts(self) -> bool:
        """True for the first chunk of an answer, False for the rest of it."""
        with self._lock:
            starts, self._asked = self._asked, False
            return starts


def _drop(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


# -- the emulator's control channel -------------------------------------------------


class Control:
    """``/_emulator/...`` of an emulator started with ``--control``."""

    def __init__(self, emulator_url: str) -> None:
        import requests

        self.base = emulator_url + "/_emulator/"
        self.http = requests.Session()

    def inject(self, method: str | None = None, **arguments: Any) -> dict[str, Any]:
        return self._call("POST", "inject", json={"method": method, **arguments})

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "reset", json={})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def users(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "users")

    def _call(self, verb: str, name: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(verb, self.base + name, timeout=15, **kwargs)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def close(self) -> None:
        self.http.close()


# -- the processes ------------------------------------------------------------------


@dataclass
class Stack:
    """The running emulator and site, and where their logs go."""

    site_url: str
    emulator_url: str
    gateway_url: str
    control: Control
    forwarder: Forwarder | None
    site_log: Path
    emulator_log: Path
    emulator_pid: int
    master_pid: int
    worker_pids: list[int]

    def site_log_text(self) -> str:
        return self.site_log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM, then SIGKILL to the process group it leads (started with its own session)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _clean_environ() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ALIPAY_", "FLASK_", "GUNICORN_")) and name != "SECRET_KEY"
    }


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped,unused-ignore]

    return any(known.name == setting for known in KNOWN_SETTINGS)


def make_app_key() -> tuple[str, str]:
    """A fresh app key pair: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private, public


@contextmanager
def running_stack(
    workdir: Path,
    *,
    workers: int = 4,
    threads: int = 8,
    timeout: float = 2,
    forward: bool = True,
    start_timeout: float = 60,
    site_app: str = "loadsite:create_app()",
    pythonpath: Iterable[Path] = (),
    worker_class: str = "gthread",
    latency: float = 0.0,
) -> Iterator[Stack]:
    """The emulator, then gunicorn serving the demo, each in its own process; stopped after.

    ``site_app`` and ``pythonpath`` let a benchmark serve a variant of the site.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = make_app_key()
    key_file = workdir / "app_public_key.pem"
    key_file.write_text(public_pem, encoding="ascii")
    emulator_out = workdir / "emulator.out"
    emulator_log = workdir / "emulator.log"
    site_log = workdir / "site.log"
    environ = {**_clean_environ(), "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    forwarder: Forwarder | None = None
    control: Control | None = None
    try:
        with emulator_out.open("wb") as out, emulator_log.open("ab") as err:
            emulator = subprocess.Popen(
                [
                    *(sys.executable, "-m", "flask_alipay.testing", "--port", "0"),
                    *("--control", "--auto-approve", "--app-public-key", str(key_file)),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=environ,
                start_new_session=True,
            )
        processes.append(emulator)

        def emulator_ready() -> bool:
            return "# Alipay emulator on" in emulator_out.read_text(encoding="utf-8")

        _wait_for(emulator_ready, start_timeout, "the emulator", emulator)
        settings: dict[str, str] = {}
        emulator_url = ""
        for line in emulator_out.read_text(encoding="utf-8").splitlines():
            if line.startswith("# Alipay emulator on "):
                emulator_url = line.split()[4]
            elif "=" in line and not line.startswith("#"):
                name, value = line.split("=", 1)
                settings[name] = value
        control = Control(emulator_url)
        gateway_url = settings["ALIPAY_GATEWAY_URL"]
        if forward:
            parts = urlsplit(gateway_url)
            forwarder = Forwarder((parts.hostname or "127.0.0.1", parts.port or 80), latency)
            gateway_url = forwarder.url + parts.path
        port = free_port()
        options = [*("--workers", str(workers), "--worker-class", worker_class)]
        if worker_class == "gevent":
            options += ["--worker-connections", str(threads * 32)]
        else:
            options += ["--threads", str(threads)]
        options += ["--timeout", "60", "--graceful-timeout", "5"]
        if _gunicorn_has("control_socket_disable"):  # gunicorn 25+: no socket in ~/.gunicorn
            options.append("--no-control-socket")
        site_environ = {
            **environ,
            "ALIPAY_APP_ID": settings["ALIPAY_APP_ID"],
            "ALIPAY_AUTHORIZE_URL": settings["ALIPAY_AUTHORIZE_URL"],
            "ALIPAY_GATEWAY_URL": gateway_url,
            "ALIPAY_PUBLIC_KEY": settings["ALIPAY_PUBLIC_KEY"],
            "ALIPAY_PRIVATE_KEY": private_pem,
            "ALIPAY_TIMEOUT": str(timeout),
            "SECRET_KEY": "load-test-secret-shared-by-every-worker",
            "LOADSITE_DATABASE": str(workdir / "demo.sqlite3"),
        }
        with site_log.open("ab") as err:
            master = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"),
                    *options,
                    *("--pythonpath", ",".join(map(str, [*pythonpath, ROOT, ROOT / "benchmarks"]))),
                    site_app,
                ],
                stdout=err,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=site_environ,
                start_new_session=True,
            )
        processes.append(master)
        ready = re.compile(READY.format(pid=r"(\d+)"))

        def workers_ready() -> bool:
            return len(ready.findall(site_log.read_text(encoding="utf-8"))) >= workers

        _wait_for(workers_ready, start_timeout, "the gunicorn workers", master)
        worker_pids = [int(pid) for pid in ready.findall(site_log.read_text(encoding="utf-8"))]
        yield Stack(
            site_url=f"http://127.0.0.1:{port}",
            emulator_url=emulator_url,
            gateway_url=gateway_url,
            control=control,
            forwarder=forwarder,
            site_log=site_log,
            emulator_log=emulator_log,
            emulator_pid=emulator.pid,
            master_pid=master.pid,
            worker_pids=worker_pids,
        )
    finally:
        for process in reversed(processes):
            _stop(process)
        if forwarder is not None:
            forwarder.stop()
        if control is not None:
            control.close()


# -- browsers -----------------------------------------------------------------------


@dataclass
class SignIn:
    """One browser's sign-in, step by step: statuses, latencies, serving worker pids."""

    key: str
    seconds: dict[str, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    pid: dict[str, str] = field(default_factory=dict)
    callback_started: float = 0.0
    callback_ended: float = 0.0
    #: The error page's reason (``timeout``, ``signature``...) when the callback failed.
    failure: str | None = None
    profile: str = ""
    #: A step that went wrong on the client side (an exception, an unexpected answer).
    error: str | None = None
    #: How often the first request was sent again after a connection reset.
    retried: int = 0

    @property
    def signed_in(self) -> bool:
        return self.error is None and self.status.get("profile") == 200

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def overlaps(self, start: float, end: float) -> bool:
        return self.callback_started <= end and self.callback_ended >= start


_REASON = re.compile(r'<main data-reason="(\w+)">')


def error_message(page: str) -> str:
    """The failure's reason, as flask_alipay's error page marks it (``data-reason``)."""
    found = _REASON.search(page)
    return found.group(1) if found else page[:200]


def sign_in(
    site_url: str, key: str, timeout: float = 15, go: threading.Event | None = None
) -> SignIn:
    """A browser with its own cookie jar signs in as emulator user ``key``, then loads /profile.

    Every request is on a new connection (``Connection: close``), as requests from
    many browsers are, so any worker may serve any step.
    """
    import requests

    result = SignIn(key)
    if go is not None and not go.wait(timeout=60):
        result.error = "never started"
        return result
    with requests.Session() as browser:
        browser.headers["Connection"] = "close"

        def step(name: str, url: str) -> requests.Response:
            started = time.monotonic()
            if name == "callback":
                result.callback_started = started
            try:
                response = browser.get(url, allow_redirects=False, timeout=timeout)
            finally:
                ended = time.monotonic()
                result.seconds[name] = ended - started
                if name == "callback":
                    result.callback_ended = ended
            result.status[name] = response.status_code
            result.pid[name] = response.headers.get("X-Worker-Pid", "")
            return response

        try:
            try:
                login = step("login", site_url + "/alipay/login?next=/profile")
            except requests.ConnectionError:
                # The first connection of a burst of 200, reset before any answer (seen
                # for up to 2% of a burst under gevent on 2 cores): nothing reached the
                # site, and a person would reload.  Only this step, only once, and counted.
                result.retried += 1
                login = step("login", site_url + "/alipay/login?next=/profile")
            if login.status_code != 302:
                result.error = f"login answered {login.status_code}"
                return result
            authorize_url = login.headers["Location"] + "&login_as=" + quote(key, safe="")
            authorized = step("authorize", authorize_url)
            if authorized.status_code != 302:
                result.error = f"authorize answered {authorized.status_code}"
                return result
            callback = step("callback", authorized.headers["Location"])
            if callback.status_code != 302:
                result.failure = error_message(callback.text)
                return result
            profile = step("profile", urljoin(site_url, callback.headers["Location"]))
            result.profile = profile.text
            if profile.status_code != 200:
                result.error = f"profile answered {profile.status_code}"
        except requests.RequestException as error:
            result.error = f"{type(error).__name__}: {error}"
    return result


def wave(
    site_url: str, keys: list[str], concurrency: int, timeout: float = 15, within: float = 600
) -> list[SignIn]:
    """Sign ``keys`` in, ``concurrency`` browsers at a time, all released together;
    TimeoutError if the wave takes more than ``within`` seconds."""
    go = threading.Event()
    deadline = time.monotonic() + within
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="browser")
    try:
        futures = [pool.submit(sign_in, site_url, key, timeout, go) for key in keys]
        go.set()
        return [future.result(timeout=max(0.1, deadline - time.monotonic())) for future in futures]
    finally:
        go.set()
        pool.shutdown(wait=True, cancel_futures=True)


def profile_problem(result: SignIn, user: dict[str, Any] | None) -> str | None:
    """Why ``result``'s profile page is not emulator user ``user``'s own, or None."""
    if user is None:
        return "the emulator has no such user"
    expected_id = user.get("open_id") or user.get("user_id")
    page = result.profile
    if f"<code>{html.escape(str(expected_id))}</code>" not in page:
        return f"the profile does not show id {expected_id}"
    nick_name = user.get("nick_name")
    if nick_name and f"<h1>{html.escape(nick_name)}</h1>" not in page:
        return f"the profile does not show nickname {nick_name}"
    if f"/avatar/{quote(result.key, safe='')}.svg" not in page:
        return "the profile does not show the user's avatar"
    return None


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
