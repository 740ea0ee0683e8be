"""export: the whole Pipeline to ONNX, a parity check, and the model card.

The ONNX graph carries imputation, scaling and one-hot encoding, so serving needs nothing
but onnxruntime. Parity compares ONNX and scikit-learn on every test row: the same class
everywhere and probabilities within ``export.parity_atol``; otherwise the stage fails and
shows the worst rows. The model card (JSON and markdown) traces the model to its code,
data and params: data hashes, params, metrics and the dvc.lock hashes of the stages that produced
it. It holds nothing that differs between two machines reproducing one commit (no commit
id, no clock): the commit that produced a model is recorded by its registry tag.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from loopline import __version__
from loopline.config.params import Params
from loopline.core.dvc import read_lock
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs, md5_file, read_json
from loopline.core.layout import (
    CARD_JSON,
    CARD_MD,
    IMPORTANCE_JSON,
    METRICS_JSON,
    MODEL_JOBLIB,
    MODEL_ONNX,
    PARITY_JSON,
    SEARCH_JSON,
    SLICES_JSON,
    TEST_SPLIT,
    TRAIN_SPLIT,
    Layout,
)
from loopline.core.names import METRICS
from loopline.pipeline.tabular import ROW_ID, feature_columns, load_split, xy

UPSTREAM = ("ingest", "validate", "prepare", "train", "evaluate")
# the upstream outputs export depends on (dvc.yaml), by file name
_READS = frozenset({TRAIN_SPLIT, TEST_SPLIT, MODEL_JOBLIB, METRICS_JSON, SLICES_JSON,
                    IMPORTANCE_JSON, SEARCH_JSON})  # and paths.raw


def lock_lineage(root: Path, params: Params) -> dict:
    """The hashes dvc.lock records for the upstream outputs this stage reads (the data
    splits, the ingested data, the model and its reports), by stage.

    Only files that are this stage's own dependencies (dvc.yaml) are named, nor any source
    file: anything else could change (and rerun its stage) without rerunning this one, and
    the card would then name a stale hash that a fresh clone reproducing the commit would
    not (another card, another dvc.lock). The code of a version is its commit, in the
    registry tag.
    """
    stages = read_lock(root)
    reads = {Path(params.paths.raw).name, *_READS}
    out = {}
    for name in UPSTREAM:
        outs = {o["path"]: o.get("md5") for o in (stages.get(name) or {}).get("outs", [])
                if Path(o["path"]).name in reads}
        if outs:
            out[name] = {"outs": outs}
    return out


def params_hash(params: Params) -> str:
    """A hash of the params that determine the model (data, features, model, search)."""
    used = params.model_dump(mode="json", by_alias=True,
                             include={"seed", "data", "features", "model", "search"})
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]


def passthrough(params: Params) -> list[str]:
    """The data's columns that are not model inputs (the id column too, when it is a
    ``row_id`` of the data, which the schema leaves out as loopline's own column)."""
    inputs = input_spec(params)
    cols = [c for c in params.data.schema_.columns if c not in inputs]
    if params.data.id_column and params.data.id_column not in cols:
        cols.append(params.data.id_column)
    return cols


def input_spec(params: Params) -> dict:
    """The serving input contract: every feature with its schema rule, in model order."""
    numeric, categorical = feature_columns(params)
    cols = params.data.schema_.columns
    return {name: {"kind": "numeric" if name in numeric else "categorical",
                   **cols[name].model_dump(exclude_none=True)}
            for name in numeric + categorical}


def build_card(params: Params, root: Path, onnx_bytes: bytes, classes: list[str],
               parity_report: dict) -> dict:
    lay = Layout.of(root, params.paths)
    metrics = read_json(lay.report(METRICS_JSON))
    search = read_json(lay.report(SEARCH_JSON))
    slices = read_json(lay.report(SLICES_JSON))
    imp = read_json(lay.report(IMPORTANCE_JSON))
    return {
        "artifact": params.artifact,
        "model": params.model.name,
        "estimator": params.model.estimator["_target_"],
        "best_params": search.get("best_params", {}),
        "target": params.data.target,
        "classes": classes,
        "positive_class": params.data.positive_class,
        "inputs": input_spec(params),
        # the data's other columns (target, id, order, left out): a request may carry them
        "passthrough": passthrough(params),
        "metrics": metrics,
        "slice_gaps": slices.get("max_gap", {}),
        "slice_column": slices.get("column"),
        "importance": imp.get("features", [])[:10],
        "search": {k: search.get(k) for k in ("method", "scoring", "cv", "n_candidates", "best_score",
                                               "best_std")},
        "parity": {k: parity_report[k] for k in ("passed", "rows", "max_abs_diff", "label_mismatches", "atol")},
        "data": {
            "source": params.data.source,
            "raw_md5": md5_file(root / params.paths.raw),
            "train_md5": md5_file(lay.split("train")),
            "test_md5": md5_file(lay.split("test")),
        },
        "params_hash": params_hash(params),
        "params": params.model_dump(mode="json", by_alias=True,
                                    include={"seed", "features", "model", "search", "evaluate", "export"}),
        "model_files": {
            "onnx": f"{params.paths.models}/{MODEL_ONNX}",
            "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "onnx_bytes": len(onnx_bytes),
        },
        "lineage": {"dvc_lock": lock_lineage(root, params)},
        "created_by": f"loopline {__version__}",
    }


def card_markdown(card: dict) -> str:
    m = card["metrics"]
    lines = [f"# Model card: {card['artifact']} ({card['model']})", "",
             f"- estimator: `{card['estimator']}`",
             f"- best params: `{json.dumps(card['best_params'], sort_keys=True)}`",
             f"- target: `{card['target']}`, classes {card['classes']}, positive `{card['positive_class']}`",
             f"- ONNX sha256: `{card['model_files']['onnx_sha256']}`",
             f"- data: `{card['data']['source']}` (raw md5 `{card['data']['raw_md5']}`)",
             f"- params hash: `{card['params_hash']}`",
             "- commit: the one its registry tag (`loopline history`) points at",
             "", "## Held-out metrics", "", "| metric | value |", "|---|---|"]
    for k in METRICS:
        if m.get(k) is not None:
            lines.append(f"| {k} | {m[k]:.4f} |")
    if card["slice_gaps"]:
        lines += ["", f"## Largest gaps between slices of `{card['slice_column']}`", ""]
        for metric, g in card["slice_gaps"].items():
            lines.append(f"- {metric}: {g['gap']:.4f} ({g['lowest']} vs {g['highest']})")
    lines += ["", "## Most important inputs (permutation, held-out)", ""]
    for r in card["importance"]:
        lines.append(f"- {r['feature']}: {r['importance']:.4f} ± {r['std']:.4f}")
    p = card["parity"]
    lines += ["", "## ONNX parity", "",
              f"{p['rows']} test rows, max |Δp| {p['max_abs_diff']:.2e} (tolerance {p['atol']:.0e}), "
              f"{p['label_mismatches']} label mismatches: {'passed' if p['passed'] else 'FAILED'}.", "",
              "## Inputs", "", "| column | kind | type | nullable | range / categories |", "|---|---|---|---|---|"]
    for name, spec in card["inputs"].items():
        rng = (", ".join(spec["categories"]) if spec.get("categories")
               else f"{spec.get('min', '-∞')} … {spec.get('max', '∞')}")
        if spec.get("missing_values"):  # what the file writes for a gap, taken as one
            marks = ("blank" if m == "" else "`" + m.replace("|", "\\|") + "`"
                     for m in spec["missing_values"])
            rng += "; gaps: " + ", ".join(marks)
        lines.append(f"| {name} | {spec['kind']} | {spec['type']} | {spec['nullable']} | {rng} |")
    return "\n".join(lines) + "\n"


def format_worst(report: dict, classes: list[str]) -> str:
    rows = []
    for w in report.get("worst", []):
        fmt = lambda ps: "[" + ", ".join(f"{p:.6f}" for p in ps) + "]"  # noqa: E731
        rows.append(f"  row {w['row']}: sklearn {fmt(w['sklearn'])} onnx {fmt(w['onnx'])} |Δ| {w['diff']:.2e}")
    return f"  classes {classes}\n" + "\n".join(rows)


def run(params: Params, root: Path) -> dict[str, Any]:
    import joblib

    from loopline.model.onnx.convert import convert
    from loopline.model.parity import parity

    lay = Layout.of(root, params.paths)
    model = joblib.load(lay.model(MODEL_JOBLIB))
    numeric, categorical = feature_columns(params)
    test = load_split(root, params, "test")
    X, _ = xy(test, params)
    X.index = test[ROW_ID].to_numpy()
    try:
        onnx_bytes = convert(model, numeric, categorical)
    except Exception as err:  # skl2onnx raises many types; name the model and the reason
        raise LooplineError(f"cannot convert {params.model.name} to ONNX: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    report = parity(model, onnx_bytes, X, atol=params.export.parity_atol,
                    show=params.export.parity_show)
    classes = [str(c) for c in model.classes_]
    if not report["passed"]:
        raise LooplineError(
            f"ONNX parity failed for {params.model.name}: max |Δp| {report['max_abs_diff']:.3g} > "
            f"{params.export.parity_atol:g} or {report['label_mismatches']} label mismatch(es) "
            f"on {report['rows']} test rows",
            details="worst rows (by row_id):\n" + format_worst(report, classes))
    card = build_card(params, root, onnx_bytes, classes, report)
    with Outputs(root) as out:
        out.bytes(lay.model(MODEL_ONNX), onnx_bytes)
        out.json(lay.model(CARD_JSON), card)
        out.text(lay.model(CARD_MD), card_markdown(card))
        out.json(lay.report(PARITY_JSON), report)
    return {"onnx_sha256": card["model_files"]["onnx_sha256"][:12], "max_abs_diff": report["max_abs_diff"]}
