"""What a service runs: which model files, checked against which sha256, with which limits.

The CLI (``loopline serve``, ``loopline build``) resolves a registry version or stage into a
*bundle* (a directory with model.onnx and card.json fetched by :func:`loopline.registry.fetch.get`)
and writes a *spec* (JSON) that the BentoML service module reads at import time, through the
``LOOPLINE_SERVE_SPEC`` environment variable or, inside a Bento, the spec file built into it.
The expected sha256 comes from the registry's tag metadata, never from the bundle itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError

SPEC_ENV = "LOOPLINE_SERVE_SPEC"
LOG_ENV = "LOOPLINE_INFERENCE_LOG"
SPEC_FILE = "loopline_serve.json"
SERVE_DIR = ".loopline/serve"
LOCAL = "local"


def _local_export(root: Path, models: str, dest: Path) -> dict[str, Any]:
    """The working tree's latest export (models/model.onnx and card.json), copied aside."""
    src_model, src_card = root / models / "model.onnx", root / models / "card.json"
    if not src_model.is_file() or not src_card.is_file():
        raise LooplineError(f"no model to serve: no version is assigned to prod and there is no "
                            f"local export ({src_model.relative_to(root)}); run `loopline run` or "
                            "name a registered version")
    try:
        card = json.loads(src_card.read_text(encoding="utf-8"))
    except ValueError as err:
        raise LooplineError(f"{src_card}: not valid JSON ({err})") from err
    sha = (card.get("model_files") or {}).get("onnx_sha256")
    if not sha:
        raise LooplineError(f"{src_card} records no onnx_sha256; re-run the export stage")
    bundle = dest / f"{LOCAL}-{sha[:12]}"
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_model, bundle / "model.onnx")
    shutil.copyfile(src_card, bundle / "card.json")
    return {"version": f"{LOCAL}-{sha[:12]}", "sha256": sha, "bundle": str(bundle),
            "tag": None, "commit": None, "source": "local export"}


def resolve_model(root: Path, ref: str | None, *, models: str = "models",
                  default_stage: str = "prod") -> dict[str, Any]:
    """Fetch the model of ``ref`` (version, tag or stage) into a bundle under .loopline/serve.

    ``ref`` None means the version assigned to ``default_stage``, else the local export.

    Returns:
        ``{version, sha256, bundle, tag, commit, source}``; ``sha256`` is the registry's.

    Raises:
        LooplineError: unknown version or stage, objects not in the DVC cache or remote, or
            (for the local export) no model at all.
    """
    from loopline.registry.actions import which
    from loopline.registry.fetch import get
    from loopline.registry.tags import open_registry

    dest = root / SERVE_DIR / "models"
    if ref is None:
        try:
            ref = which(default_stage, root)["version"]
        except LooplineError:
            return _local_export(root, models, dest)
    reg = open_registry(root)
    v = reg.resolve(ref)
    sha = ((v.meta.get("model") or {}).get("onnx_sha256"))
    if not sha:
        raise LooplineError(f"{v.tag} records no model sha256 in its tag; re-register it")
    bundle = dest / v.version
    got = get(v.version, bundle, root)
    return {"version": v.version, "sha256": sha, "bundle": str(bundle), "tag": v.tag,
            "commit": v.commit, "source": "registry", "ref": ref, "fetched_from": got["source"]}


def make_spec(root: Path | None, serve: Any, artifact: str, model: dict[str, Any],
              shadow: dict[str, Any] | None, *, ref: str | None, log_path: str | None = None,
              run_dir: Path | None = None, models: str = "models",
              default_stage: str = "prod") -> dict[str, Any]:
    """The JSON spec the service module reads (``serve`` is a ``ServeConfig``)."""
    log = serve.log
    path = log_path or (str((root / log.path).resolve()) if root is not None else log.path)
    return {
        "artifact": artifact,
        "root": str(root) if root is not None else None,
        "ref": ref,
        "models": models,
        "default_stage": default_stage,
        "model": model,
        "shadow": shadow,
        "control": str(run_dir / "active.json") if run_dir is not None else None,
        "log": {"enabled": log.enabled, "path": path, "flush_interval": log.flush_interval, "flush_rows": log.flush_rows},
        "workers": serve.workers,
        "threads": serve.threads,
        "max_batch": serve.max_batch,
        "max_body_bytes": int(serve.max_body_mb * 1024 * 1024),
        "timeout": serve.timeout,
        "reload_poll": serve.reload_poll,
        "admin_token_env": serve.admin_token_env,
    }


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    from loopline.core.files import write_text

    return write_text(path, json.dumps(spec, indent=2, sort_keys=True) + "\n")


def read_spec(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], Path]:
    """The spec named by ``LOOPLINE_SERVE_SPEC``, else ``loopline_serve.json`` here.

    Raises:
        LooplineError: no spec, or not valid JSON.
    """
    candidates = [Path(path)] if path else []
    if not candidates and os.environ.get(SPEC_ENV):
        candidates.append(Path(os.environ[SPEC_ENV]))
    candidates += [Path.cwd() / SPEC_FILE, Path(__file__).resolve().parents[2] / SPEC_FILE]
    for p in candidates:
        if p.is_file():
            try:
                return json.loads(p.read_text(encoding="utf-8")), p
            except ValueError as err:
                raise LooplineError(f"{p}: not valid JSON ({err})") from err
    raise LooplineError(f"no service spec: set {SPEC_ENV} or start it with `loopline serve` "
                        f"(looked in {', '.join(map(str, candidates))})")
