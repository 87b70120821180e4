"""The import contract: each layer imports only the layers below it (README, "Where things live").

Read from the source (every import statement, at the top or inside a function), not
from what happens to be loaded, so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module belongs to the layer of its longest matching prefix; a module
# may import its own layer and the layers before it, never one after it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("engine and pure decisions", ("nodes.engine", "nodes.protocol", "base")),
    ("wire protocol and client", ("wire",)),
    ("archive", ("archive",)),
    ("node runtime", ("nodes",)),
    ("development launchers", ("dev",)),
    ("control plane", ("controlplane",)),
]
PACKAGES = ("base", "wire", "archive", "nodes", "dev", "controlplane")

# The control plane talks to nodes over Redis and HTTP; it uses the engine's types and the
# pure decisions, never the node runtime's code.
CONTROL_PLANE_MAY_USE_OF_NODES = ("nodes.engine", "nodes.protocol")
# Launchers are for development and tests: only these entry points of the control plane
# (the drill, the topology, their management commands) start processes with them.
DEV_ENTRY_POINTS = ("controlplane.drill", "controlplane.topology", "controlplane.clusters.management.commands")
# Below the control plane nothing loads Django: a node host needs no Django settings.
NO_DJANGO = ("base", "wire", "archive", "nodes", "dev")


def modules(root: Path, packages: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def imports(name: str, path: Path, known: set[str], typing_too: bool = True) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file; `from a import b` names a.b when that
    is a module of ours, else a. `typing_too=False` leaves out the imports under
    `if TYPE_CHECKING:` (annotations only: they make no loop at run time)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(inner) for part in node.body for inner in ast.walk(part))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield node.lineno, sub if sub in known else module


def layer_of(module: str) -> int | None:
    best, index = -1, None
    for number, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), number
    return index


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def violations(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    found = dict(modules(root, packages))
    known = set(found)
    bad = []
    for name, path in found.items():
        mine = layer_of(name)
        for line, imported in sorted(set(imports(name, path, known))):
            where = f"{path.relative_to(root)}:{line} {name} imports {imported}"
            theirs = layer_of(imported)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{where}: {LAYERS[mine][0]} must not import {LAYERS[theirs][0]}")
            if (
                within(name, ("controlplane",))
                and within(imported, ("nodes",))
                and not within(imported, CONTROL_PLANE_MAY_USE_OF_NODES)
            ):
                bad.append(f"{where}: the control plane must not import the node runtime")
            if within(imported, ("dev",)) and not within(name, ("dev", *DEV_ENTRY_POINTS)):
                bad.append(f"{where}: only development entry points may import the launchers")
            if within(imported, ("django", "rest_framework")) and within(name, NO_DJANGO):
                bad.append(f"{where}: nothing below the control plane loads Django")
    return bad


def test_each_layer_imports_only_the_layers_below_it():
    assert len(dict(modules(ROOT, PACKAGES))) > 100  # the walk found the project
    assert violations(ROOT) == []


def cycles(root: Path, packages: tuple[str, ...]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan)."""
    found = dict(modules(root, packages))
    graph = {
        n: {m for _, m in imports(n, p, set(found), typing_too=False) if m in found and m != n}
        for n, p in found.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return groups


def test_no_module_below_the_control_plane_imports_itself_round_a_loop():
    """A loop (nodes/tasks.py and nodes/worker.py importing each other) means neither can
    be read, tested or moved alone."""
    assert cycles(ROOT, ("base", "wire", "archive", "nodes", "dev")) == []


def test_the_cycle_check_finds_a_loop(tmp_path):
    write(tmp_path, {"nodes/__init__.py": "", "nodes/a.py": "from nodes import b\n",
                     "nodes/b.py": "def f():\n    import nodes.c\n", "nodes/c.py": "from . import a\n",
                     "nodes/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nodes import e\n",
                     "nodes/e.py": "from nodes import d\n"})  # fmt: skip
    # a, b and c import each other round a loop; d imports e for its annotations only
    assert cycles(tmp_path, ("nodes",)) == [["nodes.a", "nodes.b", "nodes.c"]]


def test_importing_the_engine_does_not_load_the_node_runtime():
    """nodes/engine and nodes/protocol sit in the nodes folder: its __init__ imports nothing."""
    tree = ast.parse((ROOT / "nodes" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_contract_catches_an_upward_import(tmp_path):
    """A synthetic tree with the real layer names: a clean one passes, and every kind of
    upward import (absolute, from-import, relative, lazy inside a function) is caught."""
    clean = {
        "nodes/__init__.py": "",
        "nodes/engine/__init__.py": "",
        "nodes/engine/book.py": "import msgspec\n",
        "wire/__init__.py": "from nodes.engine import book\n",
        "archive/__init__.py": "import wire\n",
        "nodes/loop.py": "from archive import x\nfrom . import engine\n",
        "controlplane/__init__.py": "import django\nfrom nodes.engine import book\n",
    }
    write(tmp_path, clean)
    assert violations(tmp_path) == []

    write(tmp_path, {
        "wire/client.py": "import archive\n",
        "archive/store.py": "def later():\n    from nodes import loop\n",
        "nodes/engine/match.py": "from .. import loop\n",
        "nodes/worker.py": "from controlplane import celery\n",
    })  # fmt: skip
    found = violations(tmp_path)
    assert len(found) == 4, found
    assert any("wire.client imports archive: wire protocol and client must not import archive" in v for v in found)
    assert any("archive.store imports nodes.loop" in v for v in found)
    assert any("nodes.engine.match imports nodes.loop" in v for v in found)
    assert any("nodes.worker imports controlplane" in v for v in found)


def test_the_contract_catches_the_other_rules(tmp_path):
    write(tmp_path, {
        "nodes/__init__.py": "",
        "nodes/peer.py": "",
        "nodes/config.py": "import django.conf\n",
        "dev/__init__.py": "",
        "dev/local.py": "",
        "controlplane/__init__.py": "",
        "controlplane/views.py": "from nodes import peer\nfrom dev import local\n",
        "controlplane/drill/run.py": "from dev.local import x\n",
    })  # fmt: skip
    found = violations(tmp_path)
    assert sorted(v.split(": ", 1)[1] for v in found) == [
        "nothing below the control plane loads Django",
        "only development entry points may import the launchers",
        "the control plane must not import the node runtime",
    ], found


def test_a_node_process_loads_no_django_even_when_its_environment_names_the_settings():
    code = (
        "import sys, nodes.worker, nodes.runtime\n"
        "nodes.worker.app.loader.init_worker()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('django.conf', 'controlplane'))))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
