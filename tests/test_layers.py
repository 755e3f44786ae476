"""The layering rule of DESIGN.md: imports only go down (core <- data <- train <- applications <- clean
<- cli).

`_external` (downloads and archives, used by `lamina datasets` without torch) sits below core: it imports
nothing else of lamina.

Modules meet through public names only: no `from lamina.x import _name`, no `obj._name` reaching into state
another module defines, and a private module (`lamina.vision._checks`) serves its own package only.
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
    "clean": 4,
    "cli": 5,
}
APPS = {"vision", "tabular", "collab", "text"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lamina" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, at module level or inside a function (ast.walk sees both)."""
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


def test_every_layer_has_a_rank() -> None:
    """A new top-level package must be placed in RANK, or the checks above would skip it silently."""
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}
    assert not tops - set(RANK) - {"__init__"}, f"packages without a layer: {sorted(tops - set(RANK))}"


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


_IMPORT_CALLS = {"import_module", "__import__"}


def _dynamic_imports(path: Path) -> list[tuple[int, str | None]]:
    """`importlib.import_module(...)` / `__import__(...)` calls: (line, the module named, or None when the
    name is computed and so cannot be checked)."""
    out: list[tuple[int, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name not in _IMPORT_CALLS:
            continue
        arg = node.args[0] if node.args else None
        out.append(
            (node.lineno, arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None)
        )
    return out


def test_no_dynamic_import_of_an_upper_layer() -> None:
    """A lower layer never imports an upper one by name at run time (an application registers its names
    when it is imported; load_learner finds lamina's applications through their entry points). A computed
    module name counts as upward: the test cannot see where it goes."""
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        own = rel.parts[0].removesuffix(".py")
        if own not in RANK or own == "cli":
            continue
        for line, mod in _dynamic_imports(path):
            other = _layer(mod) if mod is not None else None
            if mod is None:
                bad.append(f"{rel}:{line} imports a computed module name")
            elif other in RANK and (
                RANK[other] > RANK[own] or (own in APPS and other in APPS and other != own)
            ):
                bad.append(f"{rel}:{line} imports {mod} at run time")
    assert not bad, "run-time imports that go up:\n" + "\n".join(bad)


def _module(path: Path) -> str:
    return ".".join(("lamina", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# `lamina._external` is a private package on purpose: torch-free downloads and archives that
# data/external.py re-exports and that the CLI imports directly (so `lamina datasets` never loads torch)
_SHARED_PRIVATE_PACKAGES = {"lamina._external"}
# none left: callbacks ask `learn.run` (a DistributedRun or the single-process LocalRun) instead of `_dist`
_PENDING: set[str] = set()


def _has_private_part(module: str) -> bool:
    return any(_is_private(p) for p in module.split(".")[1:])


def _private_module_import_ok(importer: str, target: str, shared: bool = True) -> bool:
    """A private module (`lamina.vision._checks`) may be imported from inside its own package only."""
    parts = target.split(".")
    for i, p in enumerate(parts):
        if _is_private(p):
            package = ".".join(parts[:i])
            if shared and ".".join(parts[: i + 1]) in _SHARED_PRIVATE_PACKAGES:
                return True
            return importer == package or importer.startswith(package + ".")
    return True


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, variables, and attributes of `self`/`cls`."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _on_self(node):
            out.add(node.attr)  # `dl._x = ...` on another object is a reach-in, not a definition
    return {n for n in out if _is_private(n)}


def test_modules_use_each_others_public_names_only() -> None:
    trees = {p: ast.parse(p.read_text()) for p in SRC.rglob("*.py")}
    own_private = {p: _defined_private_names(t) for p, t in trees.items()}
    anywhere = set().union(*own_private.values())
    modules = {_module(p) for p in trees}
    bad = []
    for path, tree in trees.items():
        rel, me = path.relative_to(SRC), _module(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith("lamina"):
                    continue
                if not _private_module_import_ok(me, node.module):
                    bad.append(f"{rel}:{node.lineno} imports the private module {node.module}")
                for a in node.names:
                    # a private name is fine from a private module of one's own package (its internals)
                    # or when it is itself a private module of one's own package (`from pkg import _mod`)
                    target = f"{node.module}.{a.name}"
                    if _is_private(a.name) and not (
                        (_has_private_part(node.module) and _private_module_import_ok(me, node.module, False))
                        or (target in modules and _private_module_import_ok(me, target, False))
                    ):
                        bad.append(f"{rel}:{node.lineno} imports {target}")
            elif isinstance(node, ast.Import):
                bad += [
                    f"{rel}:{node.lineno} imports the private module {a.name}"
                    for a in node.names
                    if a.name.startswith("lamina.") and not _private_module_import_ok(me, a.name)
                ]
            elif (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and node.attr not in _PENDING
                and not _on_self(node)
                # another module's private state: defined elsewhere in lamina, not here (torch's pass)
                and node.attr in anywhere
                and node.attr not in own_private[path]
            ):
                bad.append(f"{rel}:{node.lineno} reaches into {ast.unparse(node)}")
    assert not bad, "reach-ins to another module's private names:\n" + "\n".join(sorted(bad))
