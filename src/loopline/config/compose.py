"""Composing conf/ with Hydra into params.yaml (``loopline params``, ``loopline run``).

conf/ is the source of truth; params.yaml is its composed result, committed, and the file
DVC tracks. conf/config.yaml puts loopline's packaged defaults (the generic groups,
:mod:`loopline.config.defaults`) on Hydra's search path, after conf/ itself. DVC composes
Hydra only on ``dvc exp run``, so loopline composes it itself and writes exactly what DVC's
Hydra integration writes (``OmegaConf.to_yaml`` of the resolved config), so ``loopline params
model=rf`` and ``dvc exp run -S model=rf`` agree byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loopline.config.params import parse_yaml, validate_params
from loopline.config.pipeline import check_estimator
from loopline.core.errors import LooplineError
from loopline.core.files import write_text
from loopline.core.layout import CONF_DIR, CONF_NAME, PARAMS_CACHE, PARAMS_FILE


def compose(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Compose conf/ with Hydra overrides; return the YAML text DVC would write."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(root / CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=CONF_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
        return OmegaConf.to_yaml(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LooplineError(f"cannot compose {CONF_DIR}/: {first}") from None
    except yaml.YAMLError as err:  # Hydra lets a config file's YAML error through as it is
        mark = getattr(err, "problem_mark", None)
        where = f"{CONF_DIR}/"
        if mark is not None:
            path = Path(mark.name)
            where = f"{path.relative_to(root) if path.is_relative_to(root) else path}, line {mark.line + 1}"
        raise LooplineError(f"cannot compose {CONF_DIR}/: {where} is not valid YAML: "
                            f"{getattr(err, 'problem', None) or err}") from None
    finally:
        GlobalHydra.instance().clear()


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted key paths where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += diff_keys(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


_MISSING = object()


@dataclass
class ParamsResult:
    path: Path
    changed: bool
    changed_keys: list[str]
    text: str


def _fingerprint(root: Path, overrides: list[str]) -> str:
    """A hash of everything composition reads: conf/ files, the packaged defaults that
    conf/config.yaml's search path reaches, overrides, loopline version."""
    import hashlib

    from loopline import __version__
    from loopline.config import defaults

    h = hashlib.sha256(f"{__version__}\0{chr(0).join(overrides)}\0".encode())
    files = [(root, p) for p in sorted((root / CONF_DIR).rglob("*")) if p.is_file()]
    files += [(defaults.DIR.parent, p) for p in sorted(defaults.DIR.rglob("*.yaml"))]
    for base, path in files:
        h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _params_sha(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def compose_params(root: Path, overrides: list[str], *, write: bool = True,
                   full_check: bool = True) -> ParamsResult:
    """Compose conf/ (+ overrides), validate it, and write params.yaml when it changed.

    Composition is skipped when neither conf/, the overrides nor params.yaml changed since
    the last successful run (a fingerprint in .dvc/tmp), which keeps a no-op run fast.
    """
    import json

    path = root / PARAMS_FILE
    cache = root / PARAMS_CACHE
    fingerprint = _fingerprint(root, overrides)
    if cache.parent.is_dir() and cache.is_file():
        try:
            seen = json.loads(cache.read_text(encoding="utf-8"))
        except ValueError:
            seen = {}
        if seen.get("fingerprint") == fingerprint and seen.get("params_sha") == _params_sha(path):
            return ParamsResult(path, False, [], path.read_text(encoding="utf-8"))
    result = _compose_params(root, overrides, write=write, full_check=full_check)
    if cache.parent.is_dir() and (write or not result.changed):
        write_text(cache, json.dumps({"fingerprint": fingerprint, "params_sha": _params_sha(path)}))
    return result


def _compose_params(root: Path, overrides: list[str], *, write: bool,
                    full_check: bool) -> ParamsResult:
    text = compose(root, overrides)
    data = parse_yaml(text, "the composed config")
    params = validate_params(data, f"conf/ (composed{' with ' + ' '.join(overrides) if overrides else ''})")
    path = root / PARAMS_FILE
    old_text = path.read_text(encoding="utf-8") if path.is_file() else None
    changed = old_text != text
    if changed and full_check:
        check_estimator(params.model)
    keys: list[str] = []
    if changed:
        old = yaml.safe_load(old_text) if old_text else {}
        keys = diff_keys(old if isinstance(old, dict) else {}, data)
        if write:
            write_text(path, text)
    return ParamsResult(path, changed, keys, text)
