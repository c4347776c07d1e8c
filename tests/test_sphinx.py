"""The HTML docs build with Sphinx, warnings as errors, as README tells developers to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "docs",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def documented(page: Path) -> set[str]:
    """The ids of every object autodoc wrote on a page."""
    return set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', page.read_text("utf-8")))


def test_api_page_documents_the_public_api(html: Path) -> None:
    import flask_alipay

    ids = documented(html / "api.html")
    assert "flask_alipay.AlipayLogin.init_app" in ids
    assert "flask_alipay.testing.AlipayEmulator" in ids
    assert "flask_alipay.testing.AlipayEmulator.inject" in ids
    names = {name.rsplit(".", 1)[1] for name in ids}
    missing = sorted(set(flask_alipay.__all__) - names)
    assert not missing, f"docs/api.md does not document {missing}"
    for fixture in ("alipay_emulator", "alipay_config", "alipay_sign_in", "alipay_test_keys"):
        assert f"flask_alipay.testing.pytest_plugin.{fixture}" in ids


def test_every_guide_is_a_page(html: Path) -> None:
    for page in (ROOT / "docs").glob("*.md"):
        assert (html / page.with_suffix(".html").name).is_file(), page.name


def test_links_out_of_docs_work_in_html(html: Path) -> None:
    """``../README.md`` goes to the page that includes it; other repo files are downloads."""
    deployment = (html / "deployment.html").read_text("utf-8")
    assert 'href="project.html#usage"' in deployment
    performance = (html / "performance.html").read_text("utf-8")
    downloads = re.findall(r'href="(_downloads/[^"]+)"', performance)
    assert any(link.endswith("/README.md") for link in downloads), downloads
    assert all((html / link).is_file() for link in downloads)
    project = (html / "project.html").read_text("utf-8")
    assert 'href="setup-alipay.html"' in project  # README's docs/ links, made relative
    assert re.search(r'href="_downloads/\w+/README\.zh-CN\.md"', project)  # and its own
