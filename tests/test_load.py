"""The demo under gunicorn (4 workers, gthread and then gevent), signed into by 200
browsers at once through a gateway that answers 200 ms late, with the gateway failing
mid-load, then recovering.

The emulator runs in its own process (``--control --auto-approve``); the site reaches
its gateway through a TCP forwarder in this process, which can be cut.  Failures
are injected over the emulator's control channel.  The harness is benchmarks/loadsite.py.
"""

from __future__ import annotations

import http.server
import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from loadsite import (
    TOKEN_METHOD,
    USER_INFO_METHOD,
    Forwarder,
    SignIn,
    Stack,
    percentile,
    profile_problem,
    running_stack,
    sign_in,
    wave,
)

pytestmark = pytest.mark.load

BROWSERS = 200
#: Half the default of 10 s, so the injected timeouts stay short.  Not shorter: on a
#: 2-core CI machine 200 browsers queue behind CPU-bound signing, and a 2 s deadline
#: turned that queueing into 504s that production's 10 s never sees.
ALIPAY_TIMEOUT = 5.0
#: How late the gateway answers each call: production gateways take 30-300 ms.
LATENCY = 0.2
#: Every phase, start-up included, must finish within this many seconds.
DEADLINE = 110.0
REQUEST_TIMEOUT = 15.0
FAULT_BROWSERS = 32
OUTAGE = 0.75

#: Injected faults: (inject() arguments, how the failure reads on the error page).
INJECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"method": TOKEN_METHOD, "html_status": 502, "times": 3}, "html"),
    ({"method": USER_INFO_METHOD, "truncated": True, "times": 3}, "truncated"),
    ({"method": TOKEN_METHOD, "bad_signature": True, "times": 3}, "signature"),
    ({"method": TOKEN_METHOD, "delay": ALIPAY_TIMEOUT + 1, "times": 2}, "timeout"),
]
INJECTED = sum(int(arguments["times"]) for arguments, _kind in INJECTIONS)
#: The error page's reason (its data-reason) for each fault, and the documented status.
KINDS = {
    "unreachable": ("unreachable", 502),
    "timeout": ("timeout", 504),
    "html": ("malformed", 502),
    "truncated": ("malformed", 502),
    "signature": ("signature", 502),
}
#: flask_alipay's WARNING for each failure: reason and status.
FAILED_LINE = re.compile(r"Alipay sign-in failed \((\w+), status (\d+)")
#: The documented status of each reason.
STATUS = {reason: status for reason, status in KINDS.values()}
#: How many sign-ins each reason must fail: the injections, by the reason they give.
EXPECTED: Counter[str] = Counter()
for _arguments, _kind in INJECTIONS:
    EXPECTED[KINDS[_kind][0]] += int(_arguments["times"])


@dataclass
class Run:
    stack: Stack
    deadline: float
    fault_failures: list[str] = field(default_factory=list)

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the load test ran past its {DEADLINE:g} s deadline")
        return left


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The stack under one worker class, its gateway answering LATENCY late, as a real one."""
    deadline = time.monotonic() + DEADLINE
    workdir = tmp_path_factory.mktemp(f"load-{request.param}")
    with running_stack(
        workdir,
        workers=4,
        threads=8,
        timeout=ALIPAY_TIMEOUT,
        worker_class=request.param,
        latency=LATENCY,
    ) as stack:
        yield Run(stack, deadline)


def kind_of(result: SignIn) -> str | None:
    """The reason a sign-in failed, when it is one a fault here can cause."""
    return result.failure if result.failure in STATUS else None


def failure_lines(stack: Stack) -> Counter[tuple[str, int]]:
    """flask_alipay's "Alipay sign-in failed" lines in gunicorn's log, by (reason, status)."""
    found = FAILED_LINE.findall(stack.site_log_text())
    return Counter((reason, int(status)) for reason, status in found)


def crashes(stack: Stack, since: int = 0) -> str:
    """The first traceback in gunicorn's log after offset ``since``, with the line before
    it ("ERROR in app: Exception on /alipay/callback [GET]"): any is a bug."""
    text = stack.site_log_text()
    start = text.find("Traceback", since)
    if start < 0:
        return ""
    line_before = text.rfind("\n", since, max(since, text.rfind("\n", since, start)))
    start = max(since, line_before + 1)
    return text[start : start + 4000]


def log_size(stack: Stack) -> int:
    return len(stack.site_log_text())


def check_signed_in(stack: Stack, results: list[SignIn]) -> dict[str, dict[str, object]]:
    """Each browser ended on its own user's profile; return the emulator's users."""
    users = stack.control.users()
    wrong = [
        (
            result.key,
            result.error or result.failure or profile_problem(result, users.get(result.key)),
        )
        for result in results
        if not result.signed_in or profile_problem(result, users.get(result.key))
    ]
    statuses = Counter(status for result in results for status in result.status.values())
    assert not wrong, f"{len(wrong)} not signed in as themselves, e.g. {wrong[:5]}; {statuses}"
    # A first connection reset before any answer is sent once more (loadsite.sign_in):
    # seen at up to 2% of a burst under gevent on 2 cores, never past 5%.
    retried = sum(result.retried for result in results)
    assert retried <= max(1, len(results) // 20), f"{retried} first requests were reset"
    return users


def summary(phase: str, results: list[SignIn]) -> str:
    """For the captured output: how many, how fast."""
    if not results:
        return f"{phase}: no sign-ins"
    wall = max(r.callback_ended for r in results) - min(r.callback_started for r in results)
    totals = [r.total for r in results if r.signed_in]
    return (
        f"{phase}: {len(results)} sign-ins, {sum(r.signed_in for r in results)} signed in, "
        f"~{wall:.1f} s, p50 {percentile(totals, 0.5):.2f} s, p99 {percentile(totals, 0.99):.2f} s;"
    )


def wait_until(run: Run, predicate: Callable[[], bool], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + min(limit, run.left())
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class KeepAliveGateway(http.server.BaseHTTPRequestHandler):
    """An HTTP/1.1 server that keeps connections open, as Alipay's gateway does (the
    emulator, on Werkzeug's development server, closes each one)."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"answer": 1}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_forwarder_holds_back_every_answer_on_a_kept_alive_connection() -> None:
    """The load test's latency must hold on a reused gateway connection too, as the
    site's keep-alive session reuses one against a real gateway."""
    gateway = type("Gateway", (KeepAliveGateway,), {"connections": 0})  # counts its own
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    forwarder = Forwarder(("127.0.0.1", server.server_address[1]), latency=LATENCY)
    try:
        with requests.Session() as session:
            took = []
            for _ in range(3):
                started = time.monotonic()
                answer = session.post(forwarder.url + "/gateway.do", data=b"a=1", timeout=10)
                took.append(time.monotonic() - started)
                assert answer.json() == {"answer": 1}
    finally:
        forwarder.stop()
        server.shutdown()
        server.server_close()
    assert gateway.connections == 1  # one connection, reused
    assert min(took) >= LATENCY, f"answers took {took}: one came back without the delay"


#: Sign-ins one after another, before the load, to see the gateway's latency alone.
PROBES = 6


def test_every_gateway_call_is_answered_late(run: Run) -> None:
    """The latency is really applied, to every call, also on the kept-alive connection
    the site reuses: a callback makes two gateway calls, so none can take less than
    twice the latency.  (A floor, to prove the injected delay; no speed is asserted.)"""
    results = [sign_in(run.stack.site_url, f"probe-{n}", REQUEST_TIMEOUT) for n in range(PROBES)]
    assert all(r.signed_in for r in results), [(r.status, r.error, r.failure) for r in results]
    callbacks = sorted(r.seconds["callback"] for r in results)
    assert callbacks[0] >= 2 * LATENCY, f"callbacks took {callbacks}: the delay was skipped"
    print(f"probes: callbacks {', '.join(f'{c:.2f}' for c in callbacks)} s")


def test_two_hundred_browsers_sign_in_as_themselves_across_workers(run: Run) -> None:
    stack = run.stack
    assert len(stack.worker_pids) == 4
    since = log_size(stack)
    keys = [f"user-{n}" for n in range(BROWSERS)]
    results = wave(stack.site_url, keys, BROWSERS, REQUEST_TIMEOUT, within=run.left())

    server_errors = [(r.key, r.status) for r in results if max(r.status.values(), default=0) >= 500]
    assert not server_errors, f"{len(server_errors)}: {server_errors[:3]}\n{crashes(stack, since)}"
    assert not crashes(stack, since), crashes(stack, since)
    users = check_signed_in(stack, results)
    ids = {str(users[key].get("open_id")) for key in keys}
    assert len(ids) == BROWSERS, "two browsers were given the same account"
    # A sign-in is begun on one worker and finished on another: the state rides in
    # the cookie, signed with the SECRET_KEY every worker shares.
    crossed = [r for r in results if r.pid["login"] != r.pid["callback"]]
    assert crossed, "every sign-in happened to stay on one worker"
    served = {r.pid[step] for r in results for step in ("login", "callback", "profile")}
    assert len(served) >= 2, served
    assert served <= {str(pid) for pid in stack.worker_pids}
    assert not failure_lines(stack)
    # Two gateway calls per callback, each held back LATENCY: a floor under the median.
    callback_p50 = percentile([r.seconds["callback"] for r in results], 0.5)
    assert callback_p50 >= 2 * LATENCY, callback_p50
    print(
        summary("first wave", results),
        f"callback p50 {callback_p50:.2f} s, {len(crossed)} crossed workers",
    )


def test_gateway_faults_mid_load_fail_cleanly_and_spare_the_others(run: Run) -> None:
    stack = run.stack
    control, forwarder = stack.control, stack.forwarder
    assert forwarder is not None
    logged_before = failure_lines(stack)
    since = log_size(stack)
    results: list[SignIn] = []
    lock = threading.Lock()
    stop = threading.Event()
    numbers = itertools.count()
    browse_until = time.monotonic() + min(60.0, run.left() - 20)

    def browse() -> None:
        for _ in range(200):  # bounded in count and in time
            if stop.is_set() or time.monotonic() > browse_until:
                return
            result = sign_in(stack.site_url, f"fault-{next(numbers)}", REQUEST_TIMEOUT)
            with lock:
                results.append(result)

    def done(after: float = 0.0) -> int:
        with lock:
            return sum(1 for result in results if result.callback_started > after)

    def injected() -> int:
        with lock:
            return sum(1 for result in results if kind_of(result) not in (None, "unreachable"))

    browsers = [threading.Thread(target=browse, daemon=True) for _ in range(FAULT_BROWSERS)]
    for browser in browsers:
        browser.start()
    try:
        wait_until(run, lambda: done() >= 40, "sign-ins before the faults")
        for arguments, _kind in INJECTIONS:
            control.inject(**arguments)
        wait_until(run, lambda: control.stats()["injections_left"] == 0, "injections to be used")
        # The delayed answers too: an outage now would cut them short (a 502, not a 504).
        wait_until(run, lambda: injected() >= INJECTED, "the injected faults to be met")
        before_outage = done()
        wait_until(run, lambda: done() >= before_outage + 30, "sign-ins between faults")
        cut_started = time.monotonic()
        forwarder.cut()  # the gateway is down: connections refused, open ones dropped
        cut_done = time.monotonic()
        time.sleep(OUTAGE)
        restore_started = time.monotonic()
        forwarder.restore()
        restored = time.monotonic()
        wait_until(run, lambda: done(after=restored) >= 60, "sign-ins after the outage")
    finally:
        stop.set()
        for browser in browsers:
            browser.join(timeout=REQUEST_TIMEOUT * 4 + 5)
    assert not any(browser.is_alive() for browser in browsers)

    assert not crashes(stack, since), crashes(stack, since)
    broken = [(r.key, r.status, r.error) for r in results if r.error]
    assert not broken, f"{len(broken)} browsers went wrong outside the callback: {broken[:5]}"
    failed = [r for r in results if r.failure is not None]
    unknown = [(r.key, r.status, r.failure) for r in failed if kind_of(r) is None]
    assert not unknown, f"failures that are no injected fault (never a 500): {unknown[:5]}"
    kinds = Counter(kind_of(r) for r in failed)
    # Each fault hit exactly as many sign-ins as it was injected for, with its status.
    for reason, count in EXPECTED.items():
        assert kinds[reason] == count, (reason, kinds)
    for r in failed:
        found = kind_of(r)
        assert found is not None
        assert r.status["callback"] == STATUS[found], (found, r.status)
    # The outage failed the sign-ins that met it, and only those.
    unreachable = [r for r in failed if kind_of(r) == "unreachable"]
    assert unreachable, "no sign-in met the outage"
    assert all(r.overlaps(cut_started, restored) for r in unreachable)
    inside = [r for r in results if r.callback_started >= cut_done and r.callback_ended]
    inside = [r for r in inside if r.callback_ended <= restore_started]
    assert all(kind_of(r) == "unreachable" for r in inside), [r.status for r in inside]
    # Everyone else is signed in as themselves.
    check_signed_in(stack, [r for r in results if r.failure is None])
    # One WARNING line per failed sign-in, with the right reason and status.
    logged = failure_lines(stack) - logged_before
    expected = Counter((kind_of(r) or "", r.status["callback"]) for r in failed)
    assert sum(logged.values()) == len(failed), (logged, expected)
    assert logged == expected
    assert control.stats()["injections_left"] == 0
    run.fault_failures = [r.key for r in failed]
    print(summary("fault wave", results), dict(kinds), f"outage {restored - cut_started:.2f} s")


def test_every_sign_in_succeeds_once_the_faults_clear(run: Run) -> None:
    stack = run.stack
    logged_before = failure_lines(stack)
    since = log_size(stack)
    users_before = stack.control.users()
    keys = [f"user-{n}" for n in range(BROWSERS)] + run.fault_failures
    results = wave(stack.site_url, keys, BROWSERS, REQUEST_TIMEOUT, within=run.left())

    assert not crashes(stack, since), crashes(stack, since)
    users = check_signed_in(stack, results)
    for key in keys:  # the same accounts as before, not new ones
        if key in users_before:
            assert users[key]["open_id"] == users_before[key]["open_id"]
    assert failure_lines(stack) == logged_before
    print(summary("recovery wave", results))
