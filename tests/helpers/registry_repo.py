"""A hand-made loopline repo for registry tests, and the registry CLI on it.

A commit with params.yaml, dvc.yaml and conf/config.yaml (what makes a loopline repo), a
dvc.lock naming models/model.onnx and models/card.json, those files, reports/gate.json, and
the objects in .dvc/cache in DVC 3's layout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import typer
from typer.testing import CliRunner

from loopline.cli.registry import add_commands
from loopline.registry import actions as registry

ART = "credit-risk"
DVC_YAML = ("stages:\n  export:\n    cmd: loopline stage export\n    outs:\n"
            "    - models/card.json\n    - models/model.onnx\n")


def git(cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr}"
    return res.stdout.strip()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Repo:
    """A minimal loopline repo: each ``model()`` call commits a new exported model."""

    def __init__(self, path: Path, stages: list[str] | None = None) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")
        params = f"artifact: {ART}\nseed: 42\n"
        if stages:
            params += "registry:\n  stages: [" + ", ".join(stages) + "]\n"
        (path / "params.yaml").write_text(params)
        (path / "dvc.yaml").write_text(DVC_YAML)
        (path / "conf").mkdir()
        (path / "conf" / "config.yaml").write_text("defaults: []\n")
        (path / ".dvc").mkdir()
        (path / ".dvc" / ".gitignore").write_text("/cache\n/tmp\n")
        (path / "models").mkdir()
        (path / "models" / ".gitignore").write_text("/model.onnx\n/card.json\n")
        (path / "reports").mkdir()
        self.files: dict[str, dict[str, bytes]] = {}

    def model(self, label: str, verdict: str = "pass") -> str:
        """Write, cache and commit a model labelled ``label``; return the commit."""
        onnx = f"onnx model {label}\n".encode() * 50
        sha = hashlib.sha256(onnx).hexdigest()
        card = json.dumps({"artifact": ART, "metrics": {"roc_auc": 0.8, "label": label},
                           "model_files": {"onnx": "models/model.onnx", "onnx_sha256": sha},
                           "data": {"raw_md5": "d" * 32}, "params_hash": "p" * 16}).encode()
        gate = {"verdict": verdict,
                "checks": [{"name": "roc_auc", "value": 0.8 if verdict == "pass" else 0.6,
                            "threshold": 0.7, "op": ">=", "passed": verdict == "pass",
                            "reason": "" if verdict == "pass" else "roc_auc 0.6 < 0.7"}],
                "champion": None, "candidate": {"onnx_sha256": sha}}
        (self.path / "models" / "model.onnx").write_bytes(onnx)
        (self.path / "models" / "card.json").write_bytes(card)
        (self.path / "reports" / "gate.json").write_text(json.dumps(gate))
        for data in (onnx, card):
            obj = self.path / ".dvc" / "cache" / "files" / "md5" / md5(data)[:2] / md5(data)[2:]
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
        outs = "".join(f"    - path: models/{name}\n      hash: md5\n      md5: {md5(data)}\n"
                       f"      size: {len(data)}\n"
                       for name, data in (("card.json", card), ("model.onnx", onnx)))
        (self.path / "dvc.lock").write_text(
            "schema: '2.0'\nstages:\n  export:\n    cmd: loopline stage export\n    outs:\n" + outs)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", f"model {label}")
        commit = git(self.path, "rev-parse", "HEAD")
        self.files[commit] = {"model.onnx": onnx, "card.json": card}
        return commit

    def register(self, label: str, verdict: str = "pass", **kw) -> dict:
        self.model(label, verdict)
        if verdict != "pass":
            kw.setdefault("force", True)
            kw.setdefault("reason", f"test: {label} failed its gate")
        return registry.register(self.path, **kw)

    def tags(self) -> list[str]:
        return git(self.path, "tag", "-l").splitlines()


def cli(root: Path, *args: str):
    app = typer.Typer()
    add_commands(app)
    return CliRunner().invoke(app, [*args, "--repo", str(root)])


def message(root: Path, tag: str) -> dict:
    return json.loads(git(root, "tag", "-l", "--format=%(contents)", tag))
