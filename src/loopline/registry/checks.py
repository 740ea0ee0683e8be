"""What must hold before a model is registered.

The version names a commit, so the work tree must be clean; the model in the workspace must
be the one the committed dvc.lock produced; the gate report must have judged this model and
passed, unless a forced override says why (``--force --reason``, recorded in the tag).
"""

from __future__ import annotations

from pathlib import Path

from loopline.core.dvc import lock_md5, lock_outs
from loopline.core.errors import LooplineError
from loopline.core.files import load_json, md5_file
from loopline.core.git import git, show
from loopline.core.layout import CARD_JSON, DVC_LOCK, GATE_JSON, MODEL_ONNX, Layout


def check_force(force: bool, reason: str | None) -> str | None:
    """The stripped reason, after checking that ``force`` and ``reason`` come together."""
    reason = (reason or "").strip() or None
    if force != bool(reason):
        raise LooplineError("--force and --reason go together: a forced override must say why",
                            exit_code=2)
    return reason


def check_clean(root: Path) -> str:
    """HEAD's commit, after checking that no tracked file is modified."""
    status = git(root, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules")
    if status.stdout.strip():
        files = [ln[3:] for ln in status.stdout.splitlines()][:5]
        raise LooplineError("the work tree has uncommitted changes (" + ", ".join(files)
                            + "): commit them first, so the version names the commit that made it")
    head = git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    if head.returncode != 0:
        raise LooplineError(f"{root} has no commit yet: commit the pipeline and its dvc.lock first")
    return head.stdout.strip()


def check_model(layout: Layout) -> tuple[dict, dict[str, str]]:
    """The model card and the md5s of the model files, after checking that the workspace
    model is the one HEAD's dvc.lock made."""
    lock = show(layout.root, "HEAD", DVC_LOCK)
    if lock is None:
        raise LooplineError(f"{DVC_LOCK} is not committed at HEAD: run the pipeline and commit "
                            f"{DVC_LOCK}")
    outs = lock_outs(lock)
    md5s = {}
    for name in (MODEL_ONNX, CARD_JSON):
        rel = f"{layout.models}/{name}"
        want = lock_md5(outs, rel, "at HEAD")
        path = layout.root / rel
        if not path.is_file():
            raise LooplineError(f"{rel} is missing in the workspace: run `dvc pull` or "
                                "`loopline run`")
        got = md5_file(path)
        if got != want:
            raise LooplineError(f"{rel} in the workspace (md5 {got[:12]}) is not the one the "
                                f"committed dvc.lock produced (md5 {want[:12]}): run `dvc "
                                "checkout` or rerun the pipeline and commit dvc.lock")
        md5s[name] = got
    return load_json(layout.model(CARD_JSON), "model card"), md5s


def check_gate(layout: Layout, card: dict, force: bool) -> dict:
    """reports/gate.json, after checking it judged this model and (unless forced) passed."""
    where = f"{layout.reports}/{GATE_JSON}"
    if not layout.report(GATE_JSON).is_file():  # the gate stage failed, or never ran
        raise LooplineError("no gate verdict for this model: the gate stage did not finish; "
                            "`loopline run` runs it and shows its error")
    gate = load_json(layout.report(GATE_JSON), "the gate report (run the gate stage)")
    verdict = gate.get("verdict")
    cand = (gate.get("candidate") or {}).get("onnx_sha256")
    sha = (card.get("model_files") or {}).get("onnx_sha256")
    if cand and sha and cand != sha:
        raise LooplineError(f"{where} judged another model (onnx_sha256 {cand[:12]}, "
                            f"the card says {sha[:12]}): rerun the gate")
    if verdict not in ("pass", "fail"):
        raise LooplineError(f"{where}: verdict must be 'pass' or 'fail' (got {verdict!r})")
    if verdict != "pass" and not force:
        failed = [f"{c.get('name')} {c.get('value')} {c.get('op')} {c.get('threshold')}"
                  for c in gate.get("checks", []) if isinstance(c, dict) and not c.get("passed")]
        raise LooplineError(f"{where}: the gate failed ("
                            + ("; ".join(failed) or "no passing verdict")
                            + "): a model that failed its gate is not registered "
                            "(use --force --reason to record it anyway)")
    return gate
