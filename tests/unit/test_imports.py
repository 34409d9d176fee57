"""Imports point down: the layers below, read from the source with ``ast``, and no cycles.

Layers, bottom to top (a module may import its own layer or any layer below it, never above):

0. ``drivers``: the driver interfaces, the fake driver, and ``drivers.docker``, the only
   importer of docker-py (and of requests, which comes with it). Never imports ``fnagent``.
1. fnagent leaves: errors, bounds, env parsing, config, models, ids, units, clock, ... (no I/O),
   and ``fnagent.client``, the API's HTTP client (standard library only)
2. ``fnagent.store``, and ``fnagent.testing`` (test doubles and conformance cases: only tests
   import it)
3. ``fnagent.agent``: the package that turns calls into containers (and the one-off run)
4. ``fnagent.server``
5. the command line: the ``fnagent.cli`` package, the commands and their bodies (top)

Every import counts, including those inside functions (which hide cycles from Python) and
under ``if TYPE_CHECKING:``, which never run: they are excluded from the cycle check only, since
annotations may name a type from a layer's neighbour without loading it, but still must not
point up. A module this map does not place fails the test: place it when you add it.

A further test imports the configuration, the store and the models in a fresh interpreter and
checks that neither docker-py nor requests was loaded (about 160 ms of imports).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("drivers", "fnagent")

# Most specific prefix wins: "fnagent.server" places fnagent.server and fnagent.server.*.
LAYERS: dict[str, int] = {
    "drivers": 0,
    # fnagent leaves
    "fnagent": 1,
    "fnagent.errors": 1,
    "fnagent.bounds": 1,
    "fnagent.env": 1,
    "fnagent.config": 1,
    "fnagent.models": 1,
    "fnagent.ids": 1,
    "fnagent.units": 1,
    "fnagent.clock": 1,
    # the HTTP client of the API: standard library only, usable without the CLI
    "fnagent.client": 1,
    "fnagent.keepalive": 1,
    # syslog: the pure rules (URLs, messages) are a leaf the store validates with; the
    # forwarder, which does the I/O, sits on the agent's floor (it takes the agent's lines)
    "fnagent.syslog": 1,
    "fnagent.syslog.forwarder": 3,
    # sealing secret values under the key file (cryptography's AEAD)
    "fnagent.secretbox": 1,
    # the store
    "fnagent.store": 2,
    # test doubles and conformance cases (on the store's floor: they use drivers and the
    # store; nothing but tests imports them, checked below)
    "fnagent.testing": 2,
    # the agent
    "fnagent.agent": 3,
    # call records: built from the agent's results, written to the store
    "fnagent.records": 3,
    # the server
    "fnagent.server": 4,
    # the command line
    "fnagent.cli": 5,
    "fnagent.__main__": 5,
}
LAYER_NAMES = ["drivers", "fnagent leaves", "store", "agent", "server", "cli"]
# Third-party packages only one place may import.
CONFINED = {
    "docker": "drivers.docker",
    "requests": "drivers.docker",
    "pytest": "fnagent.testing",
    # The PostgreSQL driver: a SQLite-only agent never loads it.
    "psycopg": "fnagent.store.postgres",
    "psycopg_pool": "fnagent.store.postgres",
    "fnagent.testing": "fnagent.testing",
}


def module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported name, line, under TYPE_CHECKING) for every import anywhere in the file.
    ``from a import b`` names ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                typing_only.update(id(sub) for sub in ast.walk(child))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        guarded = id(node) in typing_only
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, guarded) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                name = f"{source}.{alias.name}"
                found.append((name if name in known else source, node.lineno, guarded))
    return found


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS and (prefix != "fnagent" or module == "fnagent"):
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer: place it in LAYERS ({__file__})")


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    files = module_files()
    known = set(files)
    return {module: imports_of(module, path, known) for module, path in files.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in module_files():
        try:
            layer_of(module)
        except AssertionError:
            unplaced.append(module)
    assert not unplaced, f"modules without a layer in LAYERS: {unplaced}"


def test_imports_point_down() -> None:
    upward = []
    for module, imports in graph().items():
        for name, line, _ in imports:
            top = name.split(".")[0]
            for confined, owner in CONFINED.items():
                if (name == confined or name.startswith(confined + ".")) and not module.startswith(
                    owner
                ):
                    upward.append(f"{module}:{line} imports {name} (only {owner} may)")
            if top not in PACKAGES:
                continue
            if module.startswith("drivers") and top == "fnagent":
                upward.append(f"{module}:{line} imports {name}: drivers never import fnagent")
            elif layer_of(name) > layer_of(module):
                upward.append(
                    f"{module}:{line} ({LAYER_NAMES[layer_of(module)]}) imports {name}"
                    f" ({LAYER_NAMES[layer_of(name)]})"
                )
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_fnagent_takes_its_errors_from_fnagent_errors() -> None:
    """One place to look: drivers.errors is re-exported by fnagent.errors, the only fnagent
    module that imports it."""
    strays = [
        f"{module}:{line}"
        for module, imports in graph().items()
        if module.startswith("fnagent") and module != "fnagent.errors"
        for name, line, _ in imports
        if name == "drivers.errors"
    ]
    assert not strays, f"import these errors from fnagent.errors: {strays}"


def test_no_import_cycles() -> None:
    """Depth-first search over every import that runs (function-level ones included)."""
    edges = {
        module: sorted({name for name, _, guarded in imports if not guarded and name != module})
        for module, imports in graph().items()
    }
    # A package's __init__ runs before its submodules, so a submodule importing its own
    # package (or the package re-exporting it) is not a cycle between concepts: skip those.
    for module, targets in edges.items():
        edges[module] = [
            t
            for t in targets
            if t in edges and not module.startswith(t + ".") and not t.startswith(module + ".")
        ]
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in edges[module]:
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_config_store_and_models_do_not_load_docker_py_or_psycopg() -> None:
    code = (
        "import sys\n"
        "import fnagent.config, fnagent.store, fnagent.models, fnagent.errors\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[0] in ('docker', 'requests', 'psycopg', 'psycopg_pool'))\n"
        "print(' '.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded: {result.stdout.strip()}"
