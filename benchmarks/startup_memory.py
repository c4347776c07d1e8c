"""Start-up cost of ``init_app``, and a site's memory over 1,000 sign-ins.

    python benchmarks/startup_memory.py [--repeats 30] [--sign-ins 1000]

Start-up, in this process: ``AlipayLogin().init_app(app)`` on a fresh Flask app
with a PEM private key and the one-line Alipay public key, beside the key
parsing alone (flask_alipay's loaders and raw ``cryptography``).  Each repeat
runs every step once, in a rotating order; figures are medians.

Memory: the emulator and two sites (ours and the minimal one) in their own
processes, as in signin_cpu.py.  After a warm-up, the sites take turns for
``--sign-ins`` sign-ins each (every one a new user), and each site's RSS is
sampled at 0, 1/4, 1/2, 3/4 and all of them.
"""

from __future__ import annotations

import argparse
import base64
import gc
import sys
import time
from collections.abc import Callable

from _harness import (
    Processes,
    machine,
    make_keys,
    median,
    rss_bytes,
    save_results,
    sign_in,
    timed,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from flask_alipay import AlipayLogin
from flask_alipay.keys import load_private_key, load_public_key

MEMORY_SITES = ("ours", "minimal")


def startup(repeats: int) -> dict[str, object]:
    """Median milliseconds of init_app and of its key parsing."""
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_b64 = base64.b64encode(
        alipay_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode("ascii")
    settings = {
        "SECRET_KEY": "startup-benchmark",
        "ALIPAY_APP_ID": "2021000000000001",
        "ALIPAY_PRIVATE_KEY": private_pem.decode("ascii"),
        "ALIPAY_PUBLIC_KEY": public_b64,
    }

    def init_app() -> float:
        app = Flask("bench_startup")  # the app itself is made outside the clock
        app.config.update(settings)
        start = time.perf_counter()
        AlipayLogin().init_app(app)
        return time.perf_counter() - start

    def clocked(step: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            step()
            return time.perf_counter() - start

        return run

    steps: dict[str, Callable[[], float]] = {
        "init_app (whole)": init_app,
        "load_private_key (ours)": clocked(lambda: load_private_key(private_pem)),
        "load_public_key (ours)": clocked(lambda: load_public_key(public_b64)),
        "cryptography load_pem_private_key": clocked(
            lambda: serialization.load_pem_private_key(private_pem, password=None)
        ),
        "  same, unsafe_skip_rsa_key_validation": clocked(
            lambda: serialization.load_pem_private_key(
                private_pem, password=None, unsafe_skip_rsa_key_validation=True
            )
        ),
    }
    names = list(steps)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one untimed call each: imports and first-use caches
        steps[name]()
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(steps[name]() * 1000)
    figures = {name: median(values) for name, values in samples.items()}
    whole = figures["init_app (whole)"]
    keys = figures["load_private_key (ours)"] + figures["load_public_key (ours)"]
    return {
        "repeats": repeats,
        "ms": figures,
        "key_parsing_share_of_init_app": keys / whole,
    }


def memory(sign_ins: int, warmup: int) -> dict[str, object]:
    """RSS (MiB) of each site at 0, 25, 50, 75 and 100 % of ``sign_ins``."""
    checkpoints = [round(sign_ins * q / 4) for q in range(5)]
    rss: dict[str, dict[str, float]] = {kind: {} for kind in MEMORY_SITES}
    cold: dict[str, float] = {}
    with Processes() as procs:
        keys = make_keys(procs.folder)
        emulator = procs.emulator(keys)
        sites = {kind: procs.site(kind, emulator, keys) for kind in MEMORY_SITES}
        for kind, site in sites.items():
            cold[kind] = rss_bytes(site.pid) / 2**20
            for i in range(warmup):
                sign_in(site.url, f"warm-{kind}-{i}")
        done = 0
        with timed(f"{sign_ins} sign-ins per site"):
            for target in checkpoints:
                while done < target:
                    for site in sites.values():
                        sign_in(site.url, f"m{done}")
                    done += 1
                for kind, site in sites.items():
                    rss[kind][str(done)] = rss_bytes(site.pid) / 2**20
    growth = {
        kind: {
            "after_warmup_to_end_mib": values[str(sign_ins)] - values["0"],
            "quarter_to_end_mib": values[str(sign_ins)] - values[str(checkpoints[1])],
        }
        for kind, values in rss.items()
    }
    return {
        "sign_ins": sign_ins,
        "warmup": warmup,
        "rss_mib_before_warmup": cold,
        "rss_mib": rss,
        "growth": growth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sign-ins", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    about = machine()
    gc.collect()
    start = startup(args.repeats)
    print(f"start-up (median of {args.repeats} repeats, ms)")
    for name, ms in start["ms"].items():  # type: ignore[attr-defined]
        print(f"  {name:<42}{ms:>8.2f}")
    share = float(start["key_parsing_share_of_init_app"])  # type: ignore[arg-type]
    print(f"  key parsing is {share:.0%} of init_app")

    mem = memory(args.sign_ins, args.warmup)
    print(f"\nRSS of the site process (MiB), after {args.warmup} warm-up sign-ins, then every")
    print(f"{args.sign_ins // 4} sign-ins (a new user each time)")
    for kind in MEMORY_SITES:
        values = mem["rss_mib"][kind]  # type: ignore[index]
        cold = mem["rss_mib_before_warmup"][kind]  # type: ignore[index]
        row = "  ".join(f"{n:>5}: {mib:6.1f}" for n, mib in values.items())
        print(f"  {kind:<8} (cold {cold:5.1f})  {row}")
    for kind, grew in mem["growth"].items():  # type: ignore[attr-defined]
        print(
            f"  {kind}: {grew['after_warmup_to_end_mib']:+.1f} MiB over all, "
            f"{grew['quarter_to_end_mib']:+.1f} MiB over the last three quarters"
        )
    path = save_results("startup_memory", {"machine": about, "startup": start, "memory": mem})
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
