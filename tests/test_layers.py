"""The package's import layers, checked by rule over the whole source tree.

The modules are found by walking the folders ``pyproject.toml`` maps into the ``tornadose``
package (``tornadose/``, ``adapters/`` -> ``tornadose.adapters``, ``schemas/`` ->
``tornadose.schemas``), so a module added tomorrow is checked like the ones of today, and
a module that belongs to no layer fails until it is given one here.

Guarantees checked:

* every module belongs to exactly one layer of :data:`LAYERS`, or is one of the public
  :data:`FACADES` at the top;
* a module imports only its own layer and the layers below it, counting every import:
  module level, inside functions, under ``TYPE_CHECKING``, and
  ``importlib.import_module("literal")``; no module in a layer imports a facade;
* the self-contained units (``wire``, ``_compat``, ``schemas``, ``_version``) import nothing
  of tornadose outside themselves, and the client does not import the adapters;
* the third-party packages each layer imports are the ones declared for it
  (:data:`THIRD_PARTY`): the core imports no web framework, the wire formats nothing at all;
* the module import graph has no cycles (every strongly connected component is one module);
* importing any module, in a fresh interpreter, loads no tornadose module of a higher
  layer and no facade beyond the parent packages, and no third-party package its layers
  do not declare: ``import tornadose.wire.sse`` loads nothing but its parent packages;
* ``import tornadose`` loads no other module, and every name it exports resolves;
* nothing in the repository (package, tests, examples, benchmarks, README) imports the
  repository folders ``adapters`` or ``schemas`` as top-level packages.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer units, lowest first: a module may import its own unit, its own layer and lower
#: layers only. A module belongs to the longest unit that prefixes its name.
LAYERS: dict[str, int] = {
    "tornadose._version": 0,
    "tornadose._compat": 0,
    "tornadose.wire": 0,
    "tornadose.schemas": 0,
    "tornadose.core": 1,
    "tornadose.backends": 2,
    "tornadose.delivery": 3,
    "tornadose.http": 4,
    "tornadose.adapters": 5,
    "tornadose.client": 6,
    "tornadose.cli": 7,
}
#: Units that import nothing of tornadose outside themselves.
SELF_CONTAINED = {"tornadose._version", "tornadose._compat", "tornadose.wire", "tornadose.schemas"}
#: The public import paths at the top: they may import anything; no layer imports them.
FACADES = {
    "tornadose",
    "tornadose.stores",
    "tornadose.handlers",
    "tornadose.errors",
    "tornadose.auth",
    "tornadose.shutdown",
}
#: Pairs (importer unit, imported unit) refused even though the layers would allow them.
FORBIDDEN = {("tornadose.client", "tornadose.adapters")}

_PYDANTIC = frozenset({"pydantic", "pydantic_core"})
_SERVERS = frozenset({"tornado", "starlette", "uvicorn"})
#: Third-party top-level packages each unit may import directly (the standard library is
#: always allowed). They follow the extras: pydantic is the one hard dependency, ``redis``
#: is the redis extra, ``prometheus_client`` the metrics extra, ``httpx``/``websockets`` the
#: client extra, the servers the tornado and asgi extras.
THIRD_PARTY: dict[str, frozenset[str]] = {
    "tornadose._version": frozenset(),
    "tornadose._compat": frozenset(),
    "tornadose.wire": frozenset(),
    "tornadose.schemas": _PYDANTIC,
    "tornadose.core": _PYDANTIC,
    "tornadose.backends": _PYDANTIC | {"redis"},
    "tornadose.delivery": _PYDANTIC,
    "tornadose.http": _PYDANTIC | {"prometheus_client"},
    "tornadose.adapters": _PYDANTIC | _SERVERS,
    "tornadose.client": _PYDANTIC | {"httpx", "websockets"},
    "tornadose.cli": _PYDANTIC | _SERVERS | {"redis"},
}
#: Third-party packages watched when a module is imported for real: a module may load
#: those declared for its layer or any lower one (what it imports may load them).
WATCHED = frozenset().union(*THIRD_PARTY.values())


def package_roots() -> dict[str, Path]:
    """Import package -> repository folder, as ``pyproject.toml`` maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in mapping.items()}


@dataclass
class Module:
    """One module of the package, under its installed name."""

    name: str
    path: Path
    is_package: bool
    #: Imported module names, with the line of each import.
    imports: list[tuple[str, int]] = field(default_factory=list)

    @property
    def unit(self) -> str | None:
        """The layer unit of the module, or None for a facade or an unassigned module."""
        return unit_of(self.name)


def unit_of(name: str) -> str | None:
    matches = [unit for unit in LAYERS if name == unit or name.startswith(unit + ".")]
    return max(matches, key=len) if matches else None


def discover() -> dict[str, Module]:
    """Every module of the package, by walking the mapped folders.

    A folder mapped to its own package (``adapters/``) is read only under that name, and a
    folder with no ``__init__.py`` is not a package (its files are not installed).
    """
    roots = package_roots()
    modules: dict[str, Module] = {}
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            if any(part == "__pycache__" for part in relative.parts):
                continue
            if not all(
                (folder / Path(*relative.parts[:i]) / "__init__.py").is_file()
                for i in range(len(relative.parts))
            ):
                continue
            parts = list(relative.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([package, *parts])
            if any(
                other != package
                and (name == other or name.startswith(other + "."))
                and len(other) > len(package)
                for other in roots
            ):
                continue  # the folder is mapped elsewhere
            modules[name] = Module(name, path, is_package)
    for module in modules.values():
        module.imports = list(imported_names(module, set(modules)))
    return modules


def imported_names(module: Module, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every module name the module imports, absolute, wherever the import statement is.

    ``from package import name`` yields ``package.name`` when that is a module of the
    package (``known``), else ``package`` (the name is an attribute of it); names outside
    tornadose are yielded as written.
    """
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    base = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                assert node.module is not None
                target = node.module
            if target == "__future__":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in known else target), node.lineno
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"}
        ):
            yield node.args[0].value, node.lineno


def edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    """The import graph between the package's own modules (every import counted)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        for name, _line in module.imports:
            target = resolve(name, modules)
            if target is not None and target != module.name:
                graph[module.name].add(target)
    return graph


def resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The package module an imported name stands for, or None for a name outside it.

    ``tornadose.core.store.BaseStore`` resolves to ``tornadose.core.store``; names under
    ``tornadose`` that are no module resolve to their nearest module.
    """
    if name.split(".")[0] != "tornadose":
        return None
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


MODULES = discover()


def test_the_walk_finds_the_mapped_folders() -> None:
    """The walk sees every layer and facade, under the installed names (it cannot pass on
    an empty or half-read tree)."""
    units = {module.unit for module in MODULES.values()}
    assert set(LAYERS) <= units, set(LAYERS) - units
    assert set(MODULES) >= FACADES
    assert "tornadose.adapters.tornado" in MODULES
    assert "tornadose.schemas" in MODULES
    assert not [name for name in MODULES if name.split(".")[0] != "tornadose"]


def test_every_module_has_a_layer() -> None:
    """A module belongs to a layer or is a declared facade; a new top-level module fails
    here until it is put in a layer folder (or declared a public facade)."""
    unassigned = sorted(
        name for name, module in MODULES.items() if module.unit is None and name not in FACADES
    )
    assert not unassigned, f"modules in no layer (add them to a layer folder): {unassigned}"


def test_layers_import_only_layers_below() -> None:
    """No module imports a higher layer, a facade, a unit it is forbidden to, or (for the
    self-contained units) anything of tornadose outside itself."""
    problems: list[str] = []
    for module in MODULES.values():
        unit = module.unit
        if unit is None:
            continue  # a facade: may import anything
        for name, line in module.imports:
            where = f"{module.path.relative_to(ROOT)}:{line} ({module.name}) imports {name}"
            top = name.split(".")[0]
            if top in {"adapters", "schemas"}:
                problems.append(f"{where}: the top-level folder name; import tornadose.{name}")
                continue
            target = resolve(name, MODULES)
            if target is None or target == module.name:
                continue
            target_unit = unit_of(target)
            if target_unit is None:
                problems.append(f"{where}: a facade; import the layer module instead")
            elif unit in SELF_CONTAINED and target_unit != unit:
                problems.append(f"{where}: {unit} imports nothing of tornadose outside itself")
            elif LAYERS[target_unit] > LAYERS[unit]:
                problems.append(
                    f"{where}: layer {LAYERS[unit]} ({unit}) may not import layer "
                    f"{LAYERS[target_unit]} ({target_unit})"
                )
            elif (unit, target_unit) in FORBIDDEN:
                problems.append(f"{where}: {unit} must not import {target_unit}")
    assert not problems, "\n".join(problems)


def test_third_party_imports_follow_the_layers() -> None:
    """Each unit imports only the standard library, itself, and the third-party packages
    declared for it in :data:`THIRD_PARTY` (the core no web framework, the wire formats
    nothing)."""
    problems: list[str] = []
    for module in MODULES.values():
        unit = module.unit
        if unit is None:
            continue
        for name, line in module.imports:
            top = name.split(".")[0]
            if top in {"tornadose", "adapters", "schemas"} or top in sys.stdlib_module_names:
                continue
            if top not in THIRD_PARTY[unit]:
                problems.append(
                    f"{module.path.relative_to(ROOT)}:{line} ({module.name}) imports {top}: "
                    f"{unit} may import only {sorted(THIRD_PARTY[unit]) or 'the standard library'}"
                )
    assert not problems, "\n".join(problems)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_strongly_connected_finds_cycles() -> None:
    """The cycle finder itself: it reports a three-module cycle and leaves a chain alone."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"], ["e"]]


def test_no_import_cycles() -> None:
    """The module import graph, every import counted (type-only and function-level too),
    has no cycle: each strongly connected component is a single module."""
    cycles = [component for component in strongly_connected(edges(MODULES)) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


#: Run in a fresh interpreter: imports each module named on the command line in a forked
#: child (so every import starts from the same clean state) and prints what it loaded.
_PROBE = r"""
import importlib, json, os, sys
baseline = set(sys.modules)
report = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            result = {"loaded": sorted(set(sys.modules) - baseline)}
        except BaseException as error:
            result = {"error": repr(error)}
        with os.fdopen(write, "w") as out:
            json.dump(result, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        report[name] = json.loads(answer.read())
    os.waitpid(pid, 0)
print(json.dumps(report))
"""


def probe(names: list[str]) -> dict[str, dict[str, list[str] | str]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, dict[str, list[str] | str]] = json.loads(result.stdout)
    return report


@pytest.mark.timeout(150)
def test_importing_a_module_loads_no_higher_layer() -> None:
    """Importing any module for real (lazy imports and import hooks included) loads only
    its parent packages and modules of its own layer or lower, and of the watched
    third-party packages only those its layer or a lower one declares."""
    # A __main__ module runs the command when imported: its imports are checked statically.
    names = sorted(
        name
        for name, module in MODULES.items()
        if module.unit is not None and not name.endswith(".__main__")
    )
    report = probe(names)
    problems: list[str] = []
    for name in names:
        outcome = report[name]
        if "error" in outcome:
            problems.append(f"import {name} failed: {outcome['error']}")
            continue
        unit = unit_of(name)
        assert unit is not None
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        allowed = frozenset().union(
            *(packages for other, packages in THIRD_PARTY.items() if LAYERS[other] <= LAYERS[unit])
        )
        for loaded in outcome["loaded"]:
            top = loaded.split(".")[0]
            if top == "tornadose":
                if loaded in parents or loaded == name:
                    continue
                loaded_unit = unit_of(loaded)
                if loaded_unit is None:
                    problems.append(f"import {name} loads the facade {loaded}")
                elif unit in SELF_CONTAINED and loaded_unit != unit:
                    problems.append(f"import {name} loads {loaded}, outside {unit}")
                elif LAYERS[loaded_unit] > LAYERS[unit]:
                    problems.append(f"import {name} loads {loaded}, a higher layer")
            elif top in WATCHED and top not in allowed:
                problems.append(f"import {name} loads {top}")
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_wire_modules_load_nothing_else() -> None:
    """``import tornadose.wire.sse`` (and every wire module) loads its parent packages and
    wire modules only: no other tornadose module, no pydantic, no third-party package."""
    names = sorted(name for name in MODULES if unit_of(name) == "tornadose.wire")
    assert "tornadose.wire.sse" in names
    for name, outcome in probe(names).items():
        loaded = outcome.get("loaded")
        assert isinstance(loaded, list), outcome
        ours = {module for module in loaded if module.split(".")[0] == "tornadose"}
        assert ours <= {"tornadose", "tornadose.wire"} | {
            module for module in ours if module.startswith("tornadose.wire.")
        }, (name, ours)
        foreign = {
            module.split(".")[0]
            for module in loaded
            if module.split(".")[0] not in sys.stdlib_module_names
            and module.split(".")[0] != "tornadose"
            and not module.startswith("__editable__")  # the editable install's finder
        }
        assert not foreign, (name, foreign)
        assert "pydantic" not in loaded


def test_the_tornadose_namespace_is_lazy() -> None:
    """``import tornadose`` loads no other tornadose module; each exported name is loaded
    on first use and is the object of its defining module."""
    script = (
        "import json, sys\n"
        "import tornadose\n"
        "before = sorted(m for m in sys.modules if m.startswith('tornadose'))\n"
        "missing = [n for n in tornadose.__all__ if getattr(tornadose, n, None) is None]\n"
        "print(json.dumps([before, missing, tornadose.__version__]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    before, missing, version = json.loads(result.stdout)
    assert before == ["tornadose"]
    assert missing == []
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version)


# -- no top-level `adapters` / `schemas` anywhere ----------------------------------------

#: Folders of the repository that hold Python code (the package's are found through
#: pyproject's mapping). The virtual environment and build output are not ours.
_SKIP = {".venv", ".git", "build", "dist", "__pycache__", "node_modules"}
_TOP_LEVEL = re.compile(
    r"^\s*(?:from\s+(adapters|schemas)[\s.]|import\s+(adapters|schemas)\b)", re.M
)


def python_files() -> Iterator[Path]:
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if _SKIP.isdisjoint(relative.parts) and not relative.parts[0].endswith(".egg-info"):
            yield path


def top_level_folder_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name)
                for a in node.names
                if a.name.split(".")[0] in {"adapters", "schemas"}
            ]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] in {"adapters", "schemas"}
        ):
            found.append((node.lineno, node.module))
    return found


def test_the_folder_scan_catches_a_top_level_import() -> None:
    """The scan below flags ``adapters``/``schemas`` imports and leaves the mapped ones."""
    tree = ast.parse(
        "import schemas\nfrom adapters.asgi import ChannelsApp\n"
        "from tornadose.schemas import Envelope\nimport tornadose.adapters.tornado\n"
    )
    assert top_level_folder_imports(tree) == [(1, "schemas"), (2, "adapters.asgi")]
    assert _TOP_LEVEL.findall("x = 1\nfrom schemas import Envelope\n")
    assert not _TOP_LEVEL.findall("from tornadose.schemas import Envelope\n")


def test_nothing_imports_the_folders_as_top_level_packages() -> None:
    """Every Python file of the repository (package, tests, examples, benchmarks) and every
    Markdown file's code imports ``tornadose.adapters``/``tornadose.schemas``, never the
    top-level ``adapters``/``schemas`` that would only resolve from a checkout (and would
    pick up a user's own ``schemas.py``)."""
    problems: list[str] = []
    for path in python_files():
        for line, name in top_level_folder_imports(ast.parse(path.read_text(), str(path))):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    for path in ROOT.rglob("*.md"):
        if not _SKIP.isdisjoint(path.relative_to(ROOT).parts):
            continue
        for match in _TOP_LEVEL.finditer(path.read_text()):
            line = path.read_text().count("\n", 0, match.start()) + 1
            problems.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0).strip()}")
    assert not problems, "top-level adapters/schemas imports:\n" + "\n".join(problems)
