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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.files import copy_file, load_json, sha256_file
from loopline.core.layout import (
    CARD_JSON,
    MODEL_ONNX,
    MODELS_DEFAULT,
    RELOAD_CONTROL,
    RUN_SPEC,
    SERVE_DIR,
    SERVE_SPEC,
)

SPEC_ENV = "LOOPLINE_SERVE_SPEC"
LOG_ENV = "LOOPLINE_INFERENCE_LOG"
LOCAL = "local"


def _local_export(root: Path, models: str, dest: Path) -> dict[str, Any]:
    """The working tree's latest export (models/model.onnx and card.json), copied aside.

    No registry version names it, so it is verified against its model card only: a model
    whose card was edited to match passes; a registered version is verified against the
    sha256 in its registry tag.
    """
    src_model, src_card = root / models / MODEL_ONNX, root / models / CARD_JSON
    if not src_model.is_file() or not src_card.is_file():
        raise LooplineError(f"no model to serve: no version is assigned to prod and there is no "
                            f"local export ({src_model.relative_to(root)}); run `loopline run` or "
                            "name a registered version")
    card = load_json(src_card, "the model card")
    sha = (card.get("model_files") or {}).get("onnx_sha256")
    if not sha:
        raise LooplineError(f"{src_card} records no onnx_sha256; re-run the export stage")
    got = sha256_file(src_model)
    if got != sha:
        raise LooplineError(f"{models}/{MODEL_ONNX} (sha256 {got[:12]}) is not the model its card "
                            f"records (sha256 {sha[:12]}): no version is assigned to prod, so the "
                            "workspace model is checked against its card only; rerun the "
                            "pipeline (`loopline run`) or serve a registered version")
    bundle = dest / f"{LOCAL}-{sha[:12]}"
    copy_file(src_model, bundle / MODEL_ONNX)
    copy_file(src_card, bundle / CARD_JSON)
    return {"version": f"{LOCAL}-{sha[:12]}", "sha256": sha, "bundle": str(bundle),
            "tag": None, "commit": None,
            "source": "local export, no version in prod: checked against its card only"}


def resolve_model(root: Path, ref: str | None, *, models: str = MODELS_DEFAULT,
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
              run_dir: Path | None = None, models: str = MODELS_DEFAULT,
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
        "control": str(run_dir / RELOAD_CONTROL) if run_dir is not None else None,
        "log": {"enabled": log.enabled, "path": path, "flush_interval": log.flush_interval,
                "flush_rows": log.flush_rows},
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
    """The spec named by ``LOOPLINE_SERVE_SPEC``, else the spec file here (in a Bento).

    Raises:
        LooplineError: no spec, or not valid JSON.
    """
    candidates = [Path(path)] if path else []
    if not candidates and os.environ.get(SPEC_ENV):
        candidates.append(Path(os.environ[SPEC_ENV]))
    candidates += [Path.cwd() / SERVE_SPEC, Path(__file__).resolve().parents[2] / SERVE_SPEC]
    for p in candidates:
        if p.is_file():
            return load_json(p, "the service spec"), p
    raise LooplineError(f"no service spec: set {SPEC_ENV} or start it with `loopline serve` "
                        f"(looked in {', '.join(map(str, candidates))})")


def resolve_models(root: Path, params: Any, ref: str | None,
                   shadow: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model of ``ref`` (default ``serve.model``) and of the shadow (default
    ``serve.shadow``), fetched into bundles; stages mean the serving stage's choice."""
    stage, models = params.registry.serving_stage, params.paths.models
    entry = resolve_model(root, ref or params.serve.model, models=models, default_stage=stage)
    shadow_ref = shadow or params.serve.shadow
    shadow_entry = (resolve_model(root, shadow_ref, models=models, default_stage=stage)
                    if shadow_ref else None)
    return entry, shadow_entry


@dataclass
class ServeRun:
    """A prepared ``bentoml serve`` of one instance: command, environment and spec."""

    argv: list[str]
    env: dict[str, str]
    spec: dict[str, Any]
    spec_path: Path
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def prepare_run(root: Path, params: Any, ref: str | None, *, shadow: str | None = None,
                port: int | None = None, host: str | None = None, workers: int | None = None,
                log_path: str | None = None) -> ServeRun:
    """Everything ``bentoml serve`` needs to serve ``ref`` from the instance at ``root``.

    Resolves the model (and shadow) of a version or stage (default ``serve.model``, else the
    serving stage's current version, else the local export), writes the run's spec under
    ``.loopline/serve/run-PORT/``.
    ``loopline serve`` runs it in place of itself; the simulation starts it as a process.
    """
    import sys

    cfg = params.serve.model_copy(update={k: v for k, v in
                                          (("port", port), ("host", host), ("workers", workers))
                                          if v is not None})
    stage, models = params.registry.serving_stage, params.paths.models
    entry, shadow_entry = resolve_models(root, params, ref, shadow)
    run_dir = root / SERVE_DIR / f"run-{cfg.port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RELOAD_CONTROL).unlink(missing_ok=True)
    spec = make_spec(root, cfg, params.artifact, entry, shadow_entry,
                     ref=ref or params.serve.model, log_path=log_path, run_dir=run_dir,
                     models=models, default_stage=stage)
    spec_path = write_spec(run_dir / RUN_SPEC, spec)
    env = {**os.environ, SPEC_ENV: str(spec_path), "BENTOML_DO_NOT_TRACK": "True"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = [sys.executable, "-m", "bentoml", "serve", "loopline.serving.service:LooplineService",
            "--host", cfg.host, "--port", str(cfg.port), "--working-dir", str(run_dir)]
    return ServeRun(argv, env, spec, spec_path, cfg.host, cfg.port)
