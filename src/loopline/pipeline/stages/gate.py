"""gate: the promotion gate, explicit one-sided checks computed with Evidently.

Evidently (0.7: Report, Dataset, DataDefinition) computes the candidate's classification
quality on the held-out split, scored by the exported ONNX model (what will be served),
and per-column data drift between the training split (reference) and the held-out split
(current). loopline turns those values into explicit checks configured in conf/gate:
margins over the class-prior model (it predicts the training split's class shares for
every row: bounds that fit any data set; on few held-out rows, ROC AUC must also clear
what the candidate's own scores reach with the labels shuffled, at
``baseline_significance``), absolute minimums and maximums, candidate ≥
champion − tolerance on the same rows, per-slice minimums and the largest gap between
slices, the share of drifted features, and ONNX parity. Evidently's preset auto-tests
(two-sided ±20% heuristics) decide nothing.

Drift is decided by :mod:`loopline.model.drift` with tests chosen by sample size
(``auto``, the default: two-sample tests at ``significance`` while the smaller split has at
most 1,000 rows, distances above), so independent splits of one data set do not drift by
chance at any size; the Evidently page shows the same columns with the closest of its own
tests. Methods named in conf/gate (Evidently's names) are computed by Evidently.

Inside ``dvc repro`` a failed verdict is recorded, not raised, so the pull-request report
can show it; ``loopline gate`` and ``loopline run`` exit 1 on it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.config.pipeline import BASELINE_METRICS, GateConfig
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs, read_json, sha256_file, write_json
from loopline.core.layout import (
    CHAMPION_JSON,
    GATE_HTML,
    GATE_JSON,
    GATE_MD,
    MODEL_ONNX,
    PARITY_JSON,
    SLICES_JSON,
    TIMINGS_JSON,
    Layout,
)
from loopline.core.names import higher_is_better
from loopline.pipeline.tabular import feature_columns, load_split, xy

# Evidently metric types -> loopline metric names
_EV_METRICS = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall",
               "F1Score": "f1", "RocAuc": "roc_auc", "LogLoss": "log_loss"}
# tests whose value is a p-value (drift when below the threshold); the rest are distances
_P_VALUE_METHODS = {"ks", "chisquare", "z", "anderson", "cramer_von_mises", "mannw", "t_test",
                    "epps_singleton", "fisher_exact", "g_test", "empirical_mmd", "energy_dist_p"}


@dataclass
class Check:
    name: str
    kind: str  # baseline | absolute | champion | slice | fairness | drift | parity | latency
    value: float | None
    threshold: float | None
    op: str  # ">=" or "<="
    passed: bool
    reason: str
    skipped: bool = False


def compare(name: str, kind: str, value: float | None, threshold: float, op: str, what: str) -> Check:
    """One one-sided check with its one-line reason."""
    if value is None or not np.isfinite(value):
        return Check(name, kind, None, threshold, op, False, f"{what} could not be computed")
    ok = {">=": value >= threshold, ">": value > threshold, "<=": value <= threshold}[op]
    word = {">=": "at least", ">": "above", "<=": "at most"}[op]
    verdict = "meets" if ok else "misses"
    return Check(name, kind, round(float(value), 6), round(float(threshold), 6), op, bool(ok),
                 f"{what} {value:.4f} {verdict} the bound ({word} {threshold:.4f})")


# ------------------------------------------------------------------- evidently


def _prediction_column(target: str, classes: list[str]) -> str:
    """The predicted-label column's name: one that is neither the target nor a class."""
    name = "prediction"
    while name == target or name in classes:
        name = f"_{name}"
    return name


def _proba_columns(target: str, classes: list[str]) -> list[str]:
    """Probability columns: ``proba`` (binary), else named by the class labels themselves,
    which is what Evidently's multiclass metrics look for."""
    return ["proba"] if len(classes) == 2 else list(classes)


def _definition(numeric: list[str], categorical: list[str], target: str | None = None,
                positive: str | None = None, classes: list[str] | None = None):
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification

    if target is None:
        return DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    classes = classes or []
    pred = _prediction_column(target, classes)
    if len(classes) == 2:
        cls = [BinaryClassification(target=target, prediction_labels=pred,
                                    prediction_probas="proba", pos_label=positive)]
    else:
        cls = [MulticlassClassification(target=target, prediction_labels=pred,
                                        prediction_probas=_proba_columns(target, classes))]
    return DataDefinition(numerical_columns=numeric, categorical_columns=categorical, classification=cls)


def scored_frame(y: np.ndarray, proba: np.ndarray, classes: list[str], positive: str | None,
                 target: str) -> pd.DataFrame:
    """Target, predicted label and probabilities in the layout Evidently expects."""
    frame = pd.DataFrame({target: np.asarray(y).astype(str),
                          _prediction_column(target, classes): np.asarray(classes)[proba.argmax(axis=1)]})
    if len(classes) == 2:
        frame["proba"] = proba[:, classes.index(positive)]
    else:
        # ONNX Runtime answers float32: rows sum to 1 within ~1e-7, which scikit-learn's
        # log loss (inside Evidently) warns about; renormalised in float64 they sum to 1
        proba = proba / proba.sum(axis=1, keepdims=True)
        for i, c in enumerate(classes):
            frame[c] = proba[:, i]
    return frame


def _classes_in_target(frame: pd.DataFrame, target: str,
                       classes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The frame restricted to the classes its target holds, when three or more do.

    Evidently's per-class quality raises on a class that the held-out rows lack (a class
    too rare for a time split's later rows, or a champion's class that the data has lost).
    Such a class is left out: the others' probabilities are renormalised and a row whose
    top class it was is predicted as its top class among the others. The metrics are then
    macro averages over the classes the rows hold.
    """
    present = [c for c in classes if (frame[target] == c).any()]
    if len(classes) <= 2 or len(present) == len(classes) or len(present) < 3:
        return frame, classes
    pred = _prediction_column(target, classes)
    out = frame.drop(columns=[c for c in classes if c not in present])
    out[present] = out[present].div(out[present].sum(axis=1), axis=0)
    out[pred] = np.asarray(present)[out[present].to_numpy().argmax(axis=1)]
    return out, present


def quality_report(frame: pd.DataFrame, target: str, positive: str | None, classes: list[str]):
    """Evidently classification quality of one scored frame; returns (values, snapshot)."""
    from evidently import Dataset, Report
    from evidently.presets import ClassificationPreset

    frame, classes = _classes_in_target(frame, target, classes)
    prob_cols = _proba_columns(target, classes)
    dd = _definition(prob_cols, [target, _prediction_column(target, classes)], target, positive,
                     classes)
    snap = Report([ClassificationPreset()]).run(
        current_data=Dataset.from_pandas(frame, data_definition=dd), reference_data=None)
    values: dict[str, float] = {}
    for m in snap.dict()["metrics"]:
        kind = m["config"]["type"].rsplit(":", 1)[-1]
        if kind in _EV_METRICS and isinstance(m["value"], (int, float)):
            values[_EV_METRICS[kind]] = float(m["value"])
    return values, snap


# loopline's sample-size-aware tests -> the closest Evidently test, for the HTML page
_EV_NAMES = {"chi2_homogeneity": "chisquare"}


def _sized_rows(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str],
                categorical: list[str], cfg) -> dict[str, dict]:
    """loopline's drift verdicts for the columns whose method is ``auto``."""
    from loopline.config.pipeline import AUTO_DRIFT
    from loopline.model.drift import column_drift

    rows = {}
    for col in numeric + categorical:
        is_num = col in numeric
        if col in cfg.per_column or (cfg.num_method if is_num else cfg.cat_method) != AUTO_DRIFT:
            continue
        d = column_drift(col, reference[col], current[col], numeric=is_num, sized=True,
                         threshold=cfg.threshold, significance=cfg.significance)
        rows[col] = {"column": col, "method": d.method, "threshold": round(d.threshold, 6),
                     "value": None if not np.isfinite(d.value) else round(d.value, 6),
                     "drifted": bool(d.drifted), "kind": d.kind}
    return rows


@contextlib.contextmanager
def unshown_column_drift_widgets_skipped() -> Iterator[None]:
    """Evidently (0.7) skips drawing each column's drift plots for DataDriftPreset, inside
    this block.

    The preset computes one ValueDrift per column, and each draws its own plots (plotly
    figures: most of the preset's time on a few columns), but the preset's page shows its
    own table instead (``DataDriftPreset.render`` ignores the columns' widgets), so those
    plots are drawn for nothing. ``ValueDriftCalculation._render`` (Evidently's private
    method) draws them; it answers no widgets here. The values, the tests and the page are
    the same (tests/unit/pipeline/stages/test_gate.py compares the page byte for byte and
    fails when an upgrade moves the method).
    """
    from evidently.metrics.column_statistics import ValueDriftCalculation

    drawn = ValueDriftCalculation.__dict__["_render"]
    ValueDriftCalculation._render = lambda self, result, options, color_options: []
    try:
        yield
    finally:
        ValueDriftCalculation._render = drawn


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str],
                 categorical: list[str], cfg) -> tuple[list[dict], Any]:
    """Per-column drift tests; returns ([{column, method, threshold, value, drifted}], snapshot).

    ``auto`` columns are decided by :func:`_sized_rows`, the others by Evidently; the
    Evidently snapshot covers every column either way (for the HTML page).
    """
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    from loopline.config.pipeline import AUTO_DRIFT

    cols = numeric + categorical
    sized = _sized_rows(reference, current, numeric, categorical, cfg)
    # Evidently refuses chi-square on numeric columns: there it chooses its own test
    shown = {c: r for c, r in sized.items() if not (c in numeric and r["method"] in _EV_NAMES)}
    per_column = {c: _EV_NAMES.get(r["method"], r["method"]) for c, r in shown.items()}
    per_column.update(cfg.per_column)
    kwargs: dict[str, Any] = dict(
        columns=cols, per_column_method=per_column or None,
        num_method=None if cfg.num_method == AUTO_DRIFT else cfg.num_method,
        cat_method=None if cfg.cat_method == AUTO_DRIFT else cfg.cat_method,
        per_column_threshold={c: r["threshold"] for c, r in shown.items()} or None)
    if cfg.threshold is not None:
        kwargs.update(num_threshold=cfg.threshold, cat_threshold=cfg.threshold)
    dd = _definition(numeric, categorical)
    with unshown_column_drift_widgets_skipped():
        snap = Report([DataDriftPreset(**kwargs)]).run(
            current_data=Dataset.from_pandas(current[cols], data_definition=dd),
            reference_data=Dataset.from_pandas(reference[cols], data_definition=dd))
    rows = dict(sized)
    for m in snap.dict()["metrics"]:
        conf = m["config"]
        if conf["type"].endswith(":ValueDrift") and conf["column"] not in rows:
            method, thr, value = conf["method"], conf["threshold"], float(m["value"])
            drifted = value < thr if method in _P_VALUE_METHODS else value >= thr
            rows[conf["column"]] = {"column": conf["column"], "method": method, "threshold": thr,
                                    "value": round(value, 6), "drifted": bool(drifted),
                                    "kind": "p-value" if method in _P_VALUE_METHODS else "distance"}
    return [rows[c] for c in cols if c in rows], snap


# --------------------------------------------------------------------- checks


def prior_values(train_y: np.ndarray, y: np.ndarray, classes: list[str],
                 positive: str | None) -> dict[str, float]:
    """Metrics of the class-prior model on the held-out rows: it gives every row the
    training split's class shares (a constant score ranks nothing: ROC AUC 0.5)."""
    from loopline.model.metrics import classification_metrics

    shares = pd.Series(np.asarray(train_y).astype(str)).value_counts(normalize=True)
    proba = np.tile([float(shares.get(c, 0.0)) for c in classes], (len(y), 1))
    values = classification_metrics(np.asarray(y).astype(str), proba, classes,
                                    positive or classes[0])
    out = {k: float(v) for k, v in values.items()
           if k in BASELINE_METRICS and isinstance(v, (int, float))}
    out["roc_auc"] = 0.5
    return out


CHANCE_DRAWS = 1000  # label shuffles behind the chance bound of ROC AUC


def chance_roc_auc(y: np.ndarray, proba: np.ndarray, classes: list[str], positive: str | None,
                   significance: float, draws: int = CHANCE_DRAWS) -> float | None:
    """The ROC AUC a model with no skill exceeds with probability ``significance`` on these rows.

    A permutation test: the candidate's own scores are kept and the held-out labels shuffled
    ``draws`` times (a fixed seed: the same rows give the same bound); the bound is the
    (1 - significance) quantile of the ROC AUCs that gives, ties ranked as ``roc_auc_score``
    ranks them. For more than two classes, the macro average of one-vs-rest AUCs over the
    classes the rows hold, as the gate's metric. On 30 held-out rows a model with no skill
    passes the prior + 0.05 margin about a third of the time, and this bound (about 0.68)
    one time in twenty. None when no class has rows on both sides.
    """
    from scipy.stats import rankdata

    labels = np.asarray(y).astype(str)
    n = len(labels)
    cols = [i for i, c in enumerate(classes) if (positive is None or c == positive)
            and 0 < int((labels == c).sum()) < n]
    if not cols:
        return None
    ranks = rankdata(np.asarray(proba, dtype=float)[:, cols], axis=0)  # average ranks of ties
    index = {classes[i]: k for k, i in enumerate(cols)}
    code = np.array([index.get(v, -1) for v in labels])
    counts = np.bincount(code[code >= 0], minlength=len(cols)).astype(float)
    rng = np.random.default_rng(0)
    draws = max(200, min(draws, 20_000_000 // n))  # many rows: the margin decides anyway
    out = np.empty(draws)
    batch = max(1, 2_000_000 // n)  # shuffles per step: memory stays near 16 MB
    for lo in range(0, draws, batch):
        shuffled = rng.permuted(np.tile(code, (min(batch, draws - lo), 1)), axis=1)
        aucs = [((shuffled == k) @ ranks[:, k] - counts[k] * (counts[k] + 1) / 2)
                / (counts[k] * (n - counts[k])) for k in range(len(cols))]
        out[lo:lo + len(aucs[0])] = np.mean(aucs, axis=0)
    return float(np.quantile(out, 1 - significance))


def baseline_checks(values: dict[str, float], prior: dict[str, float], cfg: GateConfig,
                    chance: dict[str, float] | None = None, rows: int = 0) -> list[Check]:
    """candidate ≥ prior + margin (≤ prior − margin where lower is better), and above the
    ``chance`` bound of a metric where there is one (:func:`chance_roc_auc`)."""
    out = []
    chance = chance or {}
    for k, margin in cfg.baseline.items():
        lower = not higher_is_better(k)
        base = prior.get(k)
        if base is None:
            out.append(Check(f"prior_{k}", "baseline", values.get(k), None, "<=" if lower else ">=",
                             False, f"{k} of the class prior could not be computed"))
            continue
        thr = base - margin if lower else base + margin
        what = f"{k} vs class prior ({base:.4f} {'-' if lower else '+'} margin {margin:g}"
        op = "<=" if lower else ">="
        if k in chance:
            what += (f"; a model with no skill reaches {chance[k]:.4f} by chance "
                     f"(p {cfg.baseline_significance:g}) on these {rows} rows")
            if chance[k] >= thr:  # a permutation test: beat that value, not tie it
                thr, op = chance[k], ">"
        out.append(compare(f"prior_{k}", "baseline", values.get(k), thr, op, f"{what}):"))
    return out


def absolute_checks(values: dict[str, float], cfg: GateConfig) -> list[Check]:
    out = [compare(f"min_{k}", "absolute", values.get(k), t, ">=", k) for k, t in cfg.min.items()]
    out += [compare(f"max_{k}", "absolute", values.get(k), t, "<=", k) for k, t in cfg.max.items()]
    return out


def champion_checks(cand: dict[str, float], champ: dict[str, float] | None, champion: dict,
                    cfg: GateConfig) -> list[Check]:
    """candidate ≥ champion − tolerance (≤ champion + tolerance for log_loss)."""
    ch = cfg.champion
    out = []
    for k in ch.metrics:
        name = f"champion_{k}"
        if not champion.get("version"):
            out.append(Check(name, "champion", cand.get(k), None, ">=", True,
                             f"no champion in {ch.stage} yet: nothing to compare with", skipped=True))
            continue
        if champ is None or champ.get(k) is None:
            out.append(Check(name, "champion", cand.get(k), None, ">=", False,
                             f"champion {champion['version']} could not be scored on the held-out split: "
                             f"{champion.get('error', 'unknown reason')}"))
            continue
        lower_is_better = not higher_is_better(k)
        thr = champ[k] + ch.tolerance if lower_is_better else champ[k] - ch.tolerance
        c = compare(name, "champion", cand.get(k), thr, "<=" if lower_is_better else ">=",
                    f"{k} vs champion {champion['version']} ({champ[k]:.4f}, tolerance {ch.tolerance:g}):")
        out.append(c)
    return out


def slice_checks(slices: dict, cfg: GateConfig) -> list[Check]:
    out = []
    eligible = {k: s for k, s in slices.get("slices", {}).items() if s.get("included_in_gap")}
    for metric, bound in cfg.slices.min.items():
        for name, s in eligible.items():
            out.append(compare(f"slice_{metric}[{name}]", "slice", s.get(metric), bound, ">=",
                               f"{metric} on {slices['column']}={name} ({s['rows']} rows)"))
    for metric, bound in cfg.slices.max_gap.items():
        gap = slices.get("max_gap", {}).get(metric)
        if gap is None:
            out.append(Check(f"slice_gap_{metric}", "fairness", None, bound, "<=", False,
                             f"fewer than two slices large enough to measure a {metric} gap"))
            continue
        out.append(compare(f"slice_gap_{metric}", "fairness", gap["gap"], bound, "<=",
                           f"{metric} gap {gap['lowest']} vs {gap['highest']}"))
    return out


def drift_check(rows: list[dict], cfg: GateConfig) -> list[Check]:
    if cfg.drift.max_share is None:
        return []
    share = sum(r["drifted"] for r in rows) / len(rows) if rows else 0.0
    c = compare("drift_share", "drift", share, cfg.drift.max_share, "<=",
                "share of drifted features")
    drifted = [r["column"] for r in rows if r["drifted"]]
    if drifted:
        c.reason += f"; drifted: {', '.join(drifted)}"
    return [c]


def parity_check(parity: dict, cfg: GateConfig) -> list[Check]:
    if not cfg.parity:
        return []
    ok = bool(parity.get("passed"))
    return [Check("onnx_parity", "parity", parity.get("max_abs_diff"), parity.get("atol"), "<=", ok,
                  f"ONNX vs scikit-learn on {parity.get('rows')} rows: max |Δp| "
                  f"{parity.get('max_abs_diff', float('nan')):.2e}, "
                  f"{parity.get('label_mismatches')} label mismatches")]


def latency_bound(params: Params) -> float | None:
    """``gate.latency.p99_ms`` in milliseconds (``target``: the production target's GREEN
    bound), or None when the gate does not check latency."""
    bound = params.gate.latency.p99_ms
    if bound == "target":
        return params.monitor.targets.latency_p99_ms.amber  # Params checked that it is set
    return bound


def offline_latency(onnx_path: Path, X: pd.DataFrame, calls: int) -> dict[str, float]:
    """Milliseconds per call of the exported model answering one record, as the service's
    ``/predict`` does (records -> feeds -> one ONNX Runtime run, one intra-op thread), over
    ``calls`` calls cycling through the held-out rows after a warm-up."""
    import time

    from loopline.model.runtime import OnnxModel

    model = OnnxModel(onnx_path, label="the candidate")
    cols = model.input_names
    records = [{k: (None if v != v else v) for k, v in row.items()}  # NaN is sent as null
               for row in X[cols].astype(object).to_dict("records")] or [{}]
    for rec in records[: min(50, len(records))]:
        model.run_records([rec])
    times = np.empty(calls)
    for i in range(calls):
        rec = records[i % len(records)]
        start = time.perf_counter()
        model.run_records([rec])
        times[i] = time.perf_counter() - start
    ms = times * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "calls": calls}


def latency_check(measured: dict[str, float] | None, bound: float | None) -> list[Check]:
    """p99 of one-record calls ≤ the bound. The measurement varies from run to run, so the
    committed report records the outcome and the bound, not the figure (which goes to the
    uncommitted timings file and the stage's output): the same commit reproduced elsewhere
    gives the same gate.json unless the outcome itself changes."""
    if bound is None or measured is None:
        return []
    ok = measured["p99_ms"] <= bound
    return [Check("latency_p99_ms", "latency", None, float(bound), "<=", bool(ok),
                  f"offline p99 of one-record calls {'within' if ok else 'over'} {bound:g} ms "
                  f"({measured['calls']} calls; the figure is in .loopline/timings.json)")]


def verdict(checks: list[Check]) -> str:
    return "pass" if all(c.passed for c in checks if not c.skipped) else "fail"


# ------------------------------------------------------------------- outputs


def markdown(doc: dict) -> str:
    icon = {True: "✅", False: "❌"}
    head = "PASS" if doc["verdict"] == "pass" else "FAIL"
    champ = doc["champion"]
    base = doc.get("baseline") or {}
    margins = ", ".join(f"{k} {'-' if not higher_is_better(k) else '+'} {v:g}"
                        for k, v in base.get("margins", {}).items())
    chance = base.get("chance") or {}
    by_chance = "".join(
        f", and its {k} must be above {v:.4f}, which a model with no skill reaches by chance "
        f"with probability {chance['significance']:g} on these {chance['rows']} rows"
        for k, v in (chance.get("metrics") or {}).items())
    lines = [f"## Gate: {head}", "",
             *([f"Bounds fit the data: the candidate must beat the class-prior model (it predicts "
                f"the training split's class shares) on the same rows by: {margins}{by_chance}.", ""]
               if margins else []),
             (f"Champion: `{champ['version']}` ({champ['stage']})" if champ.get("version")
              else f"No champion in `{champ.get('stage', 'prod')}` yet: no champion checks."), "",
             "| check | value | bound | result | reason |", "|---|---|---|---|---|"]
    for c in doc["checks"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        bound = "n/a" if c["threshold"] is None else f"{c['op']} {c['threshold']:.4g}"
        res = "skipped" if c["skipped"] else icon[c["passed"]]
        lines.append(f"| {c['name']} | {value} | {bound} | {res} | {c['reason']} |")
    drifted = [d for d in doc["drift"] if d["drifted"]]
    lines += ["", f"Drift: {len(drifted)} of {len(doc['drift'])} features drifted"
              + (f" ({', '.join(d['column'] for d in drifted)})" if drifted else "") + "."]
    return "\n".join(lines) + "\n"


def _score_onnx(path: Path, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    from loopline.model.runtime import OnnxModel

    model = OnnxModel(path)
    return model.predict_proba(X), [str(c) for c in model.classes]


def champion_model(root: Path, champion: dict, rel: str | None) -> Path:
    """The champion's model as ``loopline run`` fetched it, checked against the registry's sha256.

    Raises:
        LooplineError: it was not fetched, is missing, or is not the registered model.
    """
    if not rel:
        raise LooplineError("its model was not fetched: `loopline run` fetches it")
    path = root / rel
    if not path.is_file():
        raise LooplineError(f"{rel} is missing: `loopline run` fetches the champion's model")
    want, got = champion.get("onnx_sha256"), sha256_file(path)
    if want and got != want:
        raise LooplineError(f"{rel} has sha256 {got[:12]}, not the registered {want[:12]}")
    return path


def _champion_values(root: Path, champion: dict, model: str | None, X: pd.DataFrame,
                     y: np.ndarray, target: str, positive: str) -> tuple[dict | None, Any]:
    """Score the champion's ONNX model on the same held-out rows (None if it cannot)."""
    if not champion.get("version") or champion.get("error"):  # none, or it could not be fetched
        return None, None
    try:
        proba, classes = _score_onnx(champion_model(root, champion, model), X)
        values, snap = quality_report(scored_frame(y, proba, classes, positive, target),
                                      target, positive, classes)
        return values, snap
    except Exception as err:  # a champion that cannot score this data fails its checks
        champion["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return None, None


def evaluate_gate(root: Path, params: Params) -> tuple[dict, list[Any]]:
    """Run every check; return the gate document and the Evidently snapshots."""
    cfg = params.gate
    lay = Layout.of(root, params.paths)
    numeric, categorical = feature_columns(params)
    train, test = load_split(root, params, "train"), load_split(root, params, "test")
    X, y = xy(test, params)
    _, train_y = xy(train, params)
    target, positive = params.data.target, params.data.positive_class
    onnx_path = lay.model(MODEL_ONNX)
    proba, classes = _score_onnx(onnx_path, X)
    classes = [str(c) for c in classes]
    cand, cand_snap = quality_report(scored_frame(y, proba, classes, positive, target), target, positive, classes)
    prior = prior_values(train_y, y, classes, positive)
    chance = {}
    if cfg.baseline_significance is not None and "roc_auc" in cfg.baseline:
        bound = chance_roc_auc(y, proba, classes, positive, cfg.baseline_significance)
        chance = {} if bound is None else {"roc_auc": bound}
    drift_rows, drift_snap = drift_report(train, test, numeric, categorical, cfg.drift)
    champion_path = lay.report(CHAMPION_JSON)
    champion = read_json(champion_path) if champion_path.is_file() else {}
    champion.setdefault("stage", cfg.champion.stage)
    model = champion.pop("onnx_path", None)  # where it is, not what it is: not in the report
    champ_values, champ_snap = _champion_values(root, champion, model, X, y, target, positive)
    checks = (baseline_checks(cand, prior, cfg, chance, len(y)) + absolute_checks(cand, cfg)
              + champion_checks(cand, champ_values, champion, cfg)
              + slice_checks(read_json(lay.report(SLICES_JSON)), cfg) + drift_check(drift_rows, cfg)
              + parity_check(read_json(lay.report(PARITY_JSON)), cfg))
    bound = latency_bound(params)
    measured = offline_latency(onnx_path, X, cfg.latency.calls) if bound is not None else None
    checks += latency_check(measured, bound)
    doc = {
        "verdict": verdict(checks),
        "checks": [asdict(c) for c in checks],
        "failed": [c.name for c in checks if not c.passed and not c.skipped],
        "candidate": {"onnx_sha256": sha256_file(onnx_path), "metrics": {k: round(v, 6) for k, v in cand.items()}},
        "baseline": {"model": "class prior (training split's class shares)",
                     "metrics": {k: round(v, 6) for k, v in prior.items()},
                     "margins": dict(cfg.baseline),
                     "chance": {"significance": cfg.baseline_significance, "rows": int(len(y)),
                                "metrics": {k: round(v, 6) for k, v in chance.items()}}},
        "champion": {**champion, "metrics": ({k: round(v, 6) for k, v in champ_values.items()}
                                             if champ_values else None)},
        "drift": drift_rows,
        "rows": {"reference": int(len(train)), "current": int(len(test))},
    }
    if measured is not None:
        doc["_latency"] = measured  # taken out by run(): not a committed figure
    return doc, [s for s in (cand_snap, drift_snap, champ_snap) if s is not None]


_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def stable_ids(text: str) -> str:
    """Evidently's random ids (uuid4, with or without dashes) renumbered in order of first
    appearance, so the same reports give the same page (its hash is in dvc.lock)."""
    seen: dict[str, str] = {}

    def renumber(m: re.Match) -> str:
        h = seen.setdefault(m.group(0).replace("-", ""), f"{len(seen) + 1:032x}")
        return h if "-" not in m.group(0) else f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    return _UUID.sub(renumber, text)


#: the page's sections, in the order evaluate_gate returns the snapshots
SECTIONS = ("Candidate classification quality", "Data drift: training vs held-out",
            "Champion classification quality (same rows)")


def save_html(snapshots: list[Any], path: Path) -> None:
    """One Evidently HTML page: candidate quality and drift (and the champion's quality) as
    its sections, with stable ids (:func:`stable_ids`)."""
    page = evidently_page(list(zip(SECTIONS, snapshots, strict=False)))
    path.write_text(stable_ids(page), encoding="utf-8")


def evidently_page(sections: list[tuple[str, Any]]) -> str:
    """One Evidently HTML page holding several snapshots, each in a group titled ``title``.

    Evidently (0.7) writes one snapshot per page (Snapshot.save_html), each page carrying
    its whole script bundle; it has no public way to put several on one. Its own page is
    ``render_widgets([group_widget(title="", widgets=snap._widgets)] + snap._tests_widgets)``
    (Snapshot.get_html_str); this builds the same with one titled group per snapshot, from
    the private ``_widgets`` and ``_tests_widgets``. tests/unit/pipeline/stages/test_gate.py
    checks that one untitled section gives Evidently's own page byte for byte, and fails
    when an upgrade changes any of this.
    """
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    widgets = []
    for title, snap in sections:
        widgets.append(group_widget(title=title, widgets=snap._widgets))
        widgets.extend(snap._tests_widgets)
    return render_widgets(widgets, as_iframe=False)


def run(params: Params, root: Path) -> dict:
    doc, snapshots = evaluate_gate(root, params)
    lay = Layout.of(root, params.paths)
    measured = doc.pop("_latency", None)
    if measured is not None:
        import sys

        timings_path = root / TIMINGS_JSON
        timings = read_json(timings_path) if timings_path.is_file() else {}
        timings["gate_latency"] = {k: round(v, 4) for k, v in measured.items()}
        write_json(timings_path, timings)
        print(f"gate: offline latency of one-record calls p50 {measured['p50_ms']:.3f} ms, "
              f"p99 {measured['p99_ms']:.3f} ms over {measured['calls']} calls "
              f"(bound {latency_bound(params):g} ms)", file=sys.stderr)
    with Outputs(root) as out:
        out.json(lay.report(GATE_JSON), doc)
        out.text(lay.report(GATE_MD), markdown(doc))
        out.custom(lay.report(GATE_HTML), lambda p: save_html(snapshots, p))
    return {"verdict": doc["verdict"], "failed": doc["failed"]}

