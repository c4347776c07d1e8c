"""What a release ships: the sdist and the wheel, built offline from the tracked files.

The build runs on a copy of what git tracks (plus new files not yet added), so a file
that only exists in this work tree, or a stray build/ or *.egg-info, can neither hide
a missing MANIFEST entry nor be left behind in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import flask_alipay

ROOT = Path(__file__).resolve().parent.parent
# Never shipped in either archive, whatever the tree holds.
LITTER = ("__pycache__/", ".pyc", ".venv", "/build/", "docs/_build/", ".sqlite3", "/instance/")


def tracked_files() -> list[str]:
    """The files a fresh clone would have, plus new ones not yet committed."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = [name for name in listed.stdout.decode("utf-8").split("\0") if name]
    return sorted(name for name in names if (ROOT / name).is_file())


@dataclass(frozen=True)
class Release:
    tracked: list[str]
    wheel: Path
    sdist: Path

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def sdist_names(self) -> list[str]:
        """Paths inside the sdist, without its ``name-version/`` top folder."""
        with tarfile.open(self.sdist) as archive:
            names = [member.name for member in archive.getmembers() if member.isfile()]
        return [name.split("/", 1)[1] for name in names]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files are tracked")
    tracked = tracked_files()
    source = tmp_path_factory.mktemp("source")
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Release(tracked, wheel, sdist)


def test_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## [{flask_alipay.__version__}] - " in changelog


def test_archive_names_carry_the_version(release: Release) -> None:
    version = flask_alipay.__version__
    assert release.wheel.name == f"flask_alipay_login-{version}-py3-none-any.whl"
    assert release.sdist.name == f"flask_alipay_login-{version}.tar.gz"


def test_wheel_holds_the_package_and_nothing_else(release: Release) -> None:
    names = release.wheel_names()
    package = [name for name in names if ".dist-info/" not in name]
    assert all(name.startswith("flask_alipay/") for name in package), package
    shipped = {name for name in release.tracked if name.startswith("flask_alipay/")}
    assert set(package) == shipped
    assert "flask_alipay/py.typed" in package
    templates = [n for n in package if n.startswith("flask_alipay/templates/flask_alipay/")]
    assert "flask_alipay/templates/flask_alipay/error.html" in templates
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "demo/", "docs/"))]


def test_wheel_metadata(release: Release) -> None:
    names = release.wheel_names()
    (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    with zipfile.ZipFile(release.wheel) as archive:
        text = archive.read(metadata).decode("utf-8")
        entry_points = archive.read(metadata.replace("METADATA", "entry_points.txt"))
    assert "Name: Flask-Alipay-Login" in text
    assert f"Version: {flask_alipay.__version__}" in text
    assert "Description-Content-Type: text/markdown" in text
    assert "# Flask-Alipay-Login" in text  # README.md is the long description
    assert b"alipay = flask_alipay.cli:alipay" in entry_points
    assert b"flask_alipay = flask_alipay.testing.pytest_plugin" in entry_points


def test_sdist_holds_the_tests_and_the_project_files(release: Release) -> None:
    names = set(release.sdist_names())
    wanted = {
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "README.zh-CN.md",
        "setup.cfg",
        "pyproject.toml",
    }
    wanted |= {name for name in release.tracked if name.startswith(("tests/", "flask_alipay/"))}
    assert "tests/support/__init__.py" in wanted
    assert "tests/vectors/vectors.json" in wanted
    missing = sorted(wanted - names)
    assert not missing, f"the sdist lacks {missing}: add them to MANIFEST.in"


@pytest.mark.parametrize("archive", ["wheel", "sdist"])
def test_no_litter(release: Release, archive: str) -> None:
    names = release.wheel_names() if archive == "wheel" else release.sdist_names()
    litter = [name for name in names if any(bit in "/" + name for bit in LITTER)]
    assert not litter


def test_twine_check_strict(release: Release) -> None:
    """PyPI refuses a long description it cannot render; --strict fails on warnings too."""
    archives = [str(release.wheel), str(release.sdist)]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *archives],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout
