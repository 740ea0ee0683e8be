"""What makes a new instance a repository that works on its own: loopline pinned in it.

- ``vendor/loopline-<version>-py3-none-any.whl``: the loopline that made the instance, as a
  wheel made from the installed package (its modules, metadata and instance templates), so
  a fresh runner installs exactly it without any index knowing loopline;
- ``requirements.lock``: that wheel and every package it needs, pinned to the versions
  installed here (the environment it was tested in);
- ``Makefile``: ``install`` (a venv from the lock, with uv), ``run``, ``test``;
- ``scripts/deploy.sh``: release.yml's deploy hook as a documented no-op ("built, not
  deployed") to fill in.

The workflows (the reference's) install with ``make install`` here, from the lock.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.files import write_bytes

LOCK = "requirements.lock"
VENDOR = "vendor"
UV_VERSION = "0.13.9"

MAKEFILE = """\
# make install   a venv with exactly what requirements.lock pins (loopline from vendor/)
# make run       the pipeline: compose conf/ into params.yaml, then dvc repro
# make test      params.yaml matches conf/, the pipeline runs, the gate passes
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
UV     ?= $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export UV_COMPILE_BYTECODE ?= 1

.PHONY: install run test clean

install: $(VENV)/.installed

$(BIN)/python:
\t$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
\t$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==%(uv)s

# The stamp is made anew, never touched: in CI the venv may be hard links to a cache entry.
$(VENV)/.installed: %(lock)s | $(BIN)/python $(if $(filter $(BIN)/uv,$(UV)),$(BIN)/uv)
\t$(UV) pip sync --python $(BIN)/python %(lock)s
\t@rm -f $@ && touch $@

run: install
\t$(BIN)/loopline run

test: install
\t$(BIN)/loopline params --check
\t$(BIN)/loopline run
\t$(BIN)/loopline gate

clean:
\trm -rf $(VENV)
"""

DEPLOY_SH = """\
#!/usr/bin/env bash
# The deploy hook of .github/workflows/release.yml:
#
#   scripts/deploy.sh IMAGE VERSION
#
# IMAGE is the reference of the image built once for VERSION and pushed to
# serve.image_registry; VERSION is the registry version prod now names. release.yml runs the
# hook named by the repository variable LOOPLINE_DEPLOY_HOOK; set it to scripts/deploy.sh
# once this script deploys (e.g. `kubectl set image deploy/NAME api="$IMAGE"`, or a call to
# your platform's API). As it is, it deploys nothing and says so.
set -euo pipefail
if [ $# -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "error: usage: $0 IMAGE VERSION (got: $*)" >&2
    exit 2
fi
echo "built $1 ($2), not deployed: scripts/deploy.sh is the no-op hook loopline init wrote"
"""


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _package_files() -> dict[str, bytes]:
    """The loopline package's files by their path in a wheel (templates included)."""
    import loopline
    from loopline.gitops.scaffold.sources import SHIPPED, TEMPLATES, shared_files

    pkg = Path(loopline.__file__).resolve().parent
    out: dict[str, bytes] = {}
    for path in sorted(pkg.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            out[f"loopline/{path.relative_to(pkg).as_posix()}"] = path.read_bytes()
    prefix = f"loopline/gitops/{TEMPLATES}"
    if not any(k.startswith(prefix + "/") for k in out):  # a source checkout: add the copies
        for rel, raw in shared_files().items():
            for inst, shipped in SHIPPED.items():
                if rel == inst or rel.startswith(inst + "/"):
                    out[f"{prefix}/{shipped}{rel[len(inst) :]}"] = raw
    return out


def build_wheel(dest_dir: Path) -> Path:
    """``loopline-<version>-py3-none-any.whl`` of the installed loopline in ``dest_dir``."""
    try:
        dist = metadata.distribution("loopline")
    except metadata.PackageNotFoundError:
        raise LooplineError(
            "loopline is not installed as a package: install it to run init"
        ) from None
    version = dist.version
    info = f"loopline-{version}.dist-info"
    files = _package_files()
    files[f"{info}/METADATA"] = (dist.read_text("METADATA") or "").encode()
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: loopline init\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(f"{name},{_record_hash(raw)},{len(raw)}\n" for name, raw in files.items())
    record += f"{info}/RECORD,,\n"
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"loopline-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in [*files.items(), (f"{info}/RECORD", record.encode())]:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, raw)
    write_bytes(path, buf.getvalue())
    return path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements() -> list[str]:
    """``name==version`` of every package loopline needs (its extras followed), as installed."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [("loopline", frozenset())]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            env_ok = req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in (extras or {""})
            )
            if not env_ok:
                continue
            key = _norm(req.name)
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                raise LooplineError(
                    f"{req.name} (needed by {name}) is not installed: reinstall loopline"
                ) from None
            if key not in seen or req.extras:
                seen.setdefault(key, version)
                todo.append((req.name, frozenset(req.extras)))
    seen.pop("loopline", None)
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def lock_text(wheel_rel: str) -> str:
    lines = [
        "# loopline and what it needs, pinned to the versions `loopline init` ran with.",
        "# `make install` installs exactly this (uv pip sync); to upgrade loopline, run",
        "# `loopline init` of the new version elsewhere and take its vendor/ and this file.",
        f"./{wheel_rel}",
        *pinned_requirements(),
    ]
    return "\n".join(lines) + "\n"


def install_files(dest: Path) -> dict[str, bytes]:
    """The wheel (written into ``dest``/vendor) and the files that install and run it."""
    wheel = build_wheel(dest / VENDOR)
    rel = f"{VENDOR}/{wheel.name}"
    return {
        LOCK: lock_text(rel).encode(),
        "Makefile": (MAKEFILE % {"uv": UV_VERSION, "lock": LOCK}).encode(),
        "scripts/deploy.sh": DEPLOY_SH.encode(),
    }


def workflow_install(text: str) -> str:
    """A workflow of the reference with its install step made the instance's (make install)."""
    text = text.replace("uv sync --frozen --no-dev", "make install")
    text = text.replace("uv.lock", LOCK)
    text = re.sub(r'^\s+- "pyproject\.toml"\n', "", text, flags=re.MULTILINE)
    return re.sub(r'^\s+- "src/\*\*"\n', "", text, flags=re.MULTILINE)
