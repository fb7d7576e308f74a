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
  ``importlib.import_module("literal")``; importing ``tornadose.x.y`` counts as importing
  the package ``tornadose.x`` too (its ``__init__`` runs), and a module imports its own
  parent packages; no module in a layer imports a facade;
* no module imports dynamically with a computed name (``import_module(f"...")``,
  ``__import__(name)``) unless :data:`DYNAMIC_IMPORTS` lists it, with the reason; the
  lazy namespace's table (``_EXPORTS`` in ``tornadose/__init__.py``) is literal strings,
  each naming a module that defines the name, and each counted as an import of it;
* the self-contained units (``wire``, ``_compat``, ``schemas``, ``_version``) import nothing
  of tornadose outside themselves, and the client does not import the adapters;
* the third-party packages each layer imports are the ones declared for it
  (:data:`THIRD_PARTY`): the core imports no web framework, the wire formats nothing at all;
* the module import graph, parent packages included, has no cycles (every strongly
  connected component is one module);
* importing any module, in a fresh interpreter, loads no tornadose module of a higher
  layer and no facade beyond the parent packages, and no third-party package its layers
  do not declare: ``import tornadose.wire.sse`` loads nothing but its parent packages;
* ``import tornadose`` loads no other module, and every name it exports resolves;
* nothing in the repository (package, tests, examples, benchmarks, README) imports the
  repository folders ``adapters`` or ``schemas`` as top-level packages, and no Markdown
  file nor anything in ``examples/``, ``benchmarks/`` or ``docs/`` names a module path
  under them (``uvicorn adapters.asgi:app``, ``"schemas.errors"``).

Each check is a function of a repository root, and each is shown to fail on a scratch copy
of the tree with one violation planted (the ``test_planted_*`` tests).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
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
#: The package itself: the lazy namespace, and the parent of every module.
PACKAGE = "tornadose"
#: The public import paths at the top: they may import anything; no layer imports them.
FACADES = {
    PACKAGE,
    "tornadose.stores",
    "tornadose.handlers",
    "tornadose.errors",
    "tornadose.auth",
    "tornadose.shutdown",
    "tornadose.sockets",
}
#: Pairs (importer unit, imported unit) refused even though the layers would allow them.
FORBIDDEN = {("tornadose.client", "tornadose.adapters")}

#: The modules allowed a dynamic import whose module name is computed (not a literal
#: string), each with the reason. Any other computed import fails, and so does an entry
#: here whose module no longer has one.
DYNAMIC_IMPORTS: dict[str, str] = {
    # The lazy namespace imports the module its literal ``_EXPORTS`` table names for the
    # attribute asked: each entry of the table is checked as an import of the facade.
    PACKAGE: "lazy namespace: the modules named in its literal _EXPORTS table",
    # ``missing``/``require`` try the third-party packages of an extra, named by callers.
    "tornadose._compat.optional": "probes the third-party packages an extra provides",
    # ``tornadose serve module:attribute`` imports the user's module.
    "tornadose.cli.target": "imports the user's module named on the command line",
}
#: Modules whose module-level ``_EXPORTS`` dict maps a public name to the module defining
#: it (a lazy namespace): its values must be literal module names of the package.
LAZY_TABLES = {PACKAGE}

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
    "tornadose.adapters": _PYDANTIC | _SERVERS | {"fastapi"},
    "tornadose.client": _PYDANTIC | {"httpx", "websockets"},
    "tornadose.cli": _PYDANTIC | _SERVERS | {"redis"},
}
#: Third-party packages watched when a module is imported for real: a module may load
#: those declared for its layer or any lower one (what it imports may load them).
WATCHED = frozenset().union(*THIRD_PARTY.values())


def package_roots(root: Path) -> dict[str, Path]:
    """Import package -> repository folder, as ``root``'s ``pyproject.toml`` maps them."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


@dataclass
class Module:
    """One module of the package, under its installed name."""

    name: str
    path: Path
    #: The file's path in the repository, for messages.
    label: str
    is_package: bool
    #: Imported module names, with the line of each import.
    imports: list[tuple[str, int]] = field(default_factory=list)
    #: Lines of dynamic imports whose module name is computed.
    computed: list[int] = field(default_factory=list)
    #: The module-level ``_EXPORTS`` table: public name -> (module name or None when the
    #: value is not a literal string, line).
    lazy: dict[str, tuple[str | None, int]] = field(default_factory=dict)

    @property
    def unit(self) -> str | None:
        """The layer unit of the module, or None for a facade or an unassigned module."""
        return unit_of(self.name)


def unit_of(name: str) -> str | None:
    matches = [unit for unit in LAYERS if name == unit or name.startswith(unit + ".")]
    return max(matches, key=len) if matches else None


def parents(name: str) -> list[str]:
    """The packages enclosing ``name``, outermost first: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def discover(root: Path) -> dict[str, Module]:
    """Every module of the package under ``root``, by walking the mapped folders.

    A folder mapped to its own package (``adapters/``) is read only under that name, and a
    folder with no ``__init__.py`` is not a package (its files are not installed).
    """
    roots = package_roots(root)
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
            label = str(path.relative_to(root))
            modules[name] = Module(name, path, label, is_package)
    for module in modules.values():
        scan(module, set(modules))
    return modules


def _importlib_callables(tree: ast.AST) -> set[str]:
    """The spellings under which the module can call ``importlib.import_module`` or
    ``__import__``, aliases included (``import importlib as il``,
    ``from importlib import import_module as load``)."""
    found = {"__import__", "builtins.__import__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in {"importlib", "builtins"}:
                    bound = alias.asname or alias.name
                    found |= {f"{bound}.import_module", f"{bound}.__import__"}
        elif isinstance(node, ast.ImportFrom) and node.module in {"importlib", "builtins"}:
            for alias in node.names:
                if alias.name in {"import_module", "__import__"}:
                    found.add(alias.asname or alias.name)
    return found


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _dynamic_target(call: ast.Call) -> str | None:
    """The absolute module name a dynamic import call imports, or None if it is computed
    (``import_module(".x", "pkg")`` resolves when both are literal)."""
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        return None
    name = _literal(_argument(call, 0, "name"))
    if name is None:
        return None
    is_dunder = ast.unparse(call.func).endswith("__import__")
    if is_dunder:
        level = _argument(call, 4, "level")
        if level is not None and not (isinstance(level, ast.Constant) and level.value == 0):
            return None  # a relative __import__: its anchor is the caller's globals
        return name
    if not name.startswith("."):
        return name
    package = _literal(_argument(call, 1, "package"))
    if package is None:
        return None
    dots = len(name) - len(name.lstrip("."))
    anchor = package.split(".")[: len(package.split(".")) - (dots - 1)]
    return ".".join([*anchor, *([name[dots:]] if name[dots:] else [])])


def _lazy_table(tree: ast.Module) -> dict[str, tuple[str | None, int]]:
    """The module-level ``_EXPORTS = {"Name": "module", ...}`` table, if any."""
    table: dict[str, tuple[str | None, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
            continue
        if not isinstance(value, ast.Dict):
            table["<not a dict display>"] = (None, node.lineno)
            continue
        for key, item in zip(value.keys, value.values, strict=True):
            label = _literal(key) if key is not None else None
            table[label or f"<computed key, line {item.lineno}>"] = (_literal(item), item.lineno)
    return table


def scan(module: Module, known: set[str]) -> None:
    """Fill in every module name ``module`` imports, absolute, wherever the import
    statement is, its computed dynamic imports, and its lazy table.

    ``from package import name`` yields ``package.name`` when that is a module of the
    package (``known``), else ``package`` (the name is an attribute of it); names outside
    tornadose are yielded as written. The lazy table's literal values count as imports.
    """
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    base = module.name if module.is_package else module.name.rpartition(".")[0]
    importers = _importlib_callables(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports.append((alias.name, node.lineno))
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
                module.imports.append(((submodule if submodule in known else target), node.lineno))
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in importers:
            imported = _dynamic_target(node)
            if imported is None:
                module.computed.append(node.lineno)
            else:
                module.imports.append((imported, node.lineno))
    module.lazy = _lazy_table(tree)
    module.imports += [(name, line) for name, line in module.lazy.values() if name is not None]


def resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The package module an imported name stands for, or None for a name outside it.

    ``tornadose.core.store.BaseStore`` resolves to ``tornadose.core.store``; names under
    ``tornadose`` that are no module resolve to their nearest module.
    """
    if name.split(".")[0] != PACKAGE:
        return None
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def runs(importer: str, target: str, modules: dict[str, Module]) -> list[str]:
    """The package modules that importing ``target`` from ``importer`` may run: the target,
    and its parent packages (their ``__init__`` runs first), except the importer's own
    parents, which started running before the importer did (importing them again runs
    nothing), unless the target is one of them (``from tornadose.cli import X`` in
    ``tornadose.cli.serve`` needs ``tornadose.cli``'s ``__init__`` to have defined X)."""
    own = set(parents(importer))
    return [
        name
        for name in [*parents(target), target]
        if name in modules and name != importer and (name == target or name not in own)
    ]


def edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    """The import graph between the package's own modules: every import counted, with
    the parent packages each import runs (:func:`runs`)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        for name, _line in module.imports:
            target = resolve(name, modules)
            if target is not None:
                graph[module.name].update(runs(module.name, target, modules))
    return graph


# -- the checks, each a function of the modules found under a root ------------------------


def unassigned(modules: dict[str, Module]) -> list[str]:
    """Modules in no layer that are no declared facade."""
    return sorted(name for name, m in modules.items() if m.unit is None and name not in FACADES)


def layer_problems(modules: dict[str, Module]) -> list[str]:
    """Imports of a higher layer, a facade, a forbidden unit, or (for the self-contained
    units) anything of tornadose outside the unit; the parent packages an import runs, and
    the module's own parent packages (but the lazy :data:`PACKAGE`), count as imported."""
    problems: list[str] = []
    for module in modules.values():
        unit = module.unit
        if unit is None:
            continue  # a facade: may import anything
        implied = [(p, 0) for p in parents(module.name) if p != PACKAGE and p in modules]
        for name, line in [*module.imports, *implied]:
            how = f"imports {name}" if line else f"runs its parent package {name}"
            where = f"{module.label}:{line} ({module.name}) {how}"
            top = name.split(".")[0]
            if top in {"adapters", "schemas"}:
                problems.append(f"{where}: the top-level folder name; import tornadose.{name}")
                continue
            resolved = resolve(name, modules)
            if resolved is None or resolved == module.name:
                continue
            # The module's own parents are left out of what an import runs, and checked
            # as its implied imports; the package itself, their first, is the lazy
            # namespace (it imports nothing when it runs) unless imported by name.
            for target in runs(module.name, resolved, modules):
                target_unit = unit_of(target)
                if target != resolved and target_unit == unit_of(resolved):
                    continue  # a parent package in the target's unit: reported with it
                via = "" if target == resolved else f" (runs {target})"
                if target_unit is None:
                    problems.append(f"{where}{via}: a facade; import the layer module instead")
                elif unit in SELF_CONTAINED and target_unit != unit:
                    problems.append(
                        f"{where}{via}: {unit} imports nothing of tornadose outside itself"
                    )
                elif LAYERS[target_unit] > LAYERS[unit]:
                    problems.append(
                        f"{where}{via}: layer {LAYERS[unit]} ({unit}) may not import layer "
                        f"{LAYERS[target_unit]} ({target_unit})"
                    )
                elif (unit, target_unit) in FORBIDDEN:
                    problems.append(f"{where}{via}: {unit} must not import {target_unit}")
    return list(dict.fromkeys(problems))


def third_party_problems(modules: dict[str, Module]) -> list[str]:
    """Third-party imports a unit does not declare in :data:`THIRD_PARTY`."""
    problems: list[str] = []
    for module in modules.values():
        unit = module.unit
        if unit is None:
            continue
        for name, line in module.imports:
            top = name.split(".")[0]
            if top in {PACKAGE, "adapters", "schemas"} or top in sys.stdlib_module_names:
                continue
            if top not in THIRD_PARTY[unit]:
                problems.append(
                    f"{module.label}:{line} ({module.name}) imports {top}: "
                    f"{unit} may import only {sorted(THIRD_PARTY[unit]) or 'the standard library'}"
                )
    return problems


def _binds(tree: ast.Module, name: str) -> bool:
    """Whether ``name`` is bound at the top of the module (statement bodies of ``if`` and
    ``try`` included): assigned, defined, or imported."""
    statements: list[ast.stmt] = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If | ast.Try):
            statements += [*node.body, *node.orelse]
            if isinstance(node, ast.Try):
                statements += node.finalbody
                for handler in node.handlers:
                    statements += handler.body
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target)):
                    return True
    return False


def dynamic_import_problems(modules: dict[str, Module]) -> list[str]:
    """Computed dynamic imports outside :data:`DYNAMIC_IMPORTS`, entries of it with no
    computed import left, and lazy tables (:data:`LAZY_TABLES`) with an entry that is not
    a literal module of the package defining the name."""
    problems: list[str] = []
    for module in modules.values():
        for line in module.computed:
            if module.name not in DYNAMIC_IMPORTS:
                problems.append(
                    f"{module.label}:{line} ({module.name}) imports a computed module name: "
                    "import it by a literal name, or list the module in DYNAMIC_IMPORTS"
                )
    for name in sorted(DYNAMIC_IMPORTS):
        if name not in modules or not modules[name].computed:
            problems.append(f"DYNAMIC_IMPORTS lists {name}, which has no computed import")
    for name in sorted(LAZY_TABLES):
        module = modules.get(name)
        if module is None or not module.lazy:
            problems.append(f"{name} has no _EXPORTS table of literal module names")
            continue
        for public, (target, line) in module.lazy.items():
            where = f"{module.label}:{line} ({name}) _EXPORTS[{public!r}]"
            if target is None:
                problems.append(f"{where}: not a literal module name")
            elif target not in modules:
                problems.append(f"{where} = {target!r}: no module of the package")
            elif not _binds(ast.parse(modules[target].path.read_text()), public):
                problems.append(f"{where} = {target!r}: the module does not define {public}")
    return problems


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


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module)."""
    return [c for c in strongly_connected(edges(modules)) if len(c) > 1]


MODULES = discover(ROOT)


def test_the_walk_finds_the_mapped_folders() -> None:
    """The walk sees every layer and facade, under the installed names (it cannot pass on
    an empty or half-read tree)."""
    units = {module.unit for module in MODULES.values()}
    assert set(LAYERS) <= units, set(LAYERS) - units
    assert set(MODULES) >= FACADES
    assert "tornadose.adapters.tornado" in MODULES
    assert "tornadose.schemas" in MODULES
    assert not [name for name in MODULES if name.split(".")[0] != PACKAGE]


def test_every_module_has_a_layer() -> None:
    """A module belongs to a layer or is a declared facade; a new top-level module fails
    here until it is put in a layer folder (or declared a public facade)."""
    missing = unassigned(MODULES)
    assert not missing, f"modules in no layer (add them to a layer folder): {missing}"


def test_layers_import_only_layers_below() -> None:
    """No module imports a higher layer, a facade, a unit it is forbidden to, or (for the
    self-contained units) anything of tornadose outside itself."""
    problems = layer_problems(MODULES)
    assert not problems, "\n".join(problems)


def test_third_party_imports_follow_the_layers() -> None:
    """Each unit imports only the standard library, itself, and the third-party packages
    declared for it in :data:`THIRD_PARTY` (the core no web framework, the wire formats
    nothing)."""
    problems = third_party_problems(MODULES)
    assert not problems, "\n".join(problems)


def test_no_computed_dynamic_imports() -> None:
    """Every dynamic import names its module literally (and is then checked as any
    import), except in the modules :data:`DYNAMIC_IMPORTS` lists; the lazy namespace's
    table names modules that define its names."""
    problems = dynamic_import_problems(MODULES)
    assert not problems, "\n".join(problems)


def test_the_lazy_table_is_counted_as_imports_of_the_facade() -> None:
    """The modules ``tornadose/__init__.py`` loads on first use are edges of the facade in
    the import graph (a cycle or a missing module through them would be seen)."""
    table = {target for target, _line in MODULES[PACKAGE].lazy.values()}
    assert {"tornadose.core.store", "tornadose.http.channels"} <= table
    assert table <= edges(MODULES)[PACKAGE]


def test_strongly_connected_finds_cycles() -> None:
    """The cycle finder itself: it reports a three-module cycle and leaves a chain alone."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"], ["e"]]


def test_no_import_cycles() -> None:
    """The module import graph, every import counted (type-only and function-level too)
    with the parent packages it runs, has no cycle: each strongly connected component is
    a single module."""
    found = cycles(MODULES)
    assert not found, f"import cycles: {found}"


# -- the checks fail on a tree with one violation planted ----------------------------------

#: What of the repository a scratch copy holds: the mapped package folders and what the
#: top-level scan reads.
_COPIED = (
    "pyproject.toml",
    "README.md",
    "tornadose",
    "adapters",
    "schemas",
    "examples",
    "benchmarks",
    "docs",
)


def scratch_tree(tmp_path: Path) -> Path:
    """A copy of the repository's package and documents under ``tmp_path``."""
    root = tmp_path / "tree"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.png", "*.json")
    for name in _COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        elif source.is_file():
            shutil.copy(source, root / name)
    return root


def plant(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_planted_cycle_through_a_package_init(tmp_path: Path) -> None:
    """A cycle whose only way back runs through a package's ``__init__`` is found: the
    planted module imports ``tornadose.core.extra.sub``, which runs
    ``tornadose/core/extra/__init__.py``, which imports the planted module."""
    root = scratch_tree(tmp_path)
    plant(root, "tornadose/core/planted.py", "import tornadose.core.extra.sub\n")
    plant(root, "tornadose/core/extra/__init__.py", "from tornadose.core import planted\n")
    plant(root, "tornadose/core/extra/sub.py", "VALUE = 1\n")
    modules = discover(root)
    assert "tornadose.core.extra" in edges(modules)["tornadose.core.planted"]
    assert ["tornadose.core.extra", "tornadose.core.planted"] in cycles(modules)


def test_planted_cycle_through_an_own_package_import(tmp_path: Path) -> None:
    """A module importing a name from its own package's ``__init__``, which imports the
    module, is a cycle; importing a sibling module (which runs the already running
    ``__init__`` of the package) is not."""
    root = scratch_tree(tmp_path)
    plant(root, "tornadose/core/extra/__init__.py", "from tornadose.core.extra import a, b\n")
    plant(root, "tornadose/core/extra/a.py", "from tornadose.core.extra.b import VALUE\n")
    plant(root, "tornadose/core/extra/b.py", "VALUE = 1\n")
    assert not [c for c in cycles(discover(root)) if "tornadose.core.extra.a" in c]
    plant(root, "tornadose/core/extra/b.py", "from tornadose.core.extra import VALUE\n")
    found = cycles(discover(root))
    assert any({"tornadose.core.extra", "tornadose.core.extra.b"} <= set(c) for c in found)


def test_planted_layer_violations(tmp_path: Path) -> None:
    """A core module importing a higher layer, through a literal ``import_module`` too, or
    the ``tornadose`` facade, is reported, each at its line."""
    root = scratch_tree(tmp_path)
    plant(
        root,
        "tornadose/core/planted.py",
        "import importlib\n"
        "from tornadose.http.answer import Answer\n"
        "from tornadose import Message\n"
        "def later():\n"
        "    return importlib.import_module('tornadose.delivery.streams')\n",
    )
    problems = [p for p in layer_problems(discover(root)) if "tornadose.core.planted" in p]
    assert len(problems) == 3, problems
    assert [p.split(" (")[0] for p in problems] == [
        "tornadose/core/planted.py:2",
        "tornadose/core/planted.py:3",
        "tornadose/core/planted.py:5",
    ]
    assert "layer 4 (tornadose.http)" in problems[0]
    assert "a facade" in problems[1]
    assert "layer 3 (tornadose.delivery)" in problems[2]


def test_planted_computed_dynamic_imports(tmp_path: Path) -> None:
    """``import_module(f"...")``, ``__import__(name)`` and an aliased ``import_module``
    with a computed name are each reported, at their lines; literal names are not (they
    are imports, checked by the layers)."""
    root = scratch_tree(tmp_path)
    plant(
        root,
        "tornadose/core/planted.py",
        "import importlib\n"
        "from importlib import import_module as load\n"
        "def pick(part: str) -> object:\n"
        "    importlib.import_module('tornadose.core.message')\n"
        "    importlib.import_module(f'tornadose.core.{part}')\n"
        "    __import__(part)\n"
        "    return load('tornadose.' + part)\n",
    )
    modules = discover(root)
    assert modules["tornadose.core.planted"].computed == [5, 6, 7]
    assert ("tornadose.core.message", 4) in modules["tornadose.core.planted"].imports
    problems = [p for p in dynamic_import_problems(modules) if "planted" in p]
    assert [p.split(" (")[0] for p in problems] == [
        "tornadose/core/planted.py:5",
        "tornadose/core/planted.py:6",
        "tornadose/core/planted.py:7",
    ]


def test_planted_bad_lazy_table_entries(tmp_path: Path) -> None:
    """An ``_EXPORTS`` entry naming no module, a module that does not define the name, or
    a computed module name is reported; the table's modules are edges of the facade."""
    root = scratch_tree(tmp_path)
    init = root / "tornadose/__init__.py"
    text = init.read_text()
    assert "_EXPORTS = {\n" in text
    init.write_text(
        text.replace(
            "_EXPORTS = {\n",
            "_EXPORTS = {\n"
            '    "Nowhere": "tornadose.core.nowhere",\n'
            '    "Misplaced": "tornadose.core.reasons",\n'
            '    "Computed": "tornadose.core." + "store",\n',
        )
    )
    modules = discover(root)
    problems = dynamic_import_problems(modules)
    assert len(problems) == 3, problems
    assert "'Nowhere'] = 'tornadose.core.nowhere': no module" in problems[0]
    assert "'Misplaced'] = 'tornadose.core.reasons': the module does not define" in problems[1]
    assert "'Computed']: not a literal module name" in problems[2]
    assert "tornadose.core.reasons" in edges(modules)[PACKAGE]


def test_planted_stale_dynamic_import_entry(tmp_path: Path) -> None:
    """A listed module whose computed import became literal makes its entry stale."""
    root = scratch_tree(tmp_path)
    target = root / "tornadose/cli/target.py"
    text = target.read_text()
    assert "importlib.import_module(module_name)" in text
    target.write_text(text.replace("import_module(module_name)", "import_module('json')"))
    problems = dynamic_import_problems(discover(root))
    assert problems == ["DYNAMIC_IMPORTS lists tornadose.cli.target, which has no computed import"]


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

#: Folders of the repository that hold no source of ours: the virtual environment, build
#: output, and every hidden folder (``.git``, tool caches).
_SKIP = {"build", "dist", "__pycache__", "node_modules"}
#: Folders whose every text file is read for module paths (Markdown files are read
#: wherever they are).
_DOCUMENTED = ("examples", "benchmarks", "docs")
_TOP_LEVEL = re.compile(
    r"^\s*(?:from\s+(adapters|schemas)[\s.]|import\s+(adapters|schemas)\b)", re.M
)
#: A module path under the folders used as top-level packages: ``adapters.asgi``,
#: ``schemas.errors.ErrorBody``, ``adapters.asgi:app`` (uvicorn's syntax), ``schemas:x``.
#: Not ``tornadose.adapters.asgi``, not a file path (``adapters/asgi.py``), not a file
#: name (``schemas.py``), not the word in prose (``the adapters.``, ``adapters: Tornado``).
_MODULE_PATH = re.compile(
    r"(?<![\w./\\-])(?:adapters|schemas)"
    r"(?:(?:\.(?!(?:py|pyi|md|txt|json|toml)\b)[A-Za-z_]\w*)+(?::[A-Za-z_][\w.]*)?"
    r"|:[A-Za-z_]\w*)"
)


def _ours(relative: Path) -> bool:
    return (
        _SKIP.isdisjoint(relative.parts)
        and not any(part.startswith(".") for part in relative.parts[:-1])
        and not relative.parts[0].endswith(".egg-info")
    )


def python_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*.py"):
        if _ours(path.relative_to(root)):
            yield path


def documents(root: Path) -> Iterator[Path]:
    """Every Markdown file, and every text file of :data:`_DOCUMENTED`."""
    found = set(root.rglob("*.md"))
    for folder in _DOCUMENTED:
        found.update(path for path in (root / folder).rglob("*") if path.is_file())
    for path in sorted(found):
        if _ours(path.relative_to(root)):
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


def top_level_module_paths(text: str) -> list[tuple[int, str]]:
    """Import statements and module paths naming ``adapters``/``schemas`` as top-level
    packages in a document, with their lines."""
    found = [(m.start(), m.group(0).strip()) for m in _TOP_LEVEL.finditer(text)]
    found += [(m.start(), m.group(0)) for m in _MODULE_PATH.finditer(text)]
    return sorted((text.count("\n", 0, start) + 1, what) for start, what in found)


def top_level_folder_problems(root: Path) -> list[str]:
    """Every top-level ``adapters``/``schemas`` import of a Python file under ``root``,
    and every such import or module path in its documents (:func:`documents`)."""
    problems: list[str] = []
    for path in python_files(root):
        for line, name in top_level_folder_imports(ast.parse(path.read_text(), str(path))):
            problems.append(f"{path.relative_to(root)}:{line}: {name}")
    for path in documents(root):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # an image or another binary file
        for line, what in top_level_module_paths(text):
            problems.append(f"{path.relative_to(root)}:{line}: {what}")
    return list(dict.fromkeys(problems))


def test_the_folder_scan_catches_a_top_level_import() -> None:
    """The scan below flags ``adapters``/``schemas`` imports and module paths, and leaves
    the mapped ones, file paths and prose."""
    tree = ast.parse(
        "import schemas\nfrom adapters.asgi import ChannelsApp\n"
        "from tornadose.schemas import Envelope\nimport tornadose.adapters.tornado\n"
    )
    assert top_level_folder_imports(tree) == [(1, "schemas"), (2, "adapters.asgi")]
    assert top_level_module_paths("x = 1\nfrom schemas import Envelope\n") == [(2, "from schemas")]
    flagged = (
        "uvicorn adapters.asgi:app --port 8000\n"
        '["uvicorn", "adapters.asgi:app"]\n'
        "see :mod:`schemas.errors` and `schemas:Envelope`\n"
    )
    assert top_level_module_paths(flagged) == [
        (1, "adapters.asgi:app"),
        (2, "adapters.asgi:app"),
        (3, "schemas.errors"),
        (3, "schemas:Envelope"),
    ]
    kept = (
        "from tornadose.schemas import Envelope\nuvicorn tornadose.adapters.asgi:app\n"
        "the folders adapters/ and schemas/ (adapters/asgi.py), a user's own schemas.py,\n"
        "two adapters: Tornado and ASGI. The schemas.\n"
    )
    assert top_level_module_paths(kept) == []


def test_nothing_imports_the_folders_as_top_level_packages() -> None:
    """Every Python file of the repository (package, tests, examples, benchmarks) imports
    ``tornadose.adapters``/``tornadose.schemas``, never the top-level ``adapters``/
    ``schemas`` that would only resolve from a checkout (and would pick up a user's own
    ``schemas.py``); no Markdown file nor file of ``examples/``, ``benchmarks/`` or
    ``docs/`` imports them or names a module under them (``uvicorn adapters.asgi:app``)."""
    problems = top_level_folder_problems(ROOT)
    assert not problems, "top-level adapters/schemas imports:\n" + "\n".join(problems)


def test_planted_top_level_module_paths(tmp_path: Path) -> None:
    """Module paths under the old top-level folders are found in the README, in
    ``examples/`` (strings and docstrings), in ``benchmarks/`` and in ``docs/``."""
    root = scratch_tree(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text() + "\nRun `uvicorn adapters.asgi:app`.\n")
    plant(root, "examples/planted.py", 'COMMAND = ["uvicorn", "schemas.errors:ErrorBody"]\n')
    plant(root, "benchmarks/planted.txt", "python -m adapters.tornado\n")
    plant(root, "docs/guide.md", "# Guide\n\nThe schemas live in schemas/; see schemas.envelope.\n")
    plant(root, "tornadose/core/planted.py", "from schemas import Envelope\n")
    problems = [p for p in top_level_folder_problems(root) if "planted" in p or "guide" in p]
    problems += [p for p in top_level_folder_problems(root) if p.startswith("README.md")]
    assert sorted(problems) == [
        f"README.md:{readme.read_text().count(chr(10))}: adapters.asgi:app",
        "benchmarks/planted.txt:1: adapters.tornado",
        "docs/guide.md:3: schemas.envelope",
        "examples/planted.py:1: schemas.errors:ErrorBody",
        "tornadose/core/planted.py:1: schemas",
    ]
