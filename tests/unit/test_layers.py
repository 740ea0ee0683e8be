"""The package's folders are layers: each imports only from the layers above it.

The order is the README's (Architecture): core, config, model, registry, pipeline, serving,
gitops, monitoring, simulate, cli. An import that goes the other way (config reaching into
monitoring, a stage importing the CLI) fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "loopline"
LAYERS = ["core", "config", "model", "registry", "pipeline", "serving", "gitops", "monitoring",
          "simulate", "cli"]


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("loopline."):  # `from loopline import __version__`: the root
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("loopline.")]
    return out


def test_every_package_folder_is_a_named_layer() -> None:
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_from_the_layers_above_it(layer: str) -> None:
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    wrong = [f"{path.relative_to(SRC)}:{line} imports {name}"
             for path in sorted((SRC / layer).rglob("*.py"))
             for line, name in _imports(path) if name.split(".")[1] not in allowed]
    assert not wrong, "\n".join(wrong)
