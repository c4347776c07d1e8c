"""Draw docs/performance-signing.png from the JSON the benchmarks saved.

    python benchmarks/chart.py

Left: µs per signature and per verification (log scale) for each
implementation, labelled with its ratio to the floor (benchmarks/signing.py).
Right: server CPU per complete sign-in for the three sites, labelled with the
ratio to flask_alipay (benchmarks/signin_cpu.py).  Run those two first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from _harness import RESULTS, ROOT

OUT = ROOT / "docs" / "performance-signing.png"
COLOURS = {
    "ours": "#1677ff",
    "ours incl. parse_answer": "#69a7ff",
    "floor": "#8c8c8c",
    "floor + base64 decode": "#b5b5b5",
    "pycryptodome": "#fa8c16",
    "sdk": "#d4380d",
    "minimal": "#8c8c8c",
}
LABELS = {
    "ours": "flask_alipay",
    "ours incl. parse_answer": "flask_alipay + parse_answer",
    "floor": "cryptography (floor)",
    "floor + base64 decode": "cryptography + b64decode",
    "pycryptodome": "pycryptodome",
    "sdk": "alipay-sdk-python",
    "minimal": "minimal (cryptography)",
}


def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run benchmarks/{name}.py first")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def signing_panel(ax: Any, signing: dict[str, Any]) -> None:
    """Two groups of horizontal bars, sign above verify, log scale."""
    rows: list[tuple[str, str, float, float]] = []
    for op in ("sign", "verify"):
        for name, row in signing[op].items():
            rows.append((op, name, row["us_per_op"], row["ratio_to_floor"]))
    positions = list(range(len(rows)))[::-1]
    ax.barh(
        positions,
        [r[2] for r in rows],
        color=[COLOURS.get(r[1], "#999") for r in rows],
    )
    ax.set_yticks(positions, [f"{r[0]}: {LABELS.get(r[1], r[1])}" for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("µs per operation (log scale; lower is better)")
    ax.set_title("RSA2 (2048-bit) per operation")
    for y, r in zip(positions, rows, strict=True):
        ax.text(r[2] * 1.08, y, f"{r[2]:,.0f} µs  ({r[3]:.2f}× floor)", va="center", fontsize=8)
    ax.set_xlim(right=max(r[2] for r in rows) * 12)


def signin_panel(ax: Any, signin: dict[str, Any]) -> None:
    """Server CPU per sign-in, with each site's ratio to flask_alipay."""
    cpu = signin["cpu_ms_per_sign_in"]
    kinds = ["ours", "minimal", "sdk"]
    values = [cpu[k] for k in kinds]
    short = {
        "ours": "flask_alipay",
        "minimal": "minimal\n(cryptography)",
        "sdk": "minimal on\nalipay-sdk-python",
    }
    ax.bar(
        [short[k] for k in kinds],
        values,
        color=[COLOURS[k] for k in kinds],
    )
    for x, value in enumerate(values):
        ratio = value / cpu["ours"]
        ax.text(
            x, value, f"{value:.1f} ms\n({ratio:.2f}× ours)", ha="center", va="bottom", fontsize=8
        )
    ax.set_ylabel("server CPU ms per complete sign-in")
    ax.set_ylim(top=max(values) * 1.25)
    ax.set_title("CPU per sign-in (site process)")
    ax.tick_params(axis="x", labelsize=8)


def main() -> None:
    signing, signin = load("signing"), load("signin_cpu")
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1.9, 1]}
    )
    signing_panel(left, signing)
    signin_panel(right, signin)
    fig.suptitle(
        "flask_alipay: signing and sign-in cost, measured side by side "
        f"({signing['machine']['cpu_count']} cores, Python {signing['machine']['python']})",
        fontsize=11,
    )
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {Path(OUT).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
