"""``loopline init``: scaffold a new, working loopline instance for the user's own data.

An instance is a Git + DVC repository laid out like the reference instance at the root of
the loopline repository. Its generic parts (dvc.yaml and the conf groups features, model,
search, evaluate, export, gate and serve) come from the package templates under
``loopline/templates``, which are byte-identical copies of the reference files (a test keeps
them so). Only what depends on the data is generated: ``conf/data/<name>.yaml`` with a
schema inferred by :mod:`loopline.config.infer`, the ``data`` and ``artifact`` entries of
``conf/config.yaml``, and ``params.yaml`` composed exactly as ``loopline params`` does.

Template files are adapted by small edits, each checked so that a changed template fails
loudly instead of being silently half-edited:

- ``conf/config.yaml`` gets the instance's header comment, data option and artifact;
- ``dvc.yaml`` loses its ``src/loopline/...`` dependencies: an instance uses loopline as
  an installed package, so those paths do not exist there and DVC would refuse to run;
- ``conf/evaluate`` gets ``slice_column: null`` and ``conf/gate`` empty slice bounds: the
  reference slices by a column of its own data, which the user's data need not have.

Everything the user can get wrong is checked before anything is written; if a later step
fails, what was created is removed again, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.names import NAME_HINT, NAME_RE

TEMPLATE_SUFFIX = ".tmpl"  # dvc.yaml is shipped as dvc.yaml.tmpl: DVC collects every dvc.yaml
WORKFLOWS_DIR = "github/workflows"  # optional: copied to the instance's .github/workflows/

GITIGNORE = "/.loopline/\n/logs/\n__pycache__/\n.venv/\n"
DVCIGNORE = ("# Paths DVC does not need to look at (speeds up `dvc status` / `dvc repro`).\n"
             ".venv/\n.github/\n/logs/\n/.loopline/\n")
# The reference's .dvc/config: stage what DVC changes, and compose conf/ on `dvc exp run`.
DVC_CONFIG = """\
[core]
    autostage = true
[hydra]
    enabled = true
    config_dir = conf
    config_name = config
"""

GATE_SLICES = """\
slices:                    # none until evaluate.slice_column names a column (conf/evaluate/);
  min: {}                  # then e.g. min: {roc_auc: 0.70}
  max_gap: {}              # and max_gap: {roc_auc: 0.15} (largest difference between slices)
"""
DVC_NOTE = """\
# In this instance loopline is an installed package, so its code is not a dependency of the
# stages: after upgrading loopline, `loopline run --force` reruns everything.
"""


@dataclass(frozen=True)
class Plan:
    """Everything ``init`` will write, decided (and checked) before anything is written."""

    dest: Path
    data_file: Path
    data_name: str                 # the conf/data option: conf/data/<data_name>.yaml
    artifact: str
    target: str
    positive_class: str
    classes: dict[str, int]        # class -> rows, most frequent first
    rows: int
    schema: dict = field(repr=False)
    example: dict = field(repr=False)  # one row's features, for the README's /predict call

    @property
    def source(self) -> str:
        """The data file's path inside the instance, as conf/data names it."""
        return f"data/{self.data_file.name}"


# ----------------------------------------------------------------- names and checks


def slug(text: str) -> str:
    """Lower-case letters, digits and single '-', starting with a letter ('' if none)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return re.sub(r"^[^a-z]+", "", s).strip("-")


def artifact_name(dest: Path, name: str | None = None) -> str:
    """The registry artifact: ``--name`` (checked), else DIR's base name made valid."""
    if name is not None:
        if not NAME_RE.match(name):
            raise LooplineError(f"--name {name!r} is not a valid artifact name: use {NAME_HINT} "
                                "(e.g. churn)")
        return name
    base = slug(dest.resolve().name) or "model"
    return base if NAME_RE.match(base) else f"{base}-model"


def check_dest(dest: Path) -> None:
    """DIR must not exist, or be an empty directory."""
    if dest.exists() and not dest.is_dir():
        raise LooplineError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise LooplineError(f"{dest} is not empty: choose a new directory for the instance")


def read_data(path: Path):  # noqa: ANN201 (pandas is imported lazily)
    """The data as the ingest stage will see it (text normalised, ``row_id`` added)."""
    from loopline.pipeline.stages import ingest
    from loopline.pipeline.tabular import read_table

    return ingest.ingest(read_table(path), None, None)


def target_classes(df, target: str) -> dict[str, int]:  # noqa: ANN001
    """Rows per class of ``target``, most frequent first, as the schema names the classes.

    Raises:
        LooplineError: unknown column, empty target values, or fewer than two classes.
    """
    from loopline.config.infer import infer_schema

    if target not in df.columns:
        cols = ", ".join(str(c) for c in df.columns if c != "row_id")
        raise LooplineError(f"target {target!r} is not a column of the data (columns: {cols})")
    empty = int(df[target].isna().sum())
    if empty:
        raise LooplineError(f"target {target!r} has {empty} empty value(s): remove those rows "
                            "or fill them before `loopline init`")
    _check_label_text(df[target], target)
    names = infer_schema(df[[target]], target)["columns"][target]["categories"]
    counts = df[target].astype(str).value_counts()
    classes = {c: int(counts.get(c, 0)) for c in sorted(names, key=lambda c: -counts.get(c, 0))}
    if len(classes) < 2:
        raise LooplineError(f"target {target!r} has only one class ({names[0]!r}): a "
                            "classifier needs at least 2")
    return classes


def _check_label_text(col, target: str) -> None:  # noqa: ANN001
    """Refuse labels whose plain text is not their canonical text (True, 1.0, "01").

    The schema names classes by ``str(value)`` while validate and prepare compare labels
    by their canonical text (:func:`loopline.pipeline.tabular.as_text`); the two agree for
    words and integers only, so any other target would fail validation at the first run.
    """
    from loopline.pipeline.tabular import as_text

    values = col.dropna()
    plain, canonical = values.astype(str), as_text(values)
    odd = plain[plain != canonical]
    if len(odd):
        raise LooplineError(f"target {target!r} holds {odd.iloc[0]!r}, which loopline reads as "
                            f"{canonical[odd.index[0]]!r}: store the classes as words or integers")


def positive_class(classes: dict[str, int], target: str, requested: str | None) -> str:
    """``--positive-class`` (checked), else the minority class (ties: first by name)."""
    if requested is None:
        return min(sorted(classes), key=lambda c: classes[c])
    if requested not in classes:
        raise LooplineError(f"positive class {requested!r} is not a value of target {target!r} "
                            f"(values: {', '.join(sorted(classes))})")
    return requested


def example_record(df, schema: dict, target: str) -> dict:  # noqa: ANN001
    """The features of the first complete row (else of the first row, gaps left out)."""
    complete = df.dropna()
    row = (complete if len(complete) else df).iloc[0]
    out = {}
    for name, rule in schema["columns"].items():
        value = row[name]
        if name == target or value is None or value != value:  # NaN != NaN
            continue
        value = value.item() if hasattr(value, "item") else value
        out[name] = int(value) if rule["type"] == "integer" else value
    return out


def make_plan(dest: Path, data: Path, target: str, *, positive: str | None = None,
              name: str | None = None) -> Plan:
    """Check the user's input and decide everything ``init`` writes; writes nothing."""
    from loopline.config.infer import infer_schema

    check_dest(dest)
    artifact = artifact_name(dest, name)
    df = read_data(data)
    classes = target_classes(df, target)
    schema = infer_schema(df, target)
    return Plan(dest=dest, data_file=data, data_name=slug(data.name.split(".")[0]) or "data",
                artifact=artifact, target=target,
                positive_class=positive_class(classes, target, positive), classes=classes,
                rows=len(df), schema=schema, example=example_record(df, schema, target))


# ------------------------------------------------------------------------ templates


def templates() -> Traversable:
    """The package's template directory."""
    return files("loopline.gitops").joinpath("templates")


def _walk(node: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                yield from _walk(child, rel + "/")
        elif not child.name.startswith("."):
            yield rel, child


def instance_templates(root: Traversable | None = None) -> dict[str, bytes]:
    """Template files by their path in an instance (``dvc.yaml``, ``conf/...``).

    These are the files that must stay byte-identical to the reference instance.
    """
    return {rel.removesuffix(TEMPLATE_SUFFIX): node.read_bytes()
            for rel, node in _walk(root or templates())
            if rel == "dvc.yaml" + TEMPLATE_SUFFIX or rel.startswith("conf/")}


def workflow_templates(root: Traversable | None = None) -> dict[str, bytes]:
    """GitHub workflow files by their path in an instance; empty when there are none."""
    node = (root or templates()).joinpath(WORKFLOWS_DIR)
    if not node.is_dir():
        return {}
    return {f".github/workflows/{rel}": n.read_bytes() for rel, n in _walk(node)}


def _sub_once(pattern: str, repl: str, text: str, what: str) -> str:
    """``re.sub`` that must match exactly once: a template that changed shape is a bug."""
    new, n = re.subn(pattern, repl, text, flags=re.MULTILINE)
    if n != 1:
        raise RuntimeError(f"template {what}: expected one match of {pattern!r}, found {n}")
    return new


def _set_value(text: str, key: str, value: str, what: str) -> str:
    """Replace the value of ``key: value`` on its line, keeping any comment's column."""
    def repl(m: re.Match) -> str:
        width = len(m.group(2)) + len(m.group(3))
        return m.group(1) + (value.ljust(max(width, len(value) + 1)) if m.group(3) else value)

    return _sub_once(rf"^({re.escape(key)}: )([^\s#]+)( *(?=#)|)", repl, text, what)


def render_config(template: str, plan: Plan) -> str:
    """conf/config.yaml: the reference's, with this instance's header, data and artifact."""
    header = (f"# loopline instance {plan.artifact}: predicts {plan.target!r} from {plan.source}\n"
              "# (made by `loopline init`). conf/ is the source of truth; `loopline params`\n"
              "# composes it into params.yaml.\n")
    text = _sub_once(r"\A(?:#.*\n)+", header, template, "conf/config.yaml header")
    text = _set_value(text, "  - data", plan.data_name, "conf/config.yaml defaults")
    return _set_value(text, "artifact", plan.artifact, "conf/config.yaml artifact")


def render_dvc_yaml(template: str) -> str:
    """dvc.yaml without the framework's source files as deps (see the module docstring)."""
    text, n = re.subn(r"^[ \t]+- src/loopline/\S+[ \t]*\n", "", template, flags=re.MULTILINE)
    if n == 0:
        raise RuntimeError("template dvc.yaml: no src/loopline dependencies to remove")
    return _sub_once(r"^stages:", DVC_NOTE + "stages:", text, "dvc.yaml stages")


def render_evaluate(template: str) -> str:
    """conf/evaluate: no slice column (the user's data may have none to slice by)."""
    return _set_value(template, "slice_column", "null", "conf/evaluate slice_column")


def render_gate(template: str) -> str:
    """conf/gate: empty slice bounds (they need evaluate.slice_column)."""
    return _sub_once(r"^slices:.*\n(?:[ \t]+.*\n)*", GATE_SLICES, template, "conf/gate slices")


RENDER = {"dvc.yaml": render_dvc_yaml, "conf/evaluate/default.yaml": render_evaluate,
          "conf/gate/default.yaml": render_gate}


# ------------------------------------------------------------------ generated files


def _q(value: str) -> str:
    """A YAML scalar that stays a string ("no", "1", "null" included)."""
    import json

    return json.dumps(value)


POSITIVE_NOTE = "the class recall, precision and ROC AUC are about"


def _line(key: str, value: str, comment: str) -> str:
    """``key: value`` with its comment at column 31, as in the reference conf/data file."""
    text = f"{key}: {value}"
    return f"{text.ljust(30)} # {comment}"


def data_config(plan: Plan) -> str:
    """conf/data/<name>.yaml: where the data is, what to predict, and its inferred schema."""
    from loopline.config.infer import schema_yaml

    shares = ", ".join(f"{c} {n / plan.rows:.0%}" for c, n in plan.classes.items())
    return f"""\
# {plan.data_file.name}: {plan.rows:,} rows, {len(plan.schema['columns'])} columns; target \
{plan.target} ({shares}).
# Written by `loopline init`. The schema was inferred from the data (loose ranges, every
# category seen): review it, tighten it where the domain says so, and commit.
name: {plan.data_name}
{_line("source", _q(plan.source), "CSV or Parquet, relative to the repo root")}
format: auto                   # auto | csv | parquet
target: {_q(plan.target)}
{_line("positive_class", _q(plan.positive_class), POSITIVE_NOTE)}
id_column: null                # a unique id column; null = a hash of each row's content
order_column: null             # a time/order column, if the data has one

split:
  test_size: 0.2
  stratify: true
  seed: ${{seed}}

validate:
  max_missing_rate: 0.30       # a feature missing more than this raises an alarm
  fail_on_missing_alarm: false
  show_rows: 5                 # offending rows shown per violated rule

{schema_yaml(plan.schema)}"""


def readme(plan: Plan) -> str:
    """README.md of the instance: what it is and how to run, register, promote and serve."""
    import json

    a = plan.artifact
    record = json.dumps(plan.example).replace("'", "'\\''")  # inside a '…' shell string
    return f"""\
# {a}

A loopline instance: a Git repository of DVC stages and Hydra configs that trains,
evaluates, exports (ONNX), gates, versions and serves a classifier of `{plan.target}`
(positive class `{plan.positive_class}`) on `{plan.source}` ({plan.rows:,} rows).
Made by `loopline init`.

## Run the pipeline

```bash
loopline run                          # compose conf/ into params.yaml, then dvc repro
loopline run model=rf search=grid     # Hydra overrides: another estimator and search
loopline params --check               # fails when params.yaml and conf/ disagree
loopline metrics
git add -A && git commit -m "Train {a}"
```

`ingest → validate → prepare → train → evaluate → export → gate`; reports land in
`reports/` (metrics, evaluation, gate), the model in `models/` (`model.onnx`, `card.md`).

## Register, promote, roll back

```bash
loopline register                     # tag {a}@v0.1.0 on this commit (needs a passed gate)
loopline promote v0.1.0 --to prod     # tag {a}#prod#1
loopline which prod
loopline rollback --stage prod        # back to the previous version that passed its gate
loopline history
```

## Serve

```bash
loopline serve prod                   # BentoML service on 127.0.0.1:3000
curl -s -X POST localhost:3000/predict -H 'content-type: application/json' \\
     -d '{{"records": [{record}]}}'
loopline build prod && loopline containerize prod
```

## Configuration

- `conf/config.yaml`: artifact name, seed, paths, registry stages.
- `conf/data/{plan.data_name}.yaml`: source, target, positive class, split, and the schema
  inferred from the data. Review it: tighten ranges, fix types, list columns to drop in
  `conf/features/default.yaml` (`drop: [...]`).
- `conf/gate/default.yaml`: the promotion gate (absolute bounds, champion, drift, parity).
  There are no per-slice checks yet: set `slice_column` in `conf/evaluate/default.yaml` to
  a categorical column, then add `slices.min` and `slices.max_gap` bounds to the gate.
- `conf/model/`, `conf/search/`, `conf/features/`, `conf/serve/`: estimators, search,
  imputation and encoding, service settings.

The data file is committed to Git; for a large one, use `dvc add {plan.source}` instead.
"""


def instance_files(plan: Plan, tmpl: dict[str, bytes], workflows: dict[str, bytes]
                   ) -> dict[str, bytes]:
    """Every file of the new instance except the data, params.yaml and Git/DVC internals."""
    out: dict[str, bytes] = {}
    for rel, raw in tmpl.items():
        if rel == "conf/config.yaml":
            raw = render_config(raw.decode(), plan).encode()
        elif rel in RENDER:
            raw = RENDER[rel](raw.decode()).encode()
        out[rel] = raw
    out[f"conf/data/{plan.data_name}.yaml"] = data_config(plan).encode()
    out["README.md"] = readme(plan).encode()
    out[".gitignore"] = GITIGNORE.encode()
    out[".dvcignore"] = DVCIGNORE.encode()
    return {**out, **workflows}


# ---------------------------------------------------------------------------- run


def _cmd(what: str, args: list[str], cwd: Path) -> str:
    """Run git or dvc in ``cwd``; a failure is a LooplineError with the tool's message."""
    from loopline.core.dvc import dvc_env

    try:
        res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=dvc_env())
    except OSError as err:
        raise LooplineError(f"cannot run {what}: {err}") from None
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}").splitlines()
        raise LooplineError(f"{what} failed in {cwd}: {lines[0]}", details="\n".join(lines[1:]))
    return res.stdout.strip()


def _write(dest: Path, plan: Plan) -> list[str]:
    """Write the instance's files and the data into ``dest``; return the paths written."""
    written = instance_files(plan, instance_templates(), workflow_templates())
    for rel, raw in written.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    (dest / "data").mkdir(exist_ok=True)
    shutil.copyfile(plan.data_file, dest / plan.source)
    return sorted(written)


def _repo(dest: Path, plan: Plan) -> str:
    """params.yaml, champion.json, git and DVC, and the first commit; return its sha."""
    from loopline.config.compose import compose_params
    from loopline.config.params import load_params
    from loopline.registry.champion import refresh_champion

    compose_params(dest, [], write=True)  # what `loopline params` does
    params = load_params(dest)
    _cmd("git init", ["git", "init", "-q", "-b", "main"], dest)
    _cmd("dvc init", [sys.executable, "-m", "dvc", "init", "-q"], dest)
    (dest / ".dvc" / "config").write_text(DVC_CONFIG, encoding="utf-8")
    refresh_champion(dest, params.paths.reports, params.gate.champion.stage)
    _cmd("git add", ["git", "add", "-A"], dest)
    message = f"loopline init: {plan.artifact}, {plan.target!r} from {plan.source}"
    _cmd("git commit", ["git", "commit", "-q", "-m", message], dest)
    return _cmd("git rev-parse", ["git", "rev-parse", "HEAD"], dest)


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
        name: str | None = None) -> dict:
    """Scaffold, commit and describe a new instance in ``dest`` (see the module docstring)."""
    dest = Path(dest).absolute()
    plan = make_plan(dest, Path(data), target, positive=positive, name=name)
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
            "workflows": [f for f in files_written if f.startswith(".github/")]}


def summary(res: dict) -> str:
    """The human summary of :func:`run`'s result: what was created and what to do next."""
    classes = ", ".join(res["classes"])
    workflows = (f"\n  workflows {', '.join(res['workflows'])}" if res["workflows"] else "")
    return f"""\
Created loopline instance {res['path']} (artifact {res['artifact']}, commit {res['commit'][:12]})
  data      {res['data']}: {res['rows']:,} rows, {len(res['columns'])} columns
  target    {res['target']} ({classes}); positive class {res['positive_class']!r}
  config    conf/config.yaml, {res['data_config']} (inferred schema: review it), params.yaml
  pipeline  dvc.yaml, .dvc/config (autostage, Hydra), reports/champion.json, README.md\
{workflows}
Next steps:
  cd {res['path']}
  loopline run                          # train, evaluate, export and gate
  git add -A && git commit -m "First model"
  loopline register && loopline promote v0.1.0 --to prod
  loopline serve prod"""
