"""mypy --strict and ruff stay clean on the package, as part of the test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "mypy", "--strict", "flask_alipay"],
        [sys.executable, "-m", "ruff", "check", "flask_alipay", "tests", "demo"],
        [sys.executable, "-m", "ruff", "format", "--check", "flask_alipay", "tests", "demo"],
    ],
    ids=["mypy", "ruff-check", "ruff-format"],
)
def test_tool_is_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
