"""The code's own hygiene, as part of the suite: ``mypy --strict`` and ``ruff`` clean.

Guarantees checked:

* ``mypy --strict`` finds nothing in the package laid out as it installs, and it checks
  every module of every folder ``pyproject.toml`` maps into ``tornadose`` (mypy's report
  of the modules it checked is compared with the files of the copied tree);
* ``ruff check`` and ``ruff format --check`` find nothing in the package folders, the
  tests, the examples and the benchmarks;
* the ruff configuration refuses ``adapters`` and ``schemas`` as top-level imports
  (tried on a scratch file), and lets the installed paths through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[str, Path]:
    """Import package -> repository folder, as ``pyproject.toml`` maps them
    (``tornadose``, ``tornadose.adapters`` from ``adapters/``, ...)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


#: The repository's folders that make up the ``tornadose`` package.
PACKAGES = sorted({folder.name for folder in package_dirs().values()})


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def installed_layout(target: Path) -> Path:
    """A copy of the package under ``target`` laid out as it installs: each mapped folder
    copied to its package's place (shortest package names first, so ``adapters/`` lands
    inside the copy of ``tornadose/``). Returns the copy of the top package."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, folder in sorted(package_dirs().items(), key=lambda item: item[0].count(".")):
        place = target.joinpath(*package.split("."))
        if place.exists():  # a checkout with both tornadose/adapters/ and adapters/: refuse
            assert not any(place.iterdir()), f"{place} exists in both places"
            place.rmdir()
        shutil.copytree(folder, place, ignore=ignore)
    return target / "tornadose"


@pytest.mark.timeout(300)
def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    """The package type-checks under ``mypy --strict`` (configured in pyproject.toml),
    laid out as it installs: mypy runs no import hooks (the editable install's finder
    would hide ``tornadose.adapters`` and ``tornadose.schemas``), so it is given a copy
    of the tree with every mapped folder in its place, and must check every file."""
    tree = installed_layout(tmp_path / "installed")
    assert (tree / "adapters" / "__init__.py").is_file()
    assert (tree / "schemas" / "__init__.py").is_file()
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
            "--linecount-report",
            str(tmp_path / "report"),
            "-p",
            "tornadose",
        ],
        cwd=tree.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The report lists every module mypy checked: "lines lines defs defs module".
    report = (tmp_path / "report" / "linecount.txt").read_text().splitlines()[1:]
    checked = {line.split()[-1] for line in report}
    modules = {
        ".".join(path.relative_to(tree.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in tree.rglob("*.py")
    }
    assert "tornadose.adapters.tornado" in modules
    assert "tornadose.schemas.envelope" in modules
    assert modules - checked == set(), "modules mypy did not check"


def test_ruff_is_clean() -> None:
    """``ruff check`` and ``ruff format --check`` find nothing anywhere in the repository."""
    paths = [*PACKAGES, "tests", "examples", "benchmarks"]
    check = run("ruff", "check", *paths)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run("ruff", "format", "--check", *paths)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_ruff_bans_the_folders_as_top_level_imports(tmp_path: Path) -> None:
    """With the repository's ruff configuration, every way of importing ``adapters`` or
    ``schemas`` at top level is reported (TID251), and the installed paths are not."""
    scratch = tmp_path / "scratch.py"
    scratch.write_text(
        "import adapters\n"
        "import schemas.errors\n"
        "from adapters.asgi import ChannelsApp\n"
        "from schemas import Envelope\n"
        "from tornadose.adapters.asgi import EventSourceApp\n"
        "from tornadose.schemas import ErrorBody\n"
        "\n"
        "print(adapters, schemas, ChannelsApp, Envelope, EventSourceApp, ErrorBody)\n"
    )
    result = run(
        "ruff",
        "check",
        "--no-cache",
        "--config",
        str(ROOT / "pyproject.toml"),
        "--output-format",
        "concise",
        str(scratch),
    )
    lines = sorted(
        int(match.group(1))
        for match in re.finditer(r"scratch\.py:(\d+):\d+: TID251", result.stdout)
    )
    assert lines == [1, 2, 3, 4], result.stdout + result.stderr
