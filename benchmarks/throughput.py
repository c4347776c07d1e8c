"""Throughput under gunicorn: flask_alipay beside the minimal hand-written flow, one run.

Run it by hand from the repository root (gunicorn and gevent are in the ``test`` extra)::

    python benchmarks/throughput.py                 # 5 rounds of 200 sign-ins, 64 browsers
    python benchmarks/throughput.py --rounds 7 --sign-ins 400 --browsers 96

For each worker class (gthread: 4 workers x 8 threads; gevent: 4 workers), it
starts two stacks of the same shape, each its own emulator and its own gunicorn,
with the gateway answering each call 200 ms late (a forwarder holds every answer
back, as a gateway 30-300 ms away does).  One serves flask_alipay (``AlipayLogin``
and ``@login_required``, the README's usage), the other benchmarks/minimal_site.py
(cached keys, one session, the simplest answer check).  Rounds alternate between
the two, so both meet the same machine.  Printed per worker class and site:
sign-ins per second, p50 and p99 of a whole sign-in, 5xx count; then the ratio of
flask_alipay's throughput to the minimal flow's, per round and its median.
Results go to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from loadsite import READY, ROOT, WorkerPid, percentile, running_stack, wave

RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
LATENCY = 0.2
SITES = ("ours", "minimal")


def _config() -> dict[str, str]:
    """The settings running_stack passes every site, in minimal_site's terms."""
    key_file = Path(tempfile.mkstemp(prefix="bench-app-key-", suffix=".pem")[1])
    key_file.write_text(os.environ["ALIPAY_PRIVATE_KEY"], encoding="ascii")
    return {
        "secret_key": os.environ["SECRET_KEY"],
        "app_id": os.environ["ALIPAY_APP_ID"],
        "app_private_key_file": str(key_file),
        "alipay_public_key": os.environ["ALIPAY_PUBLIC_KEY"],
        "authorize_url": os.environ["ALIPAY_AUTHORIZE_URL"],
        "gateway_url": os.environ["ALIPAY_GATEWAY_URL"],
    }


def ours() -> Any:
    """gunicorn's factory for flask_alipay (``throughput:ours()``)."""
    from flask import Flask

    from flask_alipay import AlipayLogin, current_alipay_user, login_required

    app = Flask("bench_ours")
    app.config.update(SECRET_KEY=os.environ["SECRET_KEY"])
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("ALIPAY_")})
    AlipayLogin(app)

    @app.route("/profile")
    @login_required
    def profile() -> str:
        return f"<code>{current_alipay_user.id}</code>"

    return _ready(app)


def minimal() -> Any:
    """gunicorn's factory for the hand-written flow (``throughput:minimal()``)."""
    from minimal_site import create_app

    app = create_app(_config())
    app.add_url_rule("/profile", "profile", app.view_functions["me"])
    return _ready(app)


def _ready(app: Any) -> Any:
    app.wsgi_app = WorkerPid(app.wsgi_app)
    print(READY.format(pid=os.getpid()), file=sys.stderr, flush=True)
    return app


def _commit() -> str:
    """The commit measured (with "+changes" when the tree differs from it)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def measure(stack: Any, sign_ins: int, browsers: int, round_: int) -> dict[str, Any]:
    keys = [f"r{round_}-{n}" for n in range(sign_ins)]
    started = time.monotonic()
    results = wave(stack.site_url, keys, browsers, timeout=30, within=600)
    wall = time.monotonic() - started
    totals = [r.total for r in results if r.signed_in]
    return {
        "sign_ins_per_s": len(totals) / wall,
        "p50": percentile(totals, 0.5),
        "p99": percentile(totals, 0.99),
        "signed_in": len(totals),
        "server_errors": sum(1 for r in results for status in r.status.values() if status >= 500),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sign-ins", type=int, default=200)
    parser.add_argument("--browsers", type=int, default=64)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "latency_s": LATENCY,
        **vars(args),
        "commit": _commit(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "worker_classes": {},
    }
    here = Path(__file__).resolve().parent
    for worker_class in ("gthread", "gevent"):
        load_before = os.getloadavg()[0]
        with ExitStack() as stacks, tempfile.TemporaryDirectory() as folder:
            running = {
                site: stacks.enter_context(
                    running_stack(
                        Path(folder) / site,
                        workers=4,
                        threads=8,
                        timeout=5,
                        site_app=f"throughput:{site}()",
                        pythonpath=[here],
                        worker_class=worker_class,
                        latency=LATENCY,
                    )
                )
                for site in SITES
            }
            for site in SITES:  # warm up: imports, first connections
                measure(running[site], 20, 10, -1)
            rounds: dict[str, list[dict[str, Any]]] = {site: [] for site in SITES}
            for number in range(args.rounds):
                order = SITES if number % 2 == 0 else SITES[::-1]
                for site in order:
                    rounds[site].append(
                        measure(running[site], args.sign_ins, args.browsers, number)
                    )
        ratios = [
            o["sign_ins_per_s"] / m["sign_ins_per_s"]
            for o, m in zip(rounds["ours"], rounds["minimal"], strict=True)
        ]
        summary = {
            site: {
                "sign_ins_per_s": statistics.median(r["sign_ins_per_s"] for r in rounds[site]),
                "p50": statistics.median(r["p50"] for r in rounds[site]),
                "p99": statistics.median(r["p99"] for r in rounds[site]),
                "server_errors": sum(r["server_errors"] for r in rounds[site]),
            }
            for site in SITES
        }
        report["worker_classes"][worker_class] = {
            "rounds": rounds,
            "summary": summary,
            "throughput_ratio_per_round": ratios,
            "throughput_ratio_median": statistics.median(ratios),
            # The machine is shared: how busy it was, as 1-minute load averages.
            "load_average_before_after": [load_before, os.getloadavg()[0]],
        }
        for site in SITES:
            s = summary[site]
            print(
                f"{worker_class:8} {site:8} {s['sign_ins_per_s']:6.1f} sign-ins/s  "
                f"p50 {s['p50']:.2f} s  p99 {s['p99']:.2f} s  5xx {s['server_errors']}"
            )
        print(
            f"{worker_class:8} flask_alipay / minimal throughput: "
            f"{statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
