"""The files of a new instance: the reference's shared files adapted, and generated ones.

The shared files (:mod:`loopline.gitops.scaffold.sources`) are adapted by small edits, each
checked so that a changed file fails loudly instead of being silently half-edited:

- ``conf/config.yaml`` gets the instance's header comment, data option and artifact, and
  the reference's own options of the generic groups (``gate: credit``: slice bounds on a
  column of its data) give way to loopline's packaged defaults;
- ``dvc.yaml`` loses its ``src/loopline/...`` dependencies: an instance uses loopline as
  an installed package, so those paths do not exist there and DVC would refuse to run.

Generated from the plan: ``conf/data/<name>.yaml`` (the inferred schema), README.md,
.gitignore and .dvcignore; ``conf/features/<name>.yaml`` when columns are left out, and
``conf/model/<name>.yaml`` when the data is too small for the default model's leaves.
"""

from __future__ import annotations

import re

from loopline.core.layout import DVC_YAML, INSTANCE_README
from loopline.gitops.scaffold.plan import TEST_SIZE, Plan
from loopline.gitops.scaffold.sources import CONFIG_YAML

GITIGNORE = "/.loopline/\n/logs/\n__pycache__/\n.venv/\n"
DVCIGNORE = ("# Paths DVC does not need to look at (speeds up `dvc status` / `dvc repro`).\n"
             ".venv/\n.github/\n/logs/\n/.loopline/\n/vendor/\n")
DVC_NOTE = """\
# In this instance loopline is an installed package, so its code is not a dependency of the
# stages: after upgrading loopline, `loopline run --force` reruns everything.
"""

# ------------------------------------------------------------------ shared files


def _sub_once(pattern: str, repl, text: str, what: str) -> str:  # noqa: ANN001
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


def own_options(config: str) -> list[tuple[str, str]]:
    """(group, option) of the defaults list whose group is one of loopline's packaged
    defaults but whose option is not: an instance's own (the reference's ``gate: credit``)."""
    import yaml

    from loopline.config import defaults

    entries = (yaml.safe_load(config) or {}).get("defaults") or []
    return [(group, str(option)) for entry in entries if isinstance(entry, dict)
            for group, option in entry.items()
            if (defaults.DIR / group).is_dir()
            and not (defaults.DIR / group / f"{option}.yaml").is_file()]


def render_config(template: str, plan: Plan) -> str:
    """conf/config.yaml: the reference's, with this instance's header, data and artifact,
    and loopline's default for each group where the reference has an option of its own."""
    header = (f"# loopline instance {plan.artifact}: predicts {plan.target!r} from {plan.source}\n"
              "# (made by `loopline init`). conf/ is the source of truth; `loopline params`\n"
              "# composes it into params.yaml.\n")
    text = _sub_once(r"\A(?:#.*\n)+", header, template, f"{CONFIG_YAML} header")
    text = _set_value(text, "  - data", plan.data_name, f"{CONFIG_YAML} defaults")
    for group, option in own_options(template):
        text = _sub_once(rf"^(  - {re.escape(group)}: ){re.escape(option)}\b.*$", r"\g<1>default",
                         text, f"{CONFIG_YAML} {group}")
    if plan.drop:  # conf/features/<data>.yaml: the default, less the columns init left out
        text = _sub_once(r"^(  - features: )default\b", rf"\g<1>{plan.features_option}", text,
                         f"{CONFIG_YAML} features")
    if plan.model:  # conf/model/<data>.yaml: the default, with leaves the data can split
        text = _sub_once(rf"^(  - model: ){re.escape(plan.model.base)}\b", rf"\g<1>{plan.model_option}",
                         text, f"{CONFIG_YAML} model")
    return _set_value(text, "artifact", plan.artifact, f"{CONFIG_YAML} artifact")


def render_dvc_yaml(template: str) -> str:
    """dvc.yaml without the framework's source files as deps (see the module docstring)."""
    text, n = re.subn(r"^[ \t]+- src/loopline/\S+[ \t]*\n", "", template, flags=re.MULTILINE)
    if n == 0:
        raise RuntimeError("template dvc.yaml: no src/loopline dependencies to remove")
    return _sub_once(r"^stages:", DVC_NOTE + "stages:", text, "dvc.yaml stages")


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


def _opt(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _positive(plan: Plan) -> str:
    if plan.positive_class is None:
        return _line("positive_class", "null", f"{len(plan.classes)} classes: metrics are macro "
                                                "averages over them")
    return _line("positive_class", _q(plan.positive_class), POSITIVE_NOTE)


def _split_method(plan: Plan) -> str:
    note = ("train on the earlier rows, test on the latest" if plan.split_method == "time" else
            f"or time: train on rows before, test on the latest by {plan.order_column}"
            if plan.order_column else "random | time (needs order_column)")
    return "  " + _line("method", plan.split_method, note).replace("  #", "#", 1)


def features_config(plan: Plan) -> str:
    """conf/features/<name>.yaml: loopline's default features, less the columns left out."""
    import json

    notes = "\n".join(f"#   {c.name}: {c.note}" for c in plan.columns if c.role == "left out")
    return (f"# Written by `loopline init`: columns kept in the data but not used as features.\n"
            f"{notes}\ndefaults:\n  - default\n  - _self_\n\n"
            f"drop: [{', '.join(json.dumps(c, ensure_ascii=False) for c in plan.drop)}]\n")


def model_config(plan: Plan) -> str:
    """conf/model/<name>.yaml: loopline's default model, with leaves this data can split."""
    m = plan.model
    return (f"# Written by `loopline init`: loopline's {m.base} model, with leaves small enough "
            f"for this data.\n# {m.note[:1].upper()}{m.note[1:]}.\ndefaults:\n  - {m.base}\n  - _self_\n\n"
            f"search_space:\n  min_samples_leaf: [{', '.join(map(str, m.leaves))}]\n")


def _unlabelled(plan: Plan) -> str:
    return (f"\n# {plan.unlabelled:,} rows have no {plan.target}: ingest leaves them out of training."
            if plan.unlabelled else "")


def data_config(plan: Plan) -> str:
    """conf/data/<name>.yaml: where the data is, what to predict, and its inferred schema."""
    from loopline.pipeline.schema import schema_yaml

    shares = ", ".join(f"{c} {n / plan.rows:.0%}" for c, n in plan.classes.items())
    return f"""\
# {plan.data_file.name}: {plan.rows:,} rows, {len(plan.schema['columns'])} columns; target \
{plan.target} ({shares}).
# Written by `loopline init`. The schema was inferred from the data (loose ranges, every
# category seen): review it, tighten it where the domain says so, and commit.{_unlabelled(plan)}
name: {plan.data_name}
{_line("source", _q(plan.source), "CSV or Parquet, relative to the repo root")}
format: auto                   # auto | csv | parquet
target: {_q(plan.target)}
{_positive(plan)}
{_line("id_column", _opt(plan.id_column), "a unique id column; null = a hash of each row's content")}
{_line("order_column", _opt(plan.order_column), "a time/order column, if the data has one")}

split:
{_split_method(plan)}
  test_size: {TEST_SIZE}
  stratify: true
  seed: ${{seed}}

validate:
  max_missing_rate: 0.30       # a feature missing more than this raises an alarm
  fail_on_missing_alarm: false
  show_rows: 5                 # offending rows shown per violated rule

{schema_yaml(plan.schema)}"""


def _own_options(plan: Plan) -> str:
    """README lines on the options init wrote for this data, if any."""
    lines = []
    if plan.drop:
        lines.append(f"- `conf/features/{plan.features_option}.yaml` (written by init): the columns "
                     f"left out of the features ({', '.join(f'`{c}`' for c in plan.drop)}).\n")
    if plan.model:
        lines.append(f"- `conf/model/{plan.model_option}.yaml` (written by init): the {plan.model.base} "
                     f"model's search with leaves of {', '.join(map(str, plan.model.leaves))} rows, "
                     f"as {plan.model.note}.\n")
    return "".join(lines)


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

## Install

```bash
make install                          # .venv with exactly requirements.lock (Python 3.11, uv)
. .venv/bin/activate                  # or call .venv/bin/loopline
```

`requirements.lock` pins loopline (the wheel in `vendor/`, the version that made this
instance) and every package it needs; the workflows in `.github/workflows` install from it
on a fresh runner too. `make run` runs the pipeline, `make test` checks it end to end.

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

## CI and releases

`loopline ci pr` (`main`, `release --tag TAG`) runs a workflow of `.github/workflows` with
nektos/act on a clean clone of the current commit, as GitHub would. On GitHub, `main.yml`
registers each merge to main and assigns it to staging; `release.yml` deploys the image
of the version prod names through the hook in the repository variable
`LOOPLINE_DEPLOY_HOOK` (`scripts/deploy.sh` is a no-op to fill in; without a hook the
release says "built, not deployed"). Images go to `serve.image_registry`. Secrets: the DVC
remote's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` for S3) and
`LOOPLINE_PUSH_TOKEN` (see `main.yml`).

## Configuration

- `conf/config.yaml`: artifact name, seed, paths, registry stages, and the option of each
  config group.
- `conf/data/{plan.data_name}.yaml`: source, target, positive class, split, and the schema
  inferred from the data. Review it: tighten ranges, fix types.
- The other groups (features, model, search, evaluate, export, gate, serve, monitor) are
  loopline's defaults, composed from the installed package into `params.yaml`, so
  upgrading loopline upgrades them. To change one, add an option of your own that holds
  only what differs, e.g. `conf/features/lean.yaml` to drop columns:

  ```yaml
  defaults: [default, _self_]
  drop: [some_column]
  ```

  and select it in `conf/config.yaml` (`- features: lean`), then `loopline params`.
{_own_options(plan)}- There are no per-slice checks yet: with a categorical column to slice by, set
  `slice_column` in an option of `evaluate`, and `slices.min` and `slices.max_gap` bounds
  in an option of `gate`.

The data file is committed to Git; for a large one, use `dvc add {plan.source}` instead.
"""


def instance_files(plan: Plan, shared: dict[str, bytes]) -> dict[str, bytes]:
    """Every file of the new instance except the data, params.yaml and Git/DVC internals.

    ``shared`` are the reference's shared files by their path in an instance
    (:func:`loopline.gitops.scaffold.sources.shared_files`).
    """
    out: dict[str, bytes] = {}
    for rel, raw in shared.items():
        if rel == CONFIG_YAML:
            raw = render_config(raw.decode(), plan).encode()
        elif rel == DVC_YAML:
            raw = render_dvc_yaml(raw.decode()).encode()
        out[rel] = raw
    out[f"conf/data/{plan.data_name}.yaml"] = data_config(plan).encode()
    if plan.drop:
        out[f"conf/features/{plan.features_option}.yaml"] = features_config(plan).encode()
    if plan.model:
        out[f"conf/model/{plan.model_option}.yaml"] = model_config(plan).encode()
    out[INSTANCE_README] = readme(plan).encode()
    out[".gitignore"] = GITIGNORE.encode()
    out[".dvcignore"] = DVCIGNORE.encode()
    return out
