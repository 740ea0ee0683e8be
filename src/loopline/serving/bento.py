"""``loopline build`` and ``loopline containerize``: a Bento and an OCI image per version.

The model of a registry version goes into the BentoML model store as ``<artifact>:<version>``
(sha256, commit and registry tag in its metadata) and the Bento ``<artifact>-service:<version>``
is built around it with ``bentoml build``: the service code, a spec that pins that model
tag and its sha256, and only what serving needs (bentoml, onnxruntime, numpy, pydantic,
orjson), no training stack. ``containerize`` turns the Bento into the image
``<artifact>:<version>`` with Docker when a daemon answers, else with buildah.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError
from loopline.core.files import copy_file, write_text
from loopline.core.layout import BENTOFILE, CARD_JSON, MODEL_ONNX, SERVE_SPEC
from loopline.serving.spec import SPEC_ENV, make_spec, write_spec

SERVING_PACKAGES = ("bentoml", "onnxruntime", "numpy", "pydantic", "orjson", "typing_extensions")

SERVICE_STUB = '''"""Entry point of the Bento: the loopline service, its spec pinned beside it."""

from loopline.serving.service import LooplineService  # noqa: F401
'''


def _bentoml(*args: str, env: dict[str, str] | None = None, capture: bool = True,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bentoml", *args]
    res = subprocess.run(cmd, capture_output=capture, text=True, env=env, cwd=cwd)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout or "").strip().splitlines()[-12:]
        raise LooplineError(f"`bentoml {' '.join(args)}` failed (exit {res.returncode})",
                            details="\n".join(tail))
    return res


def bento_name(artifact: str) -> str:
    return f"{artifact}-service"


def import_model(artifact: str, entry: dict[str, Any]) -> str:
    """Put the bundle of ``entry`` into the BentoML model store; its tag.

    An existing model of that tag is reused when its recorded sha256 matches, and is an
    error otherwise (a registry version never changes).
    """
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{artifact}:{entry['version']}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.info.metadata.get("sha256") == entry["sha256"]:
            return tag
        raise LooplineError(f"BentoML model {tag} exists with a different sha256; "
                            f"remove it with `bentoml models delete {tag}`")
    labels = {"artifact": artifact, "version": entry["version"]}
    meta = {k: entry[k] for k in ("sha256", "tag", "commit", "source") if entry.get(k) is not None}
    with bentoml.models.create(tag, labels=labels, metadata=meta) as model:
        for name in (MODEL_ONNX, CARD_JSON):
            copy_file(Path(entry["bundle"]) / name, Path(model.path) / name)
    return tag


def _pinned(names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as err:
            raise LooplineError(f"{name} is not installed; it is needed in the Bento") from err
    return out


def write_context(ctx: Path, spec: dict[str, Any], *, labels: dict[str, str]) -> Path:
    """The build context: service stub, spec, the loopline package (sources only), bentofile."""
    import yaml

    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    write_text(ctx / "service.py", SERVICE_STUB)
    write_spec(ctx / SERVE_SPEC, spec)
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(package, ctx / "loopline",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "stages"))
    bentofile = {
        "service": "service:LooplineService",
        "name": bento_name(spec["artifact"]),
        "labels": labels,
        "include": ["service.py", SERVE_SPEC, "loopline/**/*.py"],
        "python": {"packages": _pinned(SERVING_PACKAGES)},
        "docker": {"distro": "debian", "python_version": "3.11"},
        "envs": [{"name": SPEC_ENV, "value": f"/home/bentoml/bento/src/{SERVE_SPEC}"},
                 {"name": "OMP_WAIT_POLICY", "value": "PASSIVE"}],
    }
    write_text(ctx / BENTOFILE, yaml.safe_dump(bentofile, sort_keys=False))
    return ctx


def build(root: Path, params: Any, entry: dict[str, Any], shadow: dict[str, Any] | None = None) -> dict:
    """Build the Bento ``<artifact>-service:<version>`` for the model of ``entry``."""
    artifact = params.artifact
    model_tag = import_model(artifact, entry)
    pinned = {**entry, "bentoml_model": model_tag, "bundle": None}
    pinned_shadow = None
    if shadow is not None:
        pinned_shadow = {**shadow, "bentoml_model": import_model(artifact, shadow), "bundle": None}
    log_path = f"logs/{Path(params.serve.log.path).name}"
    spec = make_spec(None, params.serve, artifact, pinned, pinned_shadow, ref=entry["version"],
                     log_path=log_path)
    labels = {"artifact": artifact, "model_version": entry["version"],
              "model_sha256": entry["sha256"], "model_commit": entry.get("commit") or "workspace"}
    version = entry["version"]
    tag = f"{bento_name(artifact)}:{version}"
    import tempfile

    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.delete(tag)  # rebuilt from the same pinned model: replace it
    except NotFound:
        pass
    # BentoML refuses build contexts under hidden directories, so not .loopline/
    with tempfile.TemporaryDirectory(prefix="loopline-bento-") as tmp:
        ctx = write_context(Path(tmp) / "ctx", spec, labels=labels)
        env = {**os.environ, SPEC_ENV: str(ctx / SERVE_SPEC),
               "BENTOML_DO_NOT_TRACK": "True"}
        _bentoml("build", ".", "--version", version, "-o", "tag", env=env, cwd=ctx)
    bento = bentoml.bentos.get(tag)
    return {"bento": tag, "path": bento.path, "model": model_tag, "model_version": version,
            "sha256": entry["sha256"],
            "shadow": pinned_shadow and pinned_shadow["bentoml_model"]}


def _docker_ready() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pick_backend(backend: str) -> str:
    """``docker`` when a daemon answers, else ``buildah`` when installed (for ``auto``)."""
    if backend != "auto":
        return backend
    if _docker_ready():
        return "docker"
    if shutil.which("buildah"):
        return "buildah"
    raise LooplineError("no image builder: no Docker daemon answers and buildah is not installed "
                        "(Debian: apt-get install buildah)")


def containerize(bento: str, image: str, *, backend: str = "auto", base: str | None = None,
                 opts: list[str] | None = None) -> dict:
    """``bentoml containerize`` the Bento into ``image``; Docker or buildah."""
    chosen = pick_backend(backend)
    args = ["containerize", bento, "--backend", chosen, "--image-tag", image]
    if base and chosen == "buildah":
        args += ["--opt", f"from={base}"]
    if chosen == "buildah":
        args += ["--opt", "isolation=chroot"]
    for opt in opts or []:
        args += ["--opt", opt]
    _bentoml(*args, env={**os.environ, "BENTOML_DO_NOT_TRACK": "True"}, capture=False)
    return {"image": image, "bento": bento, "backend": chosen}

