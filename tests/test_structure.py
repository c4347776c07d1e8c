"""The layout README promises: small files, one HTTP module, no request globals below the views."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_alipay"
#: The layers under the views: they are handed what they need.
BELOW_THE_VIEWS = [
    "protocol",
    "rotation",
    "gateway/__init__",
    "gateway/deadline",
    "oauth",
    "signing",
    "keys",
    "certs",
    "config",
    "settings",
    "errors",
    "redirects",
]
REQUEST_GLOBALS = {"request", "session", "g"}
HTTP_MODULES = {"requests", "urllib3", "http.client", "socket", "urllib.request", "httpx"}


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every import in a file; name is None for ``import x``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_package_file_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


@pytest.mark.parametrize("module", BELOW_THE_VIEWS)
def test_nothing_below_the_views_touches_request_globals(module: str) -> None:
    used = {
        name for source, name in imports(PACKAGE / f"{module}.py") if source.startswith("flask")
    }
    assert not used & REQUEST_GLOBALS


def test_the_gateway_is_the_only_package_that_does_http() -> None:
    doing_http = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in [*PACKAGE.glob("*.py"), *(PACKAGE / "gateway").glob("*.py")]
        if any(
            source.split(".")[0] in HTTP_MODULES or source in HTTP_MODULES
            for source, _ in imports(path)
        )
    )
    assert doing_http == ["gateway/__init__.py", "gateway/deadline.py"]


def test_nothing_refers_outside_the_repository() -> None:
    tracked = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    offenders = [p.name for p in tracked if "../shared" in p.read_text(encoding="utf-8")]
    assert not offenders


def test_readmes_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"] + [
        p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"
    ]
    missing = [name for name in modules if name not in layout]
    assert not missing
