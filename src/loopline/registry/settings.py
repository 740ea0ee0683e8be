"""What the registry reads from params.yaml: the artifact, ``registry.stages`` and ``paths``.

A light reader, so ``loopline which`` stays fast: a plain ``key: value`` line needs no YAML
parser, and only the keys asked for are parsed (no pydantic, no hydra; PyYAML only for a
block such as ``registry:``). The full schema is :mod:`loopline.config`; the rules the two
share live in :mod:`loopline.core` (the name rule, what makes a directory a loopline repo).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.core.dvc import load_yaml
from loopline.core.errors import LooplineError
from loopline.core.layout import PARAMS_FILE, Layout, find_root
from loopline.core.names import check_name

DEFAULT_STAGES = ("staging", "prod")


@dataclass(frozen=True)
class RegistrySettings:
    """What the registry needs from params.yaml.

    Attributes:
        root: The repository directory (where params.yaml and dvc.lock are).
        artifact: The artifact name (``artifact`` in params.yaml).
        stages: Allowed stages (``registry.stages``, default staging and prod).
    """

    root: Path
    artifact: str
    stages: tuple[str, ...] = DEFAULT_STAGES


def _top_level_block(text: str, key: str) -> str | None:
    """The lines of the top-level YAML key ``key`` (its line and the indented ones below)."""
    m = re.search(rf"^{re.escape(key)}:.*(?:\n(?:[ \t#].*|[ \t]*)(?=\n|$))*", text, re.M)
    return m.group(0) if m else None


def read_keys(root: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Read only ``keys`` from params.yaml (a plain ``key: value`` line needs no YAML parser)."""
    path = root / PARAMS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LooplineError(f"cannot read {path}: {err.strerror}") from None
    out: dict[str, Any] = {}
    complex_blocks = []
    for key in keys:
        block = _top_level_block(text, key)
        if block is None:
            continue
        simple = re.fullmatch(rf"{re.escape(key)}:[ \t]*([a-zA-Z0-9][\w./-]*)[ \t]*\n?", block)
        if simple:
            out[key] = simple.group(1)
        else:
            complex_blocks.append(block)
    if complex_blocks:
        parsed = load_yaml("\n".join(complex_blocks), PARAMS_FILE) or {}
        out.update(parsed if isinstance(parsed, dict) else {})
    return out


def _checked(name: object, what: str) -> str:
    """``name`` if it follows the name rule (core.names), else a LooplineError naming the key."""
    try:
        return check_name(name, what)
    except ValueError as err:
        raise LooplineError(f"{PARAMS_FILE}: {err}") from None


def load_settings(root: str | os.PathLike[str] | None = None) -> RegistrySettings:
    """Read ``artifact`` and ``registry.stages`` from the params.yaml of the repo at ``root``.

    Raises:
        LooplineError: not in a loopline repo, the artifact is missing, or a name breaks the
            name rule.
    """
    base = find_root(root)
    keys = read_keys(base, ("artifact", "registry"))
    artifact = _checked(keys.get("artifact"), "artifact")
    reg = keys.get("registry") or {}
    stages = reg.get("stages", list(DEFAULT_STAGES)) if isinstance(reg, dict) else None
    if not isinstance(stages, list) or not stages:
        raise LooplineError(f"{PARAMS_FILE}: registry.stages must be a non-empty list of "
                            "stage names")
    for stage in stages:
        _checked(stage, "registry.stages: stage name")
    return RegistrySettings(root=base, artifact=artifact, stages=tuple(stages))


def load_layout(root: Path) -> Layout:
    """The models and reports directories (``paths`` in params.yaml; defaults when absent)."""
    paths = read_keys(root, ("paths",)).get("paths")
    return Layout.of(root, paths if isinstance(paths, dict) else {})
