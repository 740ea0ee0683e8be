"""``loopline build`` and ``loopline containerize``: a Bento and an OCI image per version.

The model of a registry version goes into the BentoML model store as ``<artifact>:<version>``
(sha256, commit and registry tag in its metadata) and the Bento ``<artifact>-service:<version>``
is built around it with ``bentoml build``: the service code, a spec that pins that model
tag and its sha256, and only what serving needs (bentoml, onnxruntime, numpy, pydantic,
orjson), no training stack. ``containerize`` turns the Bento into the image
``<artifact>:<version>`` with Docker when a daemon answers, else with buildah, from
loopline's own Containerfile (:data:`CONTAINERFILE`, which says why). In the image the
inference log is ``/var/lib/loopline/<name>`` (a volume; the environment variable
``LOOPLINE_INFERENCE_LOG`` moves it).
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

INFERENCE_LOG_NAME = "inference.sqlite"  # in the image's volume, /var/lib/loopline

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
    """The image builder: ``docker`` when a daemon answers, else ``buildah`` (for ``auto``).

    Raises:
        LooplineError: the builder asked for (or, for ``auto``, any builder) is not there.
    """
    hint = "scripts/image-base.sh installs buildah and makes its local base image"
    if backend == "docker" or (backend == "auto" and _docker_ready()):
        if not _docker_ready():
            raise LooplineError("no Docker daemon answers: start one, or use --backend buildah")
        return "docker"
    if shutil.which("buildah"):
        return "buildah"
    if backend == "buildah":
        raise LooplineError(f"buildah is not installed ({hint})")
    raise LooplineError(f"no image builder: no Docker daemon answers and buildah is not installed ({hint})")


# The image is built from this Containerfile over the Bento, not from the Dockerfile BentoML
# generates: that one installs build-essential, git and gnupg2 with apt and keeps uv and its
# caches, which made images of 1.14 GB. A Bento of loopline needs none of it: every package
# it pins has a binary wheel. Here: the base (Debian slim + Python 3.11), one venv with the
# Bento's pinned requirements (pip, no cache, no bytecode), the Bento with its model, and
# loopline's PID 1, which forwards SIGTERM to BentoML's supervisor and every worker.
CONTAINERFILE = """\
FROM {base}
ENV LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    VIRTUAL_ENV=/opt/loopline PATH=/opt/loopline/bin:/usr/local/bin:/usr/bin:/bin \\
    BENTO_PATH=/home/bentoml/bento BENTOML_HOME=/home/bentoml/ BENTOML_CONTAINERIZED=true \\
    BENTOML_DO_NOT_TRACK=True PYTHONPATH=/home/bentoml/bento/src \\
    {spec_env}=/home/bentoml/bento/src/{spec} OMP_WAIT_POLICY=PASSIVE \\
    {log_env}=/var/lib/loopline/{log_name}
COPY env/python/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/loopline \\
 && /opt/loopline/bin/pip install --no-compile -r /tmp/requirements.txt \\
 && /opt/loopline/bin/pip uninstall -y -q pip \\
 && rm -rf /tmp/requirements.txt /root/.cache \\
 && find /opt/loopline -name __pycache__ -prune -exec rm -rf {{}} + \\
 && mkdir -p /var/lib/loopline /home/bentoml \\
 && chown 1034:1034 /var/lib/loopline /home/bentoml
COPY . /home/bentoml/bento
WORKDIR /home/bentoml/bento
VOLUME /var/lib/loopline
EXPOSE 3000
USER 1034:1034
ENTRYPOINT ["/opt/loopline/bin/python", "-m", "loopline.serving.pid1", "--"]
CMD ["bentoml", "serve", "/home/bentoml/bento", "--host", "0.0.0.0", "--port", "3000"]
"""
DEFAULT_BASE = {"docker": "python:3.11-slim", "buildah": "localhost/loopline-base:bookworm"}


def image_context(bento: str, ctx: Path, base: str) -> Path:
    """The build context of ``bento``'s image: the Bento, its models, the Containerfile."""
    import bentoml
    import yaml

    from loopline.serving.spec import LOG_ENV

    b = bentoml.bentos.get(bento)
    shutil.copytree(b.path, ctx)
    info = yaml.safe_load((ctx / "bento.yaml").read_text(encoding="utf-8"))
    tags = {m["tag"] for svc in info.get("services") or [] for m in svc.get("models") or []}
    tags |= {m["tag"] for m in info.get("models") or []}
    for tag in sorted(tags):  # where BENTOML_CONTAINERIZED looks: $BENTO_PATH/models/NAME/VERSION
        name, _, version = tag.partition(":")
        shutil.copytree(bentoml.models.get(tag).path, ctx / "models" / name / version)
    for path in [ctx, *ctx.rglob("*")]:  # the service runs as an unprivileged user: readable
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    write_text(ctx / "Containerfile", CONTAINERFILE.format(
        base=base, spec_env=SPEC_ENV, spec=SERVE_SPEC, log_env=LOG_ENV,
        log_name=INFERENCE_LOG_NAME))
    return ctx


def containerize(bento: str, image: str, *, backend: str = "auto", base: str | None = None,
                 opts: list[str] | None = None) -> dict:
    """Build the image ``image`` of the Bento ``bento`` with Docker or buildah (Containerfile)."""
    import tempfile

    chosen = pick_backend(backend)
    base = base or DEFAULT_BASE[chosen]
    with tempfile.TemporaryDirectory(prefix="loopline-image-") as tmp:
        ctx = image_context(bento, Path(tmp) / "ctx", base)
        if chosen == "buildah":
            cmd = ["buildah", "build", "--isolation", "chroot", "--layers", "-f",
                   str(ctx / "Containerfile"), "-t", image]
        else:
            cmd = ["docker", "build", "-f", str(ctx / "Containerfile"), "-t", image]
        for opt in opts or []:
            key, _, value = opt.partition("=")
            cmd += [f"--{key}", value] if value else [f"--{key}"]
        # the builder's progress goes to stderr, so stdout stays the command's (--json) own
        res = subprocess.run([*cmd, str(ctx)], stdout=sys.stderr, check=False)
        if res.returncode != 0:
            raise LooplineError(f"{chosen} build of {image} failed (exit {res.returncode}); "
                                "its output is above")
    return {"image": image, "bento": bento, "backend": chosen, "base": base}
