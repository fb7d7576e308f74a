"""The distribution as users get it: a wheel, installed (not editable) in a fresh virtual
environment with one documented extra.

Guarantees checked:

* ``pyproject.toml`` lists every package folder of the repository (a folder with an
  ``__init__.py`` under ``tornadose/``, ``adapters/`` or ``schemas/``), and no package
  without a folder;
* the wheel holds exactly one top-level import package, ``tornadose``, with every file
  of those folders at its installed place (``adapters/`` as ``tornadose/adapters/``,
  ``schemas/`` as ``tornadose/schemas/``, the demo page and ``py.typed`` included);
* installed with the ``demo`` extra, the distribution owns the one top-level name
  ``tornadose``, every module of it imports (except those needing an extra that is not
  installed, which fail naming that dependency), and the demo page is served, from the
  installed package, by ``tornadose demo``;
* installed with only the ``demo`` extra, both of the demo's servers (Tornado and
  uvicorn) accept WebSockets; installed with only the ``asgi`` extra, uvicorn serves
  ``WebSocketApp`` (the extra brings uvicorn a WebSocket implementation); every other
  extra installs alone, and with it the modules that need it import;
* from a working directory holding a user's own ``schemas.py`` and ``adapters/``
  package, the Tornado handlers, the ASGI apps, ``Channels`` (validated publishing, whose
  answers are tornadose's own ``schemas``) and ``tornadose serve`` import and serve,
  while ``import schemas`` and ``import adapters`` keep giving the user's modules.

The wheel is built from a copy of the working tree (so the build leaves nothing in the
checkout) with ``pip wheel``; pip needs PyPI (or its cache) for the build backend and the
extra's dependencies, as the README's install command does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import recv, sse_client
from tests.conftest import free_port, free_port_pair
from tests.programs import Program, StartProgram, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
#: The extra the fresh environment gets: both servers (the README's demo command).
EXTRA = "demo"
#: Each extra installed alone: the modules that must then import (beside the core). An
#: extra added to pyproject.toml needs its entry here (a test says so).
EXTRA_MODULES = {
    "tornado": ["tornadose.adapters.tornado", "tornadose.handlers"],
    "asgi": ["tornadose.adapters.asgi"],
    "fastapi": ["tornadose.adapters.fastapi"],
    "metrics": ["tornadose.http.metrics"],
    "redis": ["tornadose.backends.redis.store", "tornadose.stores"],
    "client": ["tornadose.client", "tornadose.client.sse", "tornadose.client.websocket"],
    "demo": ["tornadose.adapters.tornado", "tornadose.adapters.asgi", "tornadose.cli.demo"],
}
#: Extras that are not tested alone: the development environment.
NOT_ALONE = {"dev"}
#: What the build does not need from the working tree.
_NOT_BUILT = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "__pycache__", "*.egg-info", "*.pyc", "artifacts", ".*cache"
)
#: Seconds any one pip run may take (a cold cache downloads the dependencies).
PIP_TIMEOUT = 240

#: Whichever test runs first builds the wheel and the venv (two pip runs) in its time.
pytestmark = pytest.mark.timeout(2 * PIP_TIMEOUT + 60)


def declared_extras(root: Path = ROOT) -> dict[str, list[str]]:
    """The extras ``pyproject.toml`` declares, with their requirement strings."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = config["project"]["optional-dependencies"]
    return extras


def brings(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The top-level import names of what ``extra`` requires directly (``tornadose[x]``
    expanded to extra ``x``'s), by the usual spelling (``prometheus-client`` ->
    ``prometheus_client``)."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name, requirement
        if name.group() == "tornadose":
            inner = re.search(r"\[([^\]]*)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                names |= brings(other.strip(), extras)
        else:
            names.add(name.group().lower().replace("-", "_"))
    return names


def not_installed(extra: str = EXTRA) -> set[str]:
    """What the other extras bring and ``extra`` does not (top-level import names): a
    module needing one of them may fail to import, with ModuleNotFoundError naming it."""
    extras = declared_extras()
    every = set().union(*(brings(name, extras) for name in set(extras) - NOT_ALONE))
    return every - brings(extra, extras)


def clean_env() -> dict[str, str]:
    """The environment for programs of the fresh venv: nothing pointing at the checkout."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Import package -> folder of the tree at ``root``, as its ``pyproject.toml`` maps them."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


def repository_packages(root: Path = ROOT) -> dict[str, Path]:
    """Every package folder of the repository under its installed name: each folder with
    an ``__init__.py`` reachable from a mapped folder through folders that have one."""
    roots = package_dirs(root)
    found: dict[str, Path] = {}
    for package, folder in roots.items():
        for init in sorted(folder.rglob("__init__.py")):
            relative = init.parent.relative_to(folder)
            chain = [folder / Path(*relative.parts[:i]) for i in range(len(relative.parts) + 1)]
            if not all((link / "__init__.py").is_file() for link in chain):
                continue
            name = ".".join([package, *relative.parts])
            if mapped_elsewhere(name, package, roots):
                continue
            found[name] = init.parent
    return found


def mapped_elsewhere(name: str, package: str, roots: dict[str, Path]) -> bool:
    """Whether ``name``, found under ``package``'s folder, is a package that pyproject maps
    from a folder of its own (the repository has no ``tornadose/adapters/``, but if it
    had, ``adapters/`` would be the one installed)."""
    return any(
        len(other) > len(package) and (name == other or name.startswith(other + "."))
        for other in roots
    )


def installed_files(root: Path = ROOT) -> dict[str, Path]:
    """Every file of the mapped folders of the tree at ``root`` (bytecode aside) -> its
    path inside the wheel."""
    roots = package_dirs(root)
    files: dict[str, Path] = {}
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
                continue
            if mapped_elsewhere(".".join([package, *relative.parent.parts]), package, roots):
                continue
            files["/".join([*package.split("."), *relative.parts])] = path
    return files


def test_pyproject_lists_every_package_folder() -> None:
    """Every package folder (``__init__.py``) under the mapped folders is in pyproject's
    package list, and every listed package has its folder: a subpackage added without
    listing it would be left out of the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set(repository_packages())
    assert {"tornadose", "tornadose.adapters", "tornadose.schemas", "tornadose.wire"} <= found
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "listed packages without a folder"


# -- the wheel ------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """A wheel and the copy of the working tree it was built from (the tree may change
    while the tests run: other files are compared with this copy)."""

    wheel: Path
    source: Path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The wheel, built from a copy of the working tree."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_BUILT)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(source)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = work.glob("tornadose-*.whl")
    return Build(wheel, source)


def test_the_wheel_holds_one_top_level_package_with_every_file(build: Build) -> None:
    """The wheel's top level is ``tornadose/`` and its ``.dist-info`` only, and every file
    of the mapped folders is in it, at its installed path, byte for byte."""
    with zipfile.ZipFile(build.wheel) as archive:
        names = set(archive.namelist())
        tops = {name.split("/")[0] for name in names}
        dist_info = {top for top in tops if top.endswith(".dist-info")}
        assert len(dist_info) == 1
        assert tops - dist_info == {"tornadose"}, tops
        (info,) = dist_info
        if f"{info}/top_level.txt" in names:
            assert archive.read(f"{info}/top_level.txt").decode().split() == ["tornadose"]
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"Provides-Extra: {EXTRA}" in metadata
        expected = installed_files(build.source)
        assert "tornadose/static/demo.html" in expected
        assert "tornadose/adapters/tornado/__init__.py" in expected
        assert "tornadose/schemas/__init__.py" in expected
        missing = sorted(set(expected) - names)
        assert not missing, f"files of the repository missing from the wheel: {missing}"
        changed = [
            name for name, path in expected.items() if archive.read(name) != path.read_bytes()
        ]
        assert not changed, changed
        for package in repository_packages(build.source):
            assert "/".join(package.split(".")) + "/__init__.py" in names, package
        extra = sorted(
            name
            for name in names - set(expected)
            if not name.startswith(info + "/") and not name.endswith("/")
        )
        assert not extra, f"files in the wheel that are not in the repository: {extra}"


# -- the fresh environment ------------------------------------------------------------


def fresh_venv(build: Build, extra: str, parent: Path) -> Path:
    """A fresh virtual environment under ``parent`` with the wheel and only its ``extra``
    installed (not editable); returns its ``bin`` folder."""
    root = parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    result = subprocess.run(
        [
            str(root / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{build.wheel}[{extra}]",
        ],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "bin"


#: ``venv_with(extra)``: the ``bin`` folder of a fresh venv with only that extra.
VenvWith = Callable[[str], Path]


@pytest.fixture(scope="module")
def venv_with(build: Build, tmp_path_factory: pytest.TempPathFactory) -> VenvWith:
    """``venv_with(extra)``: a fresh virtual environment with the wheel and only that
    extra, made once per extra for the whole module; returns its ``bin`` folder."""
    made: dict[str, Path] = {}

    def get(extra: str) -> Path:
        if extra not in made:
            made[extra] = fresh_venv(build, extra, tmp_path_factory.mktemp(f"only-{extra}"))
        return made[extra]

    return get


@pytest.fixture(scope="module")
def venv(venv_with: VenvWith) -> Path:
    """A fresh virtual environment with the wheel and its ``demo`` extra installed
    (not editable); returns its ``bin`` folder."""
    return venv_with(EXTRA)


#: A user's project: its own ``schemas.py`` and ``adapters/``, and an app that imports
#: both before and after tornadose, serving one store and one channel on Tornado and
#: uvicorn (``python app.py``) or through ``tornadose serve app:channels``.
USER_SCHEMAS = '''\
"""The user's own schemas module (not tornadose's)."""
from pydantic import BaseModel

MARK = "the user's schemas"


class Greeting(BaseModel):
    text: str
'''

USER_ADAPTERS = 'MARK = "the user\'s adapters"\n'

USER_APP = '''\
"""The user's app: tornadose beside the user's own schemas.py and adapters/."""
import asyncio
import json
import socket
import sys

import adapters
import schemas

assert schemas.MARK == "the user's schemas", schemas.__file__
assert adapters.MARK == "the user's adapters", adapters.__file__

import tornadose.schemas
from tornadose import Channels
from tornadose.adapters.asgi import ChannelsApp, EventSourceApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.handlers import EventSource
from tornadose.stores import DataStore

import adapters as adapters_after
import schemas as schemas_after

assert schemas_after is schemas and adapters_after is adapters

store = DataStore({"from": schemas.MARK})
channels = Channels()
channels.add("greetings", schema=schemas.Greeting)


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def main() -> None:
    import tornado.web
    import uvicorn
    from tornado.httpserver import HTTPServer

    events, channel_app = EventSourceApp(store), ChannelsApp(channels)

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/events":
            return await events(scope, receive, send)
        return await channel_app(scope, receive, send)

    tornado_sock, uvicorn_sock = listening(), listening()
    rules = [(r"/events", EventSource, {"store": store}), *channel_handlers(channels)]
    tornado_server = HTTPServer(tornado.web.Application(rules))
    tornado_server.add_sockets([tornado_sock])
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[uvicorn_sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    report = {
        "tornado": tornado_sock.getsockname()[1],
        "uvicorn": uvicorn_sock.getsockname()[1],
        "schemas": sys.modules["schemas"].__file__,
        "adapters": sys.modules["adapters"].__file__,
        "tornadose": sys.modules["tornadose"].__file__,
        "tornadose.schemas": tornadose.schemas.__file__,
    }
    print(json.dumps(report), flush=True)
    await serving
    tornado_server.stop()


if __name__ == "__main__":
    asyncio.run(main())
'''

#: Run by the fresh venv's python from the user's project: what is installed and whether
#: every module imports.
INSPECT = """\
import hashlib, importlib, importlib.metadata, importlib.resources, importlib.util, json
import pathlib, sys

import adapters, schemas

dist = importlib.metadata.distribution("tornadose")
tops = sorted({
    str(f).split("/")[0] for f in dist.files or ()
    if not str(f).startswith("..") and ".dist-info" not in str(f).split("/")[0]
})
owners = sorted(
    name for name, dists in importlib.metadata.packages_distributions().items()
    if "tornadose" in dists
)
import tornadose

# Every module by its dotted name, from the .py files of the installed package: a walk
# (pkgutil) would not enter a package whose __init__ fails, and miss its submodules.
package = pathlib.Path(tornadose.__file__).parent
names = sorted(
    ".".join(("tornadose", *path.relative_to(package).with_suffix("").parts))
    .removesuffix(".__init__")
    for path in package.rglob("*.py")
    if path.name != "__main__.py"
)
imported, failed, broken = [], {}, {}
for name in names:
    try:
        importlib.import_module(name)
        imported.append(name)
    except ModuleNotFoundError as error:
        top = (error.name or "").split(".")[0]
        failed[name] = [error.name or "", bool(top) and importlib.util.find_spec(top) is None]
    except Exception as error:
        broken[name] = repr(error)
page = importlib.resources.files("tornadose").joinpath("static", "demo.html").read_bytes()
print(json.dumps({
    "tops": tops,
    "owners": owners,
    "tornadose": tornadose.__file__,
    "imported": imported,
    "failed": failed,
    "broken": broken,
    "page": hashlib.sha256(page).hexdigest(),
    "schemas": [schemas.__file__, getattr(schemas, "MARK", None),
                sys.modules["schemas"] is schemas],
    "adapters": [adapters.__file__, getattr(adapters, "MARK", None)],
    "version": tornadose.__version__,
}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder with its own ``schemas.py``, ``adapters/`` and ``app.py``."""
    folder = tmp_path / "project"
    (folder / "adapters").mkdir(parents=True)
    (folder / "schemas.py").write_text(USER_SCHEMAS)
    (folder / "adapters" / "__init__.py").write_text(USER_ADAPTERS)
    (folder / "app.py").write_text(USER_APP)
    return folder


def wheel_version(venv: Path) -> str:
    """The version the installed distribution's metadata declares."""
    (info,) = site_packages(venv).glob("tornadose-*.dist-info")
    return info.name.removeprefix("tornadose-").removesuffix(".dist-info")


def site_packages(venv: Path) -> Path:
    (found,) = (venv.parent / "lib").glob("python3*/site-packages")
    return found


def inspect_install(bin_folder: Path, project: Path) -> dict[str, Any]:
    """What :data:`INSPECT` reports, run by the venv's python from ``project``."""
    result = subprocess.run(
        [str(bin_folder / "python"), "-c", INSPECT],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_installed_distribution_is_one_package_and_every_module_imports(
    build: Build, venv: Path, project: Path
) -> None:
    """In the fresh venv, run from the user's project: ``tornadose`` is the one top-level
    name the distribution installs (no ``adapters``, no ``schemas`` in site-packages),
    the package is the installed one, every module (each ``.py`` file of the installed
    package, imported by its dotted name) imports or fails with ModuleNotFoundError
    naming a dependency of an extra not installed (a submodule of a package needing one
    needs it too), the demo page is in the package, and the user's
    ``schemas``/``adapters`` are still the user's after all that."""
    report = inspect_install(venv, project)
    site = site_packages(venv)
    assert report["tops"] == ["tornadose"]
    assert report["owners"] == ["tornadose"]
    for name in ("adapters", "schemas", "schemas.py", "adapters.py"):
        assert not (site / name).exists(), name
    assert Path(report["tornadose"]).is_relative_to(site)
    assert report["schemas"] == [str(project / "schemas.py"), "the user's schemas", True]
    assert report["adapters"] == [str(project / "adapters" / "__init__.py"), "the user's adapters"]
    page = (build.source / "tornadose" / "static" / "demo.html").read_bytes()
    assert report["page"] == hashlib.sha256(page).hexdigest()
    assert report["version"] == wheel_version(venv)

    installed = {
        ".".join(Path(name).with_suffix("").parts).removesuffix(".__init__")
        for name in installed_files(build.source)
        if name.endswith(".py") and not name.endswith("__main__.py")
    }
    assert set(report["imported"]) | set(report["failed"]) | set(report["broken"]) == installed
    assert not report["broken"], f"modules failing to import: {report['broken']}"
    wrong = {
        module: missing
        for module, (missing, absent) in report["failed"].items()
        if missing.split(".")[0] not in not_installed() or not absent
    }
    assert not wrong, f"modules failing to import for another reason than a missing extra: {wrong}"
    for layer in ("wire", "core", "delivery", "http", "adapters", "schemas", "cli"):
        assert f"tornadose.{layer}" in report["imported"], layer


async def test_demo_serves_the_page_of_the_installed_package(
    build: Build, venv: Path, project: Path, start_program: StartProgram
) -> None:
    """``tornadose demo`` from the fresh venv (run in the user's project) serves the demo
    page from both its servers, byte for byte the repository's ``static/demo.html``."""
    port = free_port_pair()
    demo = start_program(
        [str(venv / "tornadose"), "demo", "--host", "127.0.0.1", "--port", str(port)], project
    )
    await wait_for_port(demo, port)
    await wait_for_port(demo, port + 1)
    page = (build.source / "tornadose" / "static" / "demo.html").read_bytes()
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        for server in (port, port + 1):
            answer = await client.get(f"http://127.0.0.1:{server}/")
            assert answer.status_code == 200, demo.describe()
            assert answer.headers["content-type"].startswith("text/html")
            assert answer.content == page


async def started_report(program: Program, timeout: float = 20.0) -> dict[str, Any]:
    """The JSON line the user's app prints once both servers listen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not program.stdout_text().strip():
        if program.proc.poll() is not None or loop.time() > deadline:
            pytest.fail(f"the app did not start\n{program.describe()}")
        await asyncio.sleep(0.05)
    report: dict[str, Any] = json.loads(program.stdout_text().splitlines()[0])
    return report


async def first_data(url: str) -> str:
    """The data of the first event of the SSE stream at ``url``."""
    async with sse_client(url) as (_source, events):
        event = await asyncio.wait_for(anext(events), 5)
        return event.data


async def test_handlers_and_apps_serve_beside_a_users_schemas_and_adapters(
    venv: Path, project: Path, start_program: StartProgram
) -> None:
    """The user's app, run by the fresh venv in the project folder, imports the Tornado
    handlers, the ASGI apps and ``Channels`` next to its own ``schemas``/``adapters`` and
    serves them: a DataStore's value over SSE from both servers, a validated publish on
    Tornado (tornadose's ``PublishAccepted``/``ErrorBody``) delivered over SSE from uvicorn."""
    app = start_program([str(venv / "python"), "app.py"], project)
    report = await started_report(app)
    site = site_packages(venv)
    assert report["schemas"] == str(project / "schemas.py")
    assert report["adapters"] == str(project / "adapters" / "__init__.py")
    assert Path(report["tornadose"]).is_relative_to(site)
    assert Path(report["tornadose.schemas"]) == site / "tornadose" / "schemas" / "__init__.py"
    tornado = f"http://127.0.0.1:{report['tornado']}"
    uvicorn = f"http://127.0.0.1:{report['uvicorn']}"
    for base in (tornado, uvicorn):
        assert json.loads(await first_data(base + "/events")) == {"from": "the user's schemas"}

    async with (
        httpx.AsyncClient(timeout=5, trust_env=False) as client,
        sse_client(uvicorn + "/greetings/events") as (_source, events),
    ):
        refused = await client.post(tornado + "/greetings/publish", json={"text": 1})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        accepted = await client.post(tornado + "/greetings/publish", json={"text": "hello"})
        assert accepted.status_code == 202, accepted.text
        event = await asyncio.wait_for(anext(events), 5)
        assert json.loads(event.data) == {"text": "hello"}
        assert event.id == accepted.json()["id"]


@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
async def test_tornadose_serve_keeps_the_users_schemas(
    venv: Path, project: Path, start_program: StartProgram, server: str
) -> None:
    """``tornadose serve app:channels`` from the project folder imports the user's app,
    whose ``import schemas`` gets the user's module (app.py asserts it), and serves the
    channel declared with the user's model."""
    port = free_port()
    served = start_program(
        [str(venv / "tornadose"), "serve", "app:channels", "--server", server, "--port", str(port)],
        project,
    )
    await wait_for_port(served, port)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        schema = await client.get(base + "/greetings/schema.json")
        assert schema.status_code == 200, served.describe()
        assert schema.json()["title"] == "Greeting"
        assert set(schema.json()["properties"]) == {"text"}
        async with sse_client(base + "/greetings/events") as (_source, events):
            accepted = await client.post(base + "/greetings/publish", json={"text": "hi"})
            assert accepted.status_code == 202, accepted.text
            event = await asyncio.wait_for(anext(events), 5)
            assert json.loads(event.data) == {"text": "hi"}


# -- every extra alone ----------------------------------------------------------------


def ws_connect(url: str) -> Any:
    """A ``websockets`` client connection to ``url``, never through a proxy."""
    from websockets.asyncio.client import connect

    return connect(url, proxy=None, open_timeout=5, close_timeout=5)


async def test_demo_extra_alone_opens_websockets_on_both_servers(
    venv: Path, project: Path, start_program: StartProgram
) -> None:
    """With only the ``demo`` extra (the README's install command), ``tornadose demo``
    accepts a WebSocket on both servers, Tornado's and uvicorn's, and each delivers the
    sensor readings (uvicorn without a WebSocket library answers the handshake 400)."""
    port = free_port_pair()
    demo = start_program(
        [str(venv / "tornadose"), "demo", "--host", "127.0.0.1", "--port", str(port)], project
    )
    await wait_for_port(demo, port)
    await wait_for_port(demo, port + 1)
    for server in (port, port + 1):
        async with ws_connect(f"ws://127.0.0.1:{server}/sensor/ws") as ws:
            envelope = await recv(ws)
            assert envelope.id, (server, envelope)
            assert set(envelope.data) == {"seq", "value"}, (server, envelope)
    assert "No supported WebSocket library" not in demo.stderr_text(), demo.describe()


#: Served by a venv with only the ``asgi`` extra: the README's Starlette app.
ASGI_ONLY_APP = """\
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from tornadose.adapters.asgi import EventSourceApp, PublishApp, WebSocketApp
from tornadose.stores import QueueStore

store = QueueStore()
app = Starlette(
    routes=[
        Route("/events", EventSourceApp(store)),
        WebSocketRoute("/ws", WebSocketApp(store)),
        Route("/publish", PublishApp(store)),
    ]
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


async def test_asgi_extra_alone_serves_websocket_app_under_uvicorn(
    venv_with: VenvWith, tmp_path: Path, start_program: StartProgram
) -> None:
    """With only the ``asgi`` extra (no Tornado, no client), ``WebSocketApp`` under
    ``uvicorn.run`` with its defaults accepts a WebSocket and delivers a message
    published over HTTP, with the id the publish answered."""
    bin_folder = venv_with("asgi")
    (tmp_path / "asgi_only.py").write_text(ASGI_ONLY_APP)
    port = free_port()
    served = start_program([str(bin_folder / "python"), "asgi_only.py", str(port)], tmp_path)
    await wait_for_port(served, port)
    base = f"127.0.0.1:{port}"
    async with (
        httpx.AsyncClient(timeout=5, trust_env=False) as client,
        ws_connect(f"ws://{base}/ws") as ws,
    ):
        # The handshake is done; the subscription registers just after it: publish
        # until the socket gets a message, which must be one of those published.
        published: list[str] = []
        async with asyncio.timeout(5):
            while True:
                answer = await client.post(f"http://{base}/publish", json={"n": len(published)})
                assert answer.status_code == 202, answer.text
                published.append(answer.json()["id"])
                try:
                    envelope = await asyncio.wait_for(recv(ws), 0.2)
                    break
                except TimeoutError:
                    continue
        assert envelope.id in published, (envelope, published)
        assert envelope.data == {"n": published.index(envelope.id)}
    assert "No supported WebSocket library" not in served.stderr_text(), served.describe()


#: Prints which of the top-level packages named by its arguments are installed.
FIND_SPECS = (
    "import importlib.util, json, sys; "
    "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"
)


def test_every_extra_is_tested_alone() -> None:
    """Every extra pyproject declares (but ``dev``) says which modules it enables, so
    that the next test installs it alone and imports them."""
    missing = set(declared_extras()) - NOT_ALONE - set(EXTRA_MODULES)
    assert not missing, f"add these extras to EXTRA_MODULES: {sorted(missing)}"


@pytest.mark.parametrize("extra", sorted(set(declared_extras()) - NOT_ALONE))
def test_each_extra_installs_alone_and_its_modules_import(
    venv_with: VenvWith, project: Path, extra: str
) -> None:
    """``pip install 'tornadose[<extra>]'`` alone succeeds and brings what the extra
    lists, the modules that need that extra import, and every module that does not
    import names, in failing, a package that is not installed and that another extra
    brings (never one this extra should have brought, never one no extra brings)."""
    if extra not in EXTRA_MODULES:
        pytest.fail(f"extra {extra!r}: add the modules it enables to EXTRA_MODULES")
    extras = declared_extras()
    bin_folder = venv_with(extra)
    report = inspect_install(bin_folder, project)
    for module in EXTRA_MODULES[extra]:
        assert module in report["imported"], (module, report["failed"].get(module))
    provided = brings(extra, extras)
    every = set().union(*(brings(name, extras) for name in set(extras) - NOT_ALONE))
    present = subprocess.run(
        [str(bin_folder / "python"), "-c", FIND_SPECS, *sorted(every)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert present.returncode == 0, present.stderr
    assert provided <= set(json.loads(present.stdout))
    assert not report["broken"], f"modules failing to import: {report['broken']}"
    for module, (missing, absent) in report["failed"].items():
        top = missing.split(".")[0]
        assert absent, (module, missing)
        assert top not in provided, f"{module} needs {missing}, which [{extra}] should bring"
        assert top in every, f"{module} needs {missing}, which no extra brings"
