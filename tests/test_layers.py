"""The layering rule of DESIGN.md: imports only go down (core <- data <- train <- applications <- cli).

`_external` (downloads and archives, used by `lamina datasets` without torch) sits below core: it imports
nothing else of lamina.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "lamina"
RANK = {
    "_external": -1,
    "core": 0,
    "data": 1,
    "train": 2,
    "vision": 3,
    "tabular": 3,
    "collab": 3,
    "text": 3,
    "cli": 4,
}
APPS = {"vision", "tabular", "collab", "text"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lamina" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def test_imports_only_go_down() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own not in RANK:
            continue
        for mod in _imports(path):
            other = _layer(mod)
            if other is None or other not in RANK or other == own:
                continue
            if RANK[other] > RANK[own] or (own in APPS and other in APPS):
                bad.append(f"{rel} imports {mod}")
    assert not bad, "imports that go up (or across applications):\n" + "\n".join(bad)


def test_no_star_imports_in_package() -> None:
    stars = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if any(
            isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert not stars


def test_every_module_declares_all() -> None:
    missing = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "__main__.py" and "__all__" not in p.read_text()
    ]
    assert not missing, f"modules without __all__: {missing}"
