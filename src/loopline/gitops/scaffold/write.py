"""Writing a new instance: its files, params.yaml, Git and DVC, the first commit.

If a step fails after the first file is written, what was created is removed again, so a
refusal leaves nothing behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loopline.core.dvc import dvc
from loopline.core.files import copy_file, write_atomic, write_text
from loopline.core.git import git
from loopline.core.layout import WORKFLOWS_DIR
from loopline.gitops.scaffold import pins
from loopline.gitops.scaffold.plan import Plan, make_plan
from loopline.gitops.scaffold.render import instance_files
from loopline.gitops.scaffold.sources import shared_files

# The reference's .dvc/config: stage what DVC changes, and compose conf/ on `dvc exp run`.
DVC_CONFIG = """\
[core]
    autostage = true
[hydra]
    enabled = true
    config_dir = conf
    config_name = config
"""


def _write(dest: Path, plan: Plan) -> list[str]:
    """Write the instance's files and the data into ``dest``; return the paths written."""
    written = instance_files(plan, shared_files())
    for rel in [r for r in written if r.startswith(f"{WORKFLOWS_DIR}/")]:
        written[rel] = pins.workflow_install(written[rel].decode()).encode()
    written.update(pins.install_files(dest))
    for rel, raw in written.items():
        write_atomic(dest / rel, chunks=[raw], executable=rel.endswith(".sh"))
    (dest / "data").mkdir(exist_ok=True)
    copy_file(plan.data_file, dest / plan.source)
    return sorted([*written, f"{pins.VENDOR}/"])


def _repo(dest: Path, plan: Plan) -> str:
    """params.yaml, champion.json, git and DVC, and the first commit; return its sha."""
    from loopline.config.compose import compose_params
    from loopline.config.params import load_params
    from loopline.registry.champion import refresh_champion

    compose_params(dest, [], write=True)  # what `loopline params` does
    params = load_params(dest)
    git(dest, "init", "-q", "-b", "main")
    dvc(dest, "init", "-q")
    write_text(dest / ".dvc" / "config", DVC_CONFIG)
    refresh_champion(dest, params.paths.reports, params.gate.champion.stage)
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m",
        f"loopline init: {plan.artifact}, {plan.target!r} from {plan.source}")
    return git(dest, "rev-parse", "HEAD").stdout.strip()


def _missing_top(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet (None if it exists)."""
    top = None
    for p in (path, *path.parents):
        if p.exists():
            break
        top = p
    return top


def _undo(dest: Path, created: Path | None) -> None:
    """Remove what init made: the directories it created, or the contents of an empty DIR."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def run(dest: Path, data: Path, target: str, *, positive: str | None = None,
        name: str | None = None, drop: tuple[str, ...] = (), id_column: str | None = None,
        time_column: str | None = None) -> dict:
    """Scaffold, commit and describe a new instance in ``dest``.

    See :mod:`loopline.gitops.scaffold`.
    """
    dest = Path(dest).absolute()
    plan = make_plan(dest, Path(data), target, positive=positive, name=name, drop=tuple(drop),
                     id_column=id_column, time_column=time_column)
    created = _missing_top(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        files_written = _write(dest, plan)
        commit = _repo(dest, plan)
    except BaseException:
        _undo(dest, created)
        raise
    return {"path": str(dest), "artifact": plan.artifact, "target": plan.target,
            "positive_class": plan.positive_class, "classes": plan.classes,
            "columns": list(plan.schema["columns"]), "rows": plan.rows, "data": plan.source,
            "data_config": f"conf/data/{plan.data_name}.yaml", "commit": commit,
            "workflows": [f for f in files_written if f.startswith(f"{WORKFLOWS_DIR}/")],
            "decisions": [c.as_dict() for c in plan.columns], "id_column": plan.id_column,
            "order_column": plan.order_column, "split_method": plan.split_method,
            "drop": plan.drop, "reading": list(plan.reading), "unlabelled": plan.unlabelled,
            "model": plan.model.as_dict() | {"config": f"conf/model/{plan.model_option}.yaml"}
            if plan.model else None}


def summary(res: dict) -> str:
    """The human summary of :func:`run`'s result: what was created and what to do next."""
    classes = ", ".join(res["classes"])
    workflows = (f"\n  workflows {', '.join(res['workflows'])}" if res["workflows"] else "")
    positive = (f"positive class {res['positive_class']!r}" if res["positive_class"] is not None
                else "multiclass: macro-averaged metrics")
    read = f" ({'; '.join(res['reading'])})" if res.get("reading") else ""
    if res.get("unlabelled"):
        positive += (f"; {res['unlabelled']:,} rows without a label are left out of training "
                     "(ingest), kept in the file")
    width = max((len(d["column"]) for d in res.get("decisions", [])), default=0)
    model = res.get("model")
    model = (f"\n  model     {model['config']}: {model['base']}, leaves of "
             f"{', '.join(map(str, model['min_samples_leaf']))} rows: {model['note']}" if model else "")
    decided = "".join(f"\n    {d['column'].ljust(width)}  {d['role']:<8} {d['kind']:<12} {d['note']}".rstrip()
                      for d in res.get("decisions", []))
    return f"""\
Created loopline instance {res['path']} (artifact {res['artifact']}, commit {res['commit'][:12]})
  data      {res['data']}: {res['rows']:,} rows, {len(res['columns'])} columns{read}
  target    {res['target']} ({classes}); {positive}
  columns   (role, kind, why){decided}{model}
  config    conf/config.yaml, {res['data_config']} (inferred schema: review it), params.yaml
  pipeline  dvc.yaml, .dvc/config (autostage, Hydra), reports/champion.json, README.md\
{workflows}
Next steps:
  cd {res['path']}
  loopline run                          # train, evaluate, export and gate
  git add -A && git commit -m "First model"
  loopline register && loopline promote v0.1.0 --to prod
  loopline serve prod"""
