"""The stages' shape: no stage imports another, dvc.yaml names the code each stage runs.

A stage reruns when a file in its ``deps`` changes, so its deps must list its own module and
every shared module (pipeline/tabular.py, model/...) whose code it runs; otherwise a change
to shared code leaves stale outputs that DVC reports as up to date. File names come from
core.layout, so no stage spells one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from loopline.pipeline.runner import STAGES
from tests.helpers import REPO

SRC = REPO / "src"
STAGE_PKG = "loopline.pipeline.stages"


def is_shared(module: str) -> bool:
    """Modules whose code decides what a stage writes (config and core are not code of a stage)."""
    return module == "loopline.pipeline.tabular" or module.startswith("loopline.model.")


def source(module: str) -> Path:
    path = SRC / (module.replace(".", "/") + ".py")
    return path if path.is_file() else SRC / module.replace(".", "/") / "__init__.py"


def _imports(nodes: list[ast.AST]) -> list[tuple[str, set[str] | None]]:
    """(module, names imported from it, or None for the whole module) of loopline imports."""
    found: list[tuple[str, set[str] | None]] = []
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("loopline")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loopline"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if (SRC / sub.replace(".", "/")).with_suffix(".py")
                             .is_file() else (node.module, {alias.name}))
    return found


def _defs_used(tree: ast.Module, names: set[str]) -> list[ast.AST]:
    """The top-level definitions ``names`` and those they refer to in the same module."""
    defs = {n.name: n for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    todo, seen = [n for n in names if n in defs], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    return [defs[n] for n in seen]


def shared_modules(module: str, names: set[str] | None = None) -> set[str]:
    """The shared modules whose code ``module`` (or only its ``names``) runs, transitively."""
    tree = ast.parse(source(module).read_text(encoding="utf-8"))
    if names is None:
        nodes: list[ast.AST] = [tree]
    else:
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        nodes = top + _defs_used(tree, names)
    used: set[str] = set()
    for mod, imported in _imports(nodes):
        if is_shared(mod) and mod != module:
            used |= {mod} | shared_modules(mod, imported)
    return used


def dvc_stages(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]


def rel(module: str) -> str:
    return source(module).relative_to(REPO).as_posix()


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_another_stage(stage: str) -> None:
    tree = ast.parse(source(f"{STAGE_PKG}.{stage}").read_text(encoding="utf-8"))
    others = [m for m, _ in _imports([tree]) if m.startswith(STAGE_PKG)]
    assert not others, f"stage {stage} imports {others}: shared code belongs in pipeline/tabular.py"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_deps_name_the_code_the_stage_runs(stage: str) -> None:
    module = f"{STAGE_PKG}.{stage}"
    want = {rel(module)} | {rel(m) for m in shared_modules(module)}
    deps = [d for d in dvc_stages(REPO / "dvc.yaml")[stage]["deps"] if d.startswith("src/loopline/")]
    assert len(deps) == len(set(deps)), f"{stage}: a dependency is listed twice: {deps}"
    assert set(deps) == want, (f"{stage}: dvc.yaml lists {sorted(deps)}, the stage runs "
                               f"{sorted(want)}")


def test_the_dependency_analysis_follows_what_is_used() -> None:
    # ingest uses tabular's reading and hashing, not its model frame: no model code
    assert shared_modules(f"{STAGE_PKG}.ingest") == {"loopline.pipeline.tabular"}
    # train fits model.features' preprocessing and scores with model.metrics
    assert shared_modules(f"{STAGE_PKG}.train") >= {"loopline.model.features",
                                                    "loopline.model.metrics"}


FILE_NAME = re.compile(r"^[\w.-]+\.(json|jsonl|onnx|parquet|joblib|csv|md|html|yaml|lock)$")


@pytest.mark.parametrize("stage", STAGES)
def test_stages_take_file_names_from_the_layout(stage: str) -> None:
    tree = ast.parse(source(f"{STAGE_PKG}.{stage}").read_text(encoding="utf-8"))
    spelled = [n.value for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str) and FILE_NAME.match(n.value)]
    assert not spelled, f"stage {stage} spells {spelled}: use the names in loopline.core.layout"
