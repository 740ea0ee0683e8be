"""Gate + registry on a real pipeline: register, promote, a degraded challenger, rollback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.helpers.commands import loopline, ran_stages, sh


def commit(root: Path, msg: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", msg, cwd=root)


def test_first_model_passes_on_absolute_checks_only(built_instance: Path) -> None:
    doc = json.loads((built_instance / "reports/gate.json").read_text())
    assert doc["verdict"] == "pass", doc["failed"]
    skipped = [c for c in doc["checks"] if c["skipped"]]
    assert skipped and all("no champion in prod yet" in c["reason"] for c in skipped)
    kinds = {c["kind"] for c in doc["checks"]}
    assert {"absolute", "slice", "fairness", "drift", "parity"} <= kinds
    assert (built_instance / "reports/gate.html").stat().st_size > 10_000
    assert "## Gate: PASS" in (built_instance / "reports/gate.md").read_text()


def test_champion_flow_and_degraded_candidate(built_copy: Path) -> None:
    root = built_copy
    reg = json.loads(loopline("register", "--json", cwd=root).stdout)
    assert reg["version"] == "v0.1.0"
    loopline("promote", "v0.1.0", "--to", "prod", cwd=root)
    assert loopline("which", "prod", cwd=root).stdout.strip().startswith("v0.1.0")

    # the champion changed: only the gate reruns, now with relative checks against v0.1.0
    out = loopline("run", "--json", cwd=root).stdout
    assert ran_stages(out) == {"gate"}
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["champion"]["version"] == "v0.1.0" and gate["verdict"] == "pass"
    rel = [c for c in gate["checks"] if c["kind"] == "champion"]
    assert rel and not any(c["skipped"] for c in rel) and all(c["passed"] for c in rel)
    assert loopline("run", "--json", cwd=root).stdout.count('"state": "done"') == 0  # no-op stays no-op
    # the gate scored the champion's model fetched by `loopline run`, checked by its sha256;
    # where it lies is not part of the gate's report
    champ = json.loads((root / "reports/champion.json").read_text())
    assert champ["version"] == "v0.1.0" and champ["onnx_path"] == ".loopline/champion/model.onnx"
    assert hashlib.sha256((root / champ["onnx_path"]).read_bytes()).hexdigest() == champ["onnx_sha256"]
    assert set(gate["champion"]) == {"stage", "version", "tag", "commit", "onnx_sha256", "metrics"}
    (root / champ["onnx_path"]).write_bytes(b"damaged")  # fetched again, and nothing reruns
    assert loopline("run", "--json", cwd=root).stdout.count('"state": "done"') == 0
    assert hashlib.sha256((root / champ["onnx_path"]).read_bytes()).hexdigest() == champ["onnx_sha256"]
    commit(root, "gate against v0.1.0")

    # a deliberately weak model fails the relative checks; run exits 1, register refuses it
    res = loopline("run", "--json", "search.method=none", "model.estimator.max_iter=3",
                   "+model.estimator.max_leaf_nodes=2", cwd=root, check=False)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["gate"]["verdict"] == "fail" and "champion_roc_auc" in doc["gate"]["failed"]
    gate = json.loads((root / "reports/gate.json").read_text())
    failed = next(c for c in gate["checks"] if c["name"] == "champion_roc_auc")
    assert "vs champion v0.1.0" in failed["reason"] and "misses" in failed["reason"]
    assert "## Gate: FAIL" in (root / "reports/gate.md").read_text()
    res = loopline("gate", cwd=root, check=False)
    assert res.returncode == 1 and "champion_roc_auc" in res.stdout
    commit(root, "weak candidate")
    res = loopline("register", cwd=root, check=False)
    assert res.returncode != 0 and "gate" in res.stderr.lower()
    assert loopline("which", "prod", cwd=root).stdout.strip().startswith("v0.1.0")
