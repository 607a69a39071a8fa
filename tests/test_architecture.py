"""The package's import graph: data flows one way, and private names stay private.

Every module under ``ghostnas/`` is parsed with :mod:`ast`; every ``import`` and ``from ... import``
counts, at any depth: module level, inside functions (lazy imports), under ``if TYPE_CHECKING:``.
A cycle hidden in a function is still a cycle in the design, so it fails here too.

The rules:

1. **No cycle.** An edge goes from the importing module to each ghostnas module it names:
   ``import ghostnas.x``, ``from ghostnas.x import y`` (to ``ghostnas.x.y`` when that is a module,
   else to ``ghostnas.x``), ``from ghostnas import x`` (to ``ghostnas.x``, or to the package's
   ``__init__`` for a name it defines). The implicit import of a parent package's ``__init__``
   is not an edge (every submodule would otherwise be in a cycle with its package).
2. **No underscore name across modules.** ``from ghostnas.x import _y`` (a function, class or
   constant) and ``x._y`` on an imported ghostnas module are refused outside ``ghostnas.x``
   itself: a shared helper gets a public name, in the lower module. Dunder names are not
   private.
3. **Private modules stay in their package.** A module whose name starts with ``_``
   (``ghostnas/cli/_search.py``, ``ghostnas/latency/_table.py``, ``ghostnas/_io.py``) may be
   imported only by modules of the package that holds it (``ghostnas.cli.*`` for
   ``ghostnas.cli._search``, any ``ghostnas.*`` for ``ghostnas._io``). That is how timm and
   Optuna expose a package: implementations in private modules, re-exported by the package's
   ``__init__``; a module outside the package goes through that ``__init__``.
4. **No reach into Optuna's private trial id.** ``trial._trial_id`` is refused; the storage's
   public ``get_trial_id_from_study_id_trial_number`` is the documented route
   (:func:`ghostnas.workers.trial_id`). The one exception is :mod:`ghostnas.storage`, which
   *implements* Optuna's storage interface (a retrying ``RDBStorage``): there trial ids are the
   storage's own currency, as in Optuna's storages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import REPO

ROOT = REPO
PACKAGE = "ghostnas"
STORAGE_IMPLEMENTATIONS = {"ghostnas.storage"}


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, node)
            for alias in node.names:
                yield module, alias.name, node.lineno


def _targets(module: str, imported: str | None) -> list[str]:
    """The ghostnas modules an import names (empty for a third-party import)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return []
    if imported is not None and f"{module}.{imported}" in MODULES:
        return [f"{module}.{imported}"]
    return [module] if module in MODULES else []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name in MODULES:
        for module, imported, _ in _imports(name):
            graph[name].update(t for t in _targets(module, imported) if t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _owner_of_private_module(module: str) -> str | None:
    """The package that holds the first private component of ``module``, if it has one."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[:i])
    return None


def _inside(importer: str, package: str) -> bool:
    return importer == package or importer.startswith(package + ".")


def _private_imports() -> list[str]:
    problems = []
    for name in MODULES:
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        bound: dict[str, str] = {}  # local name -> the ghostnas module it is bound to
        for module, imported, line in _imports(name):
            for target in _targets(module, imported):
                owner = _owner_of_private_module(target)
                if owner is not None and not _inside(name, owner):
                    problems.append(f"{name}:{line} imports private module {target} from outside {owner}")
                if imported is not None and target == module and _private(imported) and name != module:
                    problems.append(f"{name}:{line} imports private name {module}.{imported}")
            if imported is None and module.startswith(PACKAGE + "."):
                bound[module.split(".")[0]] = PACKAGE
            elif imported is not None and f"{module}.{imported}" in MODULES:
                bound[imported] = f"{module}.{imported}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            if node.attr == "_trial_id" and name not in STORAGE_IMPLEMENTATIONS:
                problems.append(f"{name}:{node.lineno} reads Optuna's private _trial_id")
            elif (
                _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and bound[node.value.id] != name
            ):
                problems.append(f"{name}:{node.lineno} uses private name {bound[node.value.id]}.{node.attr}")
    return problems


def test_every_module_is_found():
    assert {"ghostnas", "ghostnas.search", "ghostnas.cli", "ghostnas.cli._search"} <= set(MODULES)


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (function-level imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_private_name_is_imported_across_modules():
    problems = _private_imports()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("from ghostnas.cost import _Counter\n", "private name ghostnas.cost._Counter"),
        ("from ghostnas.cli._models import positive\n", "private module ghostnas.cli._models"),
        ("from ghostnas import cost\ncost._Counter\n", "private name ghostnas.cost._Counter"),
        ("def f(trial):\n    return trial._trial_id\n", "_trial_id"),
    ],
)
def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch, source, expect):
    """The rules fail on the patterns the issue named (a test that cannot fail proves nothing)."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    monkeypatch.setitem(MODULES, "ghostnas.probe", probe)
    assert any(expect in p for p in _private_imports())


def test_a_function_level_cycle_is_caught(tmp_path, monkeypatch):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from ghostnas import probe_b\n")
    b.write_text("def f():\n    from ghostnas.probe_a import x\n")
    monkeypatch.setitem(MODULES, "ghostnas.probe_a", a)
    monkeypatch.setitem(MODULES, "ghostnas.probe_b", b)
    assert ["ghostnas.probe_a", "ghostnas.probe_b"] in _cycles(_graph())
