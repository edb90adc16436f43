"""The import contract of ARCHITECTURE.md, checked on every test run (and by lint-imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import keybroker

PACKAGE = Path(keybroker.__file__).parent

# Layer of each top-level module or package; a module may import only layers <= its own,
# and siblings on one layer only where the table allows it.
LAYER = {
    "errors": 0,
    "secret": 0,
    "clock": 0,
    "settings": 0,
    "model": 1,
    "crypto": 2,
    "vault": 3,
    "exchanges": 3,
    "policy": 4,
    "audit": 4,
    "ratelimit": 4,
    "openbao": 4,
    "paper": 5,
    "client": 5,
    "dashboard": 5,
    "gateway": 6,
    "emulator": 6,
    "cli": 7,
    "doctor": 7,
}
# Siblings that must not import each other.
INDEPENDENT = [
    {"vault", "exchanges"},
    {"policy", "audit", "ratelimit", "openbao"},
    {"errors", "secret"},
]
# The emulator verifies signatures with its own code, never the signers'.
EMULATOR_MAY_IMPORT = {"errors", "secret", "clock", "settings", "model", "emulator"}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "keybroker" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # upward imports for typing only are allowed
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        if own not in LAYER:
            continue
        for module, line in _imports(path):
            other = _top(module)
            if other is None or other == own:
                continue
            where = f"{rel}:{line} imports keybroker.{other}"
            if other not in LAYER:
                problems.append(f"{where}, which has no layer")
            elif LAYER[other] > LAYER[own]:
                problems.append(f"{where}, a higher layer")
            elif any({own, other} <= group for group in INDEPENDENT):
                problems.append(f"{where}, a sibling it must not import")
            elif own == "emulator" and other not in EMULATOR_MAY_IMPORT:
                problems.append(f"{where}: the emulator must verify with its own code")
    return problems


def test_every_top_level_module_has_a_layer() -> None:
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    tops.discard("py.typed")
    tops.discard("__pycache__")
    assert tops <= set(LAYER), f"give these a layer: {tops - set(LAYER)}"


def test_imports_flow_downward() -> None:
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from keybroker.cli import main\n")
    assert _imports(bad) == [("keybroker.cli", 1)]
    assert LAYER["cli"] > LAYER["vault"]
