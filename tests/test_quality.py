"""The code's own hygiene, as part of the suite: ``mypy --strict`` and ``ruff`` clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["tornadose", "adapters", "schemas"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(300)
def test_mypy_strict_is_clean() -> None:
    """The packages type-check under ``mypy --strict`` (configured in pyproject.toml)."""
    result = run("mypy", "--strict", *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    """``ruff check`` and ``ruff format --check`` find nothing anywhere in the repository."""
    paths = [*PACKAGES, "tests", "examples", "benchmarks"]
    check = run("ruff", "check", *paths)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run("ruff", "format", "--check", *paths)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
