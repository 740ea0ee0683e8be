"""The simulation's sandbox: a copy of the instance in its own Git and DVC repository.

The instance's tracked files are copied into the sandbox (``.loopline/simulate/seed-N`` by
default), a seeded share of the data is held back as future traffic, and the pipeline and
the registry run there through their own functions: the first model is trained, registered
and promoted; later, a faulty extract's model is forced into prod.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from loopline.core.dvc import dvc
from loopline.core.errors import LooplineError
from loopline.core.files import copy_file, write_text
from loopline.core.git import git
from loopline.core.layout import CONF_DIR, CONF_NAME, STATE_DIR
from loopline.pipeline.tabular import as_prepared, blank_placeholders, normalise_objects, read_table, write_table

MARKER = ".loopline-simulate"
BRANCH = "faulty-extract"
QUICK = {"search": {"n_iter": 3, "cv": 3, "n_jobs": 1},  # --quick: trainings take seconds
         "evaluate": {"permutation": {"n_repeats": 2}}}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _git(cwd: Path, *args: str) -> str:
    return git(cwd, *args).stdout.strip()


def make_sandbox(root: Path, params: Any, workdir: Path, *, seed: int, quick: bool,
                 extra: dict | None = None) -> Any:
    """Copy the instance's tracked files into ``workdir``, hold back the traffic; the pool.
    ``extra``: config values of the scenario, merged over ``simulate.overrides``."""
    import numpy as np

    data = params.data
    if data.id_column or data.order_column:
        raise LooplineError("loopline simulate appends the monitored records to the data, which "
                            "needs data without data.id_column/order_column")
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / MARKER).is_file():
            raise LooplineError(f"{workdir} exists and is not a simulation sandbox: choose another "
                                "--workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    write_text(workdir / MARKER, "made by loopline simulate; removed by the next run\n")
    tracked = _git(root, "ls-files", "-z").split("\0")
    for rel in filter(None, tracked):
        src = root / rel
        if rel.startswith(("reports/", "logs/")) or not src.is_file():
            continue  # the sandbox's reports are its own
        copy_file(src, workdir / rel)
    source = root / data.source
    if not source.is_file():
        raise LooplineError(f"data.source {data.source} is missing: `loopline pull` it first")
    df = read_table(source, data.format)
    df = df[df[data.target].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(df))
    cut = int(round(len(df) * (1 - params.simulate.holdout)))
    base, pool = df.iloc[order[:cut]], df.iloc[order[cut:]]
    (workdir / f"{data.source}.dvc").unlink(missing_ok=True)  # the sandbox's Git holds its data
    (workdir / data.source).parent.mkdir(parents=True, exist_ok=True)
    write_table(base.reset_index(drop=True), workdir / data.source, data.format)
    overrides = dict(params.simulate.overrides)
    if quick:
        overrides = _merge(overrides, QUICK)
    if extra:
        overrides = _merge(overrides, extra)
    if overrides:  # values in conf/config.yaml itself win over its groups (`_self_` comes last)
        import yaml

        conf = workdir / CONF_DIR / f"{CONF_NAME}.yaml"
        write_text(conf, conf.read_text(encoding="utf-8") + "\n# loopline simulate: the sandbox's "
                   "overrides\n" + yaml.safe_dump(overrides, sort_keys=False))
    ignore = workdir / ".gitignore"
    write_text(ignore, (ignore.read_text() if ignore.is_file() else "")
               + f"\n/{MARKER}\n/logs/\n/{STATE_DIR}/\n/reports/monitor*\n/reports/alerts.jsonl\n")
    git(workdir, "init", "-q", "-b", "main")
    _git(workdir, "config", "user.name", "loopline simulate")
    _git(workdir, "config", "user.email", "simulate@loopline.invalid")
    if not (workdir / ".dvc").is_dir():
        dvc(workdir, "init", "-q")
    dvc(workdir, "config", "--local", "core.analytics", "false")
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-q", "-m", f"Simulation sandbox (seed {seed}): "
         f"{len(pool)} of {len(df)} rows held back as future traffic")
    return numbers_read(pool, data)


def numbers_read(pool: Any, data: Any) -> Any:
    """The traffic with numbers whose gaps the file marks with text (``missing_values``: "?",
    blank) read as ingest reads them, numbers and gaps, which the steps scale and send."""
    missing = {n: v for n, v in data.schema_.missing_values.items() if n in pool.columns}
    if not missing:
        return pool
    out = blank_placeholders(normalise_objects(pool), missing)
    for name in missing:
        out[name] = as_prepared(out[name], data.schema_.columns[name]).to_numpy()
    return out


def first_version(work: Path) -> dict:
    """Train, register and promote the first version (its gate must pass)."""
    from loopline.pipeline.repro import run_pipeline
    from loopline.registry import actions as registry

    outcome = run_pipeline(work)
    if not outcome.ok:
        why = (outcome.repro.error or ", ".join((outcome.gate or {}).get("failed", []))
               or outcome.error_line())
        raise LooplineError(f"the first model of the simulation did not pass its gate: {why}")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "First model")
    reg = registry.register(work)
    registry.promote(reg["version"], "prod", root=work)
    return reg


def faulty_model(work: Path, params: Any, seed: int) -> str:
    """Train on a faulty extract (labels shuffled) on a branch; register and force it to prod
    (under a canary or blue_green ``deploy.strategy``, that starts a rollout of it)."""
    import numpy as np

    from loopline.pipeline.repro import run_pipeline
    from loopline.registry import actions as registry

    data = params.data
    _git(work, "checkout", "-q", "-b", BRANCH)
    source = work / data.source
    df = read_table(source, data.format)
    df[data.target] = np.random.default_rng(seed + 1).permutation(df[data.target].to_numpy())
    write_table(df, source, data.format)
    _git(work, "commit", "-q", "-am", "Faulty extract: the labels are shuffled")
    run_pipeline(work)  # its gate fails: that is the point
    _git(work, "add", "-u")
    _git(work, "commit", "-q", "-m", "Train on the faulty extract")
    reason = "simulated: an operator overrides the failed gate of a faulty extract's model"
    reg = registry.register(work, force=True, reason=reason)
    registry.promote(reg["version"], "prod", root=work, force=True, reason=reason)
    _git(work, "checkout", "-q", "main")
    dvc(work, "checkout", "-q")
    return reg["version"]


def same_model(work: Path, note: str) -> str:
    """Register the model of the current pipeline outputs again, on a new commit: a
    candidate as good as prod (its gate passed); the version."""
    from loopline.registry import actions as registry

    write_text(work / "NOTES.md", note + "\n")
    _git(work, "add", "NOTES.md")
    _git(work, "commit", "-q", "-m", note)
    return registry.register(work)["version"]
