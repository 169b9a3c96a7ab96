"""A stage's code dependencies, derived from what its script imports.

Starting from the stage's module (``python -m pipeline.train`` → ``pipeline/train.py``), every
``import`` and ``from … import`` statement is followed, wherever it sits (function-level imports too),
transitively, within this repository's packages. Importing ``ebm.config.load`` also runs
``ebm/__init__.py`` and ``ebm/config/__init__.py``, so package ``__init__`` files count. DVC gets the
result in ``dvc.yaml`` and Snakemake as rule inputs: editing any of these files reruns the stage.
"""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ebm", "pipeline")  # the repository's own code; everything else is a third-party import


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """``ebm.config.load`` → ebm/config/load.py (or a package's __init__.py); None outside the repo."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, name: str) -> set[str]:
    """Module names imported anywhere in the file of module ``name`` (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return found


@cache
def code_deps(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """Repository files (relative, sorted) that ``import module`` can execute."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages above a module run first
            sub = ".".join(parts[:i])
            if sub not in seen and (path := module_file(sub, root)) is not None:
                seen[sub] = path
                todo += sorted(_imported(path, sub))
    return tuple(sorted(str(p.relative_to(root)) for p in seen.values()))
