"""Server CPU per complete sign-in: flask_alipay against a hand-written flow and the SDK.

    python benchmarks/signin_cpu.py [--rounds 7] [--batch 60] [--profile]

Three processes besides this one: the Alipay emulator
(``python -m flask_alipay.testing --auto-approve``) and a site on a threaded
werkzeug server (benchmarks/site_server.py), one per kind:

* ours: ``AlipayLogin`` + ``@login_required``;
* minimal: benchmarks/minimal_site.py on ``cryptography``, keys cached;
* sdk: the same minimal flow, signing and verifying with alipay-sdk-python.

This process is the browser: each sign-in is a fresh ``requests.Session`` that
goes login -> authorize (``login_as=uK``, a new user each time) -> callback
(token and profile calls) -> ``/me``.  A site's CPU (user+sys of its process,
all threads) is read before and after each round.  Within a round the sites
take turns sign-in by sign-in, so noise from elsewhere on the machine weighs on
all of them alike; the figure is the median over rounds, each ratio the median
of the per-round ratios.

``--profile`` then serves ours and minimal single-threaded under cProfile
(clocked by ``time.process_time``: CPU, not waiting) and ours once more under
pyinstrument, and reports where the CPU goes.
"""

from __future__ import annotations

import argparse
import pstats
import sys
import time
from itertools import count
from pathlib import Path

from _harness import (
    RESULTS,
    Processes,
    cpu_seconds,
    machine,
    make_keys,
    median,
    save_results,
    sign_in,
    stop,
    timed,
)

KINDS = ("ours", "minimal", "sdk")
GOAL_VS_MINIMAL = 1.25  # ours <= 1.25x minimal
GOAL_VS_SDK = 5.0  # sdk >= 5x ours

_users = count()


def next_user() -> str:
    """A new emulator account for every sign-in: ``u0``, ``u1``, ..."""
    return f"u{next(_users)}"


def measure(rounds: int, batch: int, sdk_every: int, warmup: int) -> dict[str, object]:
    """The interleaved comparison; returns the figures for the JSON file.

    Within a round the sites take turns sign-in by sign-in (the SDK site every
    ``sdk_every``-th turn, being slow), so a noisy neighbour weighs on all three
    alike; each site's CPU is read before and after the round.
    """
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    wall: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with Processes() as procs:
        keys = make_keys(procs.folder)
        emulator = procs.emulator(keys)
        sites = {kind: procs.site(kind, emulator, keys) for kind in KINDS}
        with timed("warm-up"):
            for site in sites.values():
                for _ in range(warmup):
                    sign_in(site.url, next_user())
        for r in range(rounds):
            done = dict.fromkeys(KINDS, 0)
            seconds = dict.fromkeys(KINDS, 0.0)
            with timed(f"round {r + 1}/{rounds}"):
                before = {kind: cpu_seconds(site.pid) for kind, site in sites.items()}
                for i in range(batch):
                    for kind in KINDS[i % 3 :] + KINDS[: i % 3]:
                        if kind == "sdk" and i % sdk_every:
                            continue
                        start = time.perf_counter()
                        sign_in(sites[kind].url, next_user())
                        seconds[kind] += time.perf_counter() - start
                        done[kind] += 1
                after = {kind: cpu_seconds(site.pid) for kind, site in sites.items()}
            for kind in KINDS:
                cpu[kind].append((after[kind] - before[kind]) * 1000 / done[kind])
                wall[kind].append(seconds[kind] * 1000 / done[kind])
    ours_vs_minimal = [o / m for o, m in zip(cpu["ours"], cpu["minimal"], strict=True)]
    sdk_vs_ours = [s / o for s, o in zip(cpu["sdk"], cpu["ours"], strict=True)]
    return {
        "rounds": rounds,
        "sign_ins_per_round": {
            "ours": batch,
            "minimal": batch,
            "sdk": len(range(0, batch, sdk_every)),
        },
        "cpu_ms_per_sign_in": {kind: median(cpu[kind]) for kind in KINDS},
        "cpu_ms_samples": cpu,
        "wall_ms_per_sign_in": {kind: median(wall[kind]) for kind in KINDS},
        "ours_vs_minimal": median(ours_vs_minimal),
        "ours_vs_minimal_samples": ours_vs_minimal,
        "sdk_vs_ours": median(sdk_vs_ours),
        "sdk_vs_ours_samples": sdk_vs_ours,
    }


# -- profiling ---------------------------------------------------------------

#: (label, file path fragment, function name): cumulative CPU of these, per sign-in.
SPOTS = {
    "ours": [
        ("whole request handling (werkzeug handler)", "werkzeug/serving.py", "handle"),
        ("Flask wsgi_app (all three views + session)", "flask/app.py", "wsgi_app"),
        ("session cookie: open + save", "flask/sessions.py", "open_session"),
        ("session cookie: open + save", "flask/sessions.py", "save_session"),
        ("view: login", "flask_alipay/views.py", "login"),
        ("view: callback", "flask_alipay/views.py", "callback"),
        ("view: /me behind login_required", "flask_alipay/identity.py", "wrapper"),
        ("token exchange via Authlib (fetch_access_token)", "authlib/", "fetch_access_token"),
        ("profile call (AlipayLogin.fetch_profile)", "flask_alipay/extension.py", "fetch_profile"),
        ("RSA signing (sign_text)", "flask_alipay/signing.py", "sign_text"),
        ("answer verification (verify_signature)", "flask_alipay/signing.py", "verify_signature"),
        ("answer slicing (parse_answer)", "flask_alipay/signing.py", "parse_answer"),
        ("HTTP client (requests Session.request)", "requests/sessions.py", "request"),
    ],
    "minimal": [
        ("whole request handling (werkzeug handler)", "werkzeug/serving.py", "handle"),
        ("Flask wsgi_app (all three views + session)", "flask/app.py", "wsgi_app"),
        ("session cookie: open + save", "flask/sessions.py", "open_session"),
        ("session cookie: open + save", "flask/sessions.py", "save_session"),
        ("view: login", "minimal_site.py", "login"),
        ("view: callback", "minimal_site.py", "callback"),
        ("view: /me", "minimal_site.py", "me"),
        ("RSA signing", "minimal_site.py", "sign"),
        ("answer verification", "minimal_site.py", "verify"),
        ("HTTP client (requests Session.request)", "requests/sessions.py", "request"),
    ],
}


def profile_site(kind: str, profiler: str, n: int, out: Path) -> None:
    """Serve ``kind`` single-threaded under ``profiler`` for ``n`` sign-ins; write ``out``."""
    with Processes() as procs:
        keys = make_keys(procs.folder)
        emulator = procs.emulator(keys)
        site = procs.site(kind, emulator, keys, profile=profiler, profile_out=out)
        for _ in range(5):  # first-use imports and caches stay out of the profile's story
            sign_in(site.url, next_user())
        for _ in range(n):
            sign_in(site.url, next_user())
        stop(site.proc)


def library(filename: str, func: str) -> str:
    """Which library a profiled function belongs to, for the by-library table."""
    path = filename.replace("\\", "/")
    if path == "~":  # a built-in: tell the RSA calls apart
        if "RSAPrivateKey" in func:
            return "cryptography: RSA sign"
        if "RSAPublicKey" in func:
            return "cryptography: RSA verify"
        return "built-ins (str, bytes, dict...)"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    if "/flask_alipay/" in path:
        return "flask_alipay"
    if path.startswith("<frozen "):
        return "stdlib " + path[len("<frozen ") : -1].lstrip("_")
    if "/lib/python3" in path:
        rest = path.split("/lib/python3")[1].split("/", 1)[1]
        return "stdlib " + rest.split("/")[0].removesuffix(".py")
    return Path(path).name


def summarise_cprofile(kind: str, path: Path, n: int) -> dict[str, object]:
    """Per sign-in CPU of the SPOTS, and the top functions by own time."""
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in table.values())  # own time of every function
    spots: dict[str, float] = {}
    for label, fragment, name in SPOTS[kind]:
        cumulative = sum(
            row[3]
            for (filename, _line, func), row in table.items()
            if func == name and fragment in filename.replace("\\", "/")
        )
        spots[label] = spots.get(label, 0.0) + cumulative * 1000 / n
    by_library: dict[str, float] = {}
    for (filename, _line, func), row in table.items():
        name = library(filename, func)
        by_library[name] = by_library.get(name, 0.0) + row[2]
    libraries = {
        name: {"ms_per_sign_in": seconds * 1000 / n, "share": seconds / total}
        for name, seconds in sorted(by_library.items(), key=lambda kv: kv[1], reverse=True)
    }
    own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:15]
    top = [
        {
            "function": f"{Path(filename).name}:{line}({func})" if filename != "~" else func,
            "ms_per_sign_in": row[2] * 1000 / n,
            "share": row[2] / total,
        }
        for (filename, line, func), row in own
    ]
    return {
        "total_ms_per_sign_in": total * 1000 / n,
        "spots_ms": spots,
        "by_library": libraries,
        "top_own_time": top,
    }


def print_profile(kind: str, summary: dict[str, object]) -> None:
    total = float(summary["total_ms_per_sign_in"])  # type: ignore[arg-type]
    print(f"\ncProfile, {kind} (CPU ms per sign-in, inflated by the profiler: {total:.2f})")
    for label, ms in summary["spots_ms"].items():  # type: ignore[attr-defined]
        print(f"  {label:<52}{ms:>7.2f}  {ms / total:>5.0%}")
    print("  own CPU time by library:")
    for name, row in list(summary["by_library"].items())[:12]:  # type: ignore[attr-defined]
        print(f"    {name:<50}{row['ms_per_sign_in']:>7.2f}  {row['share']:>5.1%}")
    print("  top functions by own CPU time:")
    for row in summary["top_own_time"][:10]:  # type: ignore[index]
        print(f"    {row['function'][:70]:<70}{row['ms_per_sign_in']:>7.3f}  {row['share']:>5.1%}")


def run_profiles(n: int) -> dict[str, object]:
    RESULTS.mkdir(exist_ok=True)
    summaries: dict[str, object] = {}
    for kind in ("ours", "minimal"):
        out = RESULTS / f"profile-{kind}.pstats"
        with timed(f"cProfile {kind}"):
            profile_site(kind, "cprofile", n, out)
        summaries[kind] = summary = summarise_cprofile(kind, out, n + 5)
        print_profile(kind, summary)
        out.unlink()  # binary and machine-specific: the summary is what we keep
    tree = RESULTS / "profile-ours-pyinstrument.txt"
    with timed("pyinstrument ours"):
        profile_site("ours", "pyinstrument", n, tree)
    print(f"\npyinstrument tree of ours: {tree}")
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=60, help="sign-ins per site and round")
    parser.add_argument("--sdk-every", type=int, default=3, help="the SDK site's turn every Nth")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="also profile ours and minimal")
    parser.add_argument("--profile-sign-ins", type=int, default=150)
    args = parser.parse_args()

    about = machine()
    figures = measure(args.rounds, args.batch, args.sdk_every, args.warmup)
    cpu = figures["cpu_ms_per_sign_in"]
    print("\nserver CPU per sign-in (median of rounds; user+sys of the site process)")
    print(f"  {'site':<10}{'CPU ms':>9}{'wall ms':>10}   per-round CPU ms  (wall: whole sign-in)")
    for kind in KINDS:
        samples = ", ".join(f"{x:.2f}" for x in figures["cpu_ms_samples"][kind])  # type: ignore[index]
        print(
            f"  {kind:<10}{cpu[kind]:>9.2f}{figures['wall_ms_per_sign_in'][kind]:>10.1f}"  # type: ignore[index]
            f"   {samples}"
        )
    vs_minimal, vs_sdk = figures["ours_vs_minimal"], figures["sdk_vs_ours"]
    print(
        f"\nours / minimal = {vs_minimal:.2f}x  (goal <= {GOAL_VS_MINIMAL}x: "
        f"{'met' if vs_minimal <= GOAL_VS_MINIMAL else 'NOT met'})"  # type: ignore[operator]
    )
    print(
        f"sdk / ours     = {vs_sdk:.2f}x  (goal >= {GOAL_VS_SDK}x: "
        f"{'met' if vs_sdk >= GOAL_VS_SDK else 'NOT met'})"  # type: ignore[operator]
    )
    data: dict[str, object] = {"machine": about, **figures}
    if args.profile:
        data["profile"] = run_profiles(args.profile_sign_ins)
    path = save_results("signin_cpu", data)
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
