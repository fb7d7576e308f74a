"""The code's own hygiene, as part of the suite: ``mypy --strict`` and ``ruff`` clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The repository's folders that make up the ``tornadose`` package.
PACKAGES = ["tornadose", "adapters", "schemas"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(300)
def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    """The package type-checks under ``mypy --strict`` (configured in pyproject.toml),
    laid out as it installs: mypy runs no import hooks, so it is given a copy of the
    tree with ``adapters/`` and ``schemas/`` inside ``tornadose/``."""
    tree = tmp_path / "tornadose"
    shutil.copytree(ROOT / "tornadose", tree, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "adapters", tree / "adapters", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        ROOT / "schemas", tree / "schemas", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "tornadose",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checked = result.stdout.strip().rsplit(" ", 3)[
        -3
    ]  # "Success: no issues found in N source files"
    assert int(checked) >= len(list(tree.rglob("*.py"))), result.stdout


def test_ruff_is_clean() -> None:
    """``ruff check`` and ``ruff format --check`` find nothing anywhere in the repository."""
    paths = [*PACKAGES, "tests", "examples", "benchmarks"]
    check = run("ruff", "check", *paths)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run("ruff", "format", "--check", *paths)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
