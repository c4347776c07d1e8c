"""Load benchmark: the demo under gunicorn, signed into by many browsers at once.

Run it by hand from the repository root (it needs gunicorn, in the ``test`` extra)::

    python benchmarks/load.py                       # 200 sign-ins, 50 browsers at a time
    python benchmarks/load.py 200:50 1000:200       # several runs, N:CONCURRENCY each

Each run starts a fresh stack, as tests/test_load.py does: the Alipay emulator in its
own process (``python -m flask_alipay.testing --control --auto-approve``) and gunicorn
serving the demo (``loadsite:create_app()``, 4 gthread workers of 8 threads by
default), both on loopback ports, the site talking to the emulator's gateway directly.
Browsers are threads of this process, each with its own cookie jar, each signing in
as its own emulator user: ``/alipay/login`` -> the emulator's authorize page (auto
approve) -> ``/alipay/callback`` (two signed gateway calls, a SQLite upsert) ->
``/profile``.  Every request is on a new connection, as from many browsers.

Printed per run: p50 and p99 latency of a complete sign-in and of each step,
throughput (sign-ins per second of wall time), the 5xx count, sign-ins that did not
end on their own profile, and the CPU seconds per sign-in of each process group.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loadsite import (
    STEPS,
    SignIn,
    Stack,
    cpu_seconds,
    percentile,
    profile_problem,
    running_stack,
    wave,
)


@dataclass
class Figures:
    sign_ins: int
    concurrency: int
    wall: float
    results: list[SignIn]
    wrong_user: int
    cpu: dict[str, float]
    locked: int
    tracebacks: int

    @property
    def throughput(self) -> float:
        return self.sign_ins / self.wall

    @property
    def server_errors(self) -> int:
        return sum(1 for r in self.results for status in r.status.values() if status >= 500)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(status for r in self.results for status in r.status.values())

    def latencies(self, step: str | None) -> tuple[float, float]:
        if step is None:
            values = [r.total for r in self.results if r.signed_in]
        else:
            values = [r.seconds[step] for r in self.results if step in r.seconds]
        return percentile(values, 0.50), percentile(values, 0.99)


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    times = os.times()
    return {
        "site": sum(cpu_seconds(pid) for pid in [stack.master_pid, *stack.worker_pids]),
        "emulator": cpu_seconds(stack.emulator_pid),
        "browsers": times.user + times.system,
    }


def one_run(
    workdir: Path, sign_ins: int, concurrency: int, workers: int, threads: int, timeout: float
) -> Figures:
    with running_stack(
        workdir, workers=workers, threads=threads, timeout=timeout, forward=False
    ) as stack:
        warm = wave(stack.site_url, [f"warm-{n}" for n in range(20)], 4)
        assert all(r.signed_in for r in warm), "warm-up sign-ins failed"
        keys = [f"user-{n}" for n in range(sign_ins)]
        before = cpu_snapshot(stack)
        started = time.monotonic()
        results = wave(stack.site_url, keys, concurrency, timeout=60, within=3600)
        wall = time.monotonic() - started
        after = cpu_snapshot(stack)
        users = stack.control.users()
        wrong = sum(1 for r in results if r.signed_in and profile_problem(r, users.get(r.key)))
        log = stack.site_log_text()
    return Figures(
        sign_ins=sign_ins,
        concurrency=concurrency,
        wall=wall,
        results=results,
        wrong_user=wrong,
        cpu={name: (after[name] - before[name]) / sign_ins for name in after},
        locked=log.count("database is locked"),
        tracebacks=log.count("Traceback"),
    )


def report(figures: Figures) -> str:
    ms = 1000
    total = figures.latencies(None)
    lines = [
        f"### {figures.sign_ins} sign-ins, {figures.concurrency} browsers at a time",
        "",
        "| | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|",
        f"| complete sign-in | {total[0] * ms:.0f} | {total[1] * ms:.0f} |",
    ]
    for step in STEPS:
        p50, p99 = figures.latencies(step)
        lines.append(f"| {step} | {p50 * ms:.0f} | {p99 * ms:.0f} |")
    signed_in = sum(1 for r in figures.results if r.signed_in)
    cpu = ", ".join(f"{name} {seconds * ms:.1f}" for name, seconds in figures.cpu.items())
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(figures.statuses.items()))
    lines += [
        "",
        f"- wall time {figures.wall:.1f} s, throughput **{figures.throughput:.1f} sign-ins/s**",
        f"- signed in: {signed_in} of {figures.sign_ins}; on someone else's profile: "
        f"{figures.wrong_user}",
        f"- 5xx responses: **{figures.server_errors}** (all statuses: {statuses}); "
        f'"database is locked" in the site log: {figures.locked}; tracebacks: '
        f"{figures.tracebacks}",
        f"- CPU ms per sign-in: {cpu}",
        "",
    ]
    return "\n".join(lines)


def parse_run(text: str) -> tuple[int, int]:
    sign_ins, _, concurrency = text.partition(":")
    try:
        pair = int(sign_ins), int(concurrency or 50)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:CONCURRENCY, got {text!r}") from None
    if not (1 <= pair[0] <= 100_000 and 1 <= pair[1] <= 1000):
        raise argparse.ArgumentTypeError("N in 1..100000, CONCURRENCY in 1..1000")
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs",
        nargs="*",
        type=parse_run,
        default=[(200, 50)],
        metavar="N:CONCURRENCY",
        help="sign-ins and browsers at a time, per run (default 200:50)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (4)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--timeout", type=float, default=10, help="ALIPAY_TIMEOUT (10)")
    args = parser.parse_args(argv)
    print(
        f"# Load: gunicorn {args.workers} workers x {args.threads} threads (gthread), "
        f"ALIPAY_TIMEOUT={args.timeout:g}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}\n"
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="flask-alipay-load-") as scratch:
        for number, (sign_ins, concurrency) in enumerate(args.runs):
            figures = one_run(
                Path(scratch) / f"run-{number}",
                sign_ins,
                concurrency,
                args.workers,
                args.threads,
                args.timeout,
            )
            print(report(figures), flush=True)
            failed |= bool(figures.server_errors or figures.wrong_user)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
