"""``loopline ci``: run a GitHub Actions workflow's ``run:`` steps on the local checkout.

The steps are read from ``.github/workflows/<name>.yml`` (never duplicated here), so what a
user sees before pushing is what CI will do. Steps that only make sense on GitHub (checkout,
set-up, install, comments, artifact upload) carry ``if: ${{ !env.ACT }}`` — the convention
nektos/act uses too — and are skipped: locally the current environment is the installed
one, and its ``bin`` directory goes first on PATH. ``${{ … }}`` expressions are evaluated
against a small local context (``env``, ``github.base_ref`` = main, ``secrets.X`` from the
environment variable X, empty for the rest) with GitHub's operators and status functions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from loopline.core.errors import LooplineError

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)
_TOKEN = re.compile(r"'(?:[^']|'')*'|&&|\|\||==|!=|!|\(|\)|[A-Za-z_][\w.\-]*(?:\(\))?|\d+(?:\.\d+)?|\S")


def load_workflow(root: Path, name: str) -> dict:
    path = root / ".github" / "workflows" / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / ".github" / "workflows").glob("*.yml"))
        raise LooplineError(f"no workflow {name!r} in .github/workflows (found: {', '.join(known) or 'none'})")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise LooplineError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        raise LooplineError(f"{path}: no jobs")
    return doc


def _git(root: Path, *args: str) -> str:
    from loopline.core.git import git

    res = git(root, *args, check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def context(root: Path, workflow: str, env: dict[str, str]) -> dict[str, Any]:
    """The values ``${{ … }}`` may read when run locally."""
    events = {"pr": "pull_request", "main": "push", "release": "workflow_dispatch",
              "monitor": "workflow_dispatch"}
    return {
        "github.event_name": events.get(workflow, "workflow_dispatch"),
        "github.base_ref": "main" if workflow == "pr" else "",
        "github.ref_name": _git(root, "rev-parse", "--abbrev-ref", "HEAD"),
        "github.sha": _git(root, "rev-parse", "HEAD"),
        "github.workspace": str(root),
        "runner.os": "Linux",
        "_env": env,
    }


def evaluate(expr: str, ctx: dict[str, Any], status: dict[str, bool]) -> Any:
    """Evaluate one GitHub expression (the part inside ``${{ }}``)."""
    out: list[str] = []
    values: list[Any] = []
    for tok in _TOKEN.findall(expr):
        if tok.startswith("'"):
            values.append(tok[1:-1].replace("''", "'"))
            out.append(f"_v[{len(values) - 1}]")
        elif tok in ("&&", "||", "!", "==", "!="):
            out.append({"&&": " and ", "||": " or ", "!": " not ", "==": "==", "!=": "!="}[tok])
        elif tok in ("(", ")"):
            out.append(tok)
        elif tok in ("always()", "success()", "failure()", "cancelled()"):
            out.append({"always()": "True", "success()": str(not status["failed"]),
                        "failure()": str(status["failed"]), "cancelled()": "False"}[tok])
        elif tok in ("true", "false", "null"):
            out.append({"true": "True", "false": "False", "null": "None"}[tok])
        elif re.fullmatch(r"\d+(?:\.\d+)?", tok):
            out.append(tok)
        elif re.fullmatch(r"[A-Za-z_][\w.\-]*", tok):
            values.append(_lookup(tok, ctx))
            out.append(f"_v[{len(values) - 1}]")
        else:
            raise LooplineError(f"cannot evaluate {expr!r} locally (at {tok!r})")
    try:
        return eval("".join(out), {"__builtins__": {}}, {"_v": values})  # noqa: S307 - tokens only
    except SyntaxError as err:
        raise LooplineError(f"cannot evaluate {expr!r} locally: {err}") from err


def _lookup(name: str, ctx: dict[str, Any]) -> Any:
    env = ctx["_env"]
    if name.startswith("env."):
        return env.get(name[4:], "")
    if name.startswith("secrets."):
        return env.get(name[8:], "")
    return ctx.get(name, "")


def interpolate(text: str, ctx: dict[str, Any], status: dict[str, bool]) -> str:
    def one(m: re.Match) -> str:
        value = evaluate(m.group(1), ctx, status)
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return _EXPR.sub(one, str(text))


def _condition(cond: Any, ctx: dict[str, Any], status: dict[str, bool]) -> bool:
    if cond is None:
        return not status["failed"]
    if isinstance(cond, bool):
        return cond and not status["failed"]
    text = str(cond).strip()
    m = _EXPR.fullmatch(text)
    inner = m.group(1) if m else text
    uses_status = re.search(r"\b(always|success|failure|cancelled)\(\)", inner)
    value = bool(evaluate(inner, ctx, status))
    return value if uses_status else value and not status["failed"]


def _env_block(block: Any, ctx: dict, status: dict) -> dict[str, str]:
    return {str(k): interpolate(v, ctx, status) for k, v in (block or {}).items()}


def run(root: Path, workflow: str, *, dry_run: bool = False, echo: bool = True) -> dict:
    """Run every job's steps in file order; the per-step outcome and overall result."""
    doc = load_workflow(root, workflow)
    env = {**os.environ, "ACT": "true", "LOOPLINE_LOCAL_CI": "1", "CI": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    status = {"failed": False}
    ctx = context(root, workflow, env)
    env.update(_env_block(doc.get("env"), ctx, status))
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="loopline-ci-") as tmp:
        env["GITHUB_PATH"] = str(Path(tmp) / "path")
        env["GITHUB_ENV"] = str(Path(tmp) / "env")
        env["GITHUB_OUTPUT"] = str(Path(tmp) / "output")
        for job_id, job in doc["jobs"].items():
            job_env = {**env, **_env_block(job.get("env"), {**ctx, "_env": env}, status)}
            jctx = {**ctx, "_env": job_env}
            if "if" in job and not _condition(job["if"], jctx, status):
                results.append({"job": job_id, "step": "(job)", "outcome": "skipped"})
                continue
            for i, step in enumerate(job.get("steps") or []):
                name = step.get("name") or step.get("uses") or f"step {i + 1}"
                res = _step(root, job_id, name, step, job_env, jctx, status, dry_run, echo)
                if echo and res["outcome"] == "skipped":
                    print(f"⏭ {job_id} / {name}: skipped ({res['why']})", flush=True)
                results.append(res)
    if echo:
        failed = [r["step"] for r in results if r["outcome"] == "failure"]
        print(f"{workflow}: " + (f"FAILED at {', '.join(failed)}" if failed else "passed"), flush=True)
    return {"workflow": workflow, "passed": not status["failed"], "steps": results}


def _step(root: Path, job_id: str, name: str, step: dict, job_env: dict, ctx: dict,
          status: dict, dry_run: bool, echo: bool) -> dict:
    res = {"job": job_id, "step": name}
    if "run" not in step:
        return {**res, "outcome": "skipped", "why": f"uses {step.get('uses')} (GitHub only)"}
    if not _condition(step.get("if"), ctx, status):
        why = f"if: {step['if']}" if "if" in step else "an earlier step failed"
        return {**res, "outcome": "skipped", "why": why}
    step_env = {**job_env, **_env_block(step.get("env"), ctx, status)}
    script = interpolate(step["run"], {**ctx, "_env": step_env}, status)
    if echo:
        print(f"▶ {job_id} / {name}\n  $ {script.strip()}", flush=True)
    if dry_run:
        return {**res, "outcome": "planned", "run": script}
    cwd = root / interpolate(step.get("working-directory", "."), ctx, status)
    started = time.perf_counter()
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=step_env, capture_output=not echo, text=True)
    seconds = round(time.perf_counter() - started, 2)
    ok = proc.returncode == 0
    if not ok and not step.get("continue-on-error"):
        status["failed"] = True
    outcome = "success" if ok else ("failure (continued)" if step.get("continue-on-error") else "failure")
    if echo:
        print(f"  {outcome} in {seconds}s\n", flush=True)
    out = {**res, "outcome": outcome, "exit": proc.returncode, "seconds": seconds, "run": script}
    if not echo:
        out["output"] = ((proc.stdout or "") + (proc.stderr or ""))[-4000:]
    return out
