"""The engine package imports only the standard library and msgspec, and no clock or
randomness: it must stay deterministic and testable without any service."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nodes.engine

PACKAGE = Path(nodes.engine.__file__).parent
FORBIDDEN = {
    "time", "datetime", "random", "secrets", "uuid", "os", "socket", "threading",
    "asyncio", "subprocess", "django", "redis", "psycopg", "psycopg2", "celery",
    "archive", "controlplane",
}  # fmt: skip
ALLOWED_THIRD_PARTY = {"msgspec"}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                continue
            names.append(node.module or "")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.append("<dynamic __import__>")
    return names


def test_engine_imports_only_stdlib_and_msgspec():
    modules = sorted(PACKAGE.glob("*.py"))
    assert modules
    bad = []
    for path in modules:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if name.startswith("nodes.engine"):
                continue
            if top in FORBIDDEN or name == "<dynamic __import__>":
                bad.append(f"{path.name}: {name}")
            elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
                bad.append(f"{path.name}: {name} (not stdlib)")
    assert not bad, bad


def test_the_check_catches_forbidden_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom datetime import datetime\nfrom random import choice\n")
    assert imported_modules(sample) == ["time", "datetime", "random"]
