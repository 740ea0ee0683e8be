"""``loopline monitor`` over a log of any size: each window's figures computed by DuckDB.

:func:`loopline.monitoring.monitor.run` takes the log as a pandas frame, one row per record
with its inputs as dicts: fine for a day of one replica, not for ten million records. Here
the same figures come from SQL over the log's window (:class:`loopline.serving.log_store.
LogWindow`: the store's Parquet partitions scanned in place with the time window and version
pushed down, or the local SQLite log), reading only the columns each figure needs:

- one pass over the records (``requests`` unnested to one row per record, its label joined
  from ``feedback``) gives, per window and per window and version, the counts, latency
  percentiles, missing counts per feature, predicted classes, invalid probabilities and the
  labelled performance as sums (confusion counts, Brier and log-loss sums, calibration bins);
- ROC AUC ranks the labelled records' probabilities (collected in that pass, 8 bytes a
  labelled record) with numpy;
- the drift tests compare the reference with a bounded, seeded sample of each window's
  records: the ``sample_rows`` records whose ``hash(request_id, idx, seed)`` is smallest
  (every record when the window has no more), the same sample from every copy of the log.
  A sampled window says so in its report (``drift_sample``: rows, of, seed).

Everything else (grades, reasons, status, actions) is :func:`loopline.monitoring.monitor.
assemble`, shared with the frame path, so both give the same report on the same records
(up to floating-point summation order, and drift on a sample when a window is larger).
Memory is bounded by DuckDB's limit (it spills beyond) and the samples, not by the log.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from loopline.config.operations import MonitorConfig
from loopline.monitoring import monitor as mon
from loopline.monitoring import targets as tg

SAMPLE_ROWS = 50_000  # records per window (and per version) the drift tests compare
SEED = 0
COLUMNS = ("request_id", "ts", "model_version", "n", "inputs", "predictions", "probabilities",
           "classes", "latency_ms")
_EDGES = [float(e) for e in np.linspace(0.0, 1.0, 11)[1:-1]]  # the inner edges of mon._ece's bins, exactly


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() or abs(value) > 2**52 \
        else repr(int(value))


def feature_types(reference: pd.DataFrame, columns: list[str], numeric: list[str]) -> dict[str, str]:
    """DuckDB types to read the logged inputs as, from the reference's dtypes (so a number
    of a categorical column stays a number, as it is in the reference)."""
    out = {}
    for c in columns:
        kind = reference[c].dtype.kind if c in reference.columns else "O"
        out[c] = ("BIGINT" if kind in "iu" else "DOUBLE" if kind == "f" or c in numeric
                  and kind not in "b" else "BOOLEAN" if kind == "b" else "VARCHAR")
    return out


class _Windows:
    def __init__(self, until: float, size: float, count: int) -> None:
        self.until, self.size, self.count = until, size, count
        self.start = until - count * size


def _requests(win: _Windows, inputs: bool) -> str:
    """CTE ``req``: the requests in the span with their window ``w`` (0 = the oldest)."""
    s, u, n = _num(win.size), _num(win.until), win.count
    start = f"({u} - {n} * {s})"
    return (f"req0 AS (SELECT request_id, ts, model_version AS version, latency_ms, n, "
            f"predictions, probabilities, classes{', inputs' if inputs else ''}, "
            f"CAST(floor((ts - {start}) / {s}) AS BIGINT) AS w0 FROM requests "
            f"WHERE ts >= {start} AND ts < {u}), "
            # the same comparisons as the frame path's windows, at their float boundaries
            f"req AS (SELECT * EXCLUDE (w0), w0 - CAST(ts < {u} - ({n} - w0) * {s} AS BIGINT) "
            f"+ CAST(ts >= {u} - ({n} - w0 - 1) * {s} AS BIGINT) AS w FROM req0)")


def _records(win: _Windows, types: dict[str, str] | None) -> str:
    """CTEs ``req`` and ``rec``, one row per record: w, version, request_id, idx, ts,
    latency_ms, prediction, pl (probabilities in the order of cls), cls, and x, the struct
    of the ``types`` features when given (inputs as records or as columns alike)."""
    req = _requests(win, bool(types))
    if types:
        rows_type = _lit(json.dumps([types]))
        cols_type = _lit(json.dumps({k: [v] for k, v in types.items()}))
        pack = ", ".join(f"{_ident(c)} := colsx.{_ident(c)}[i + 1]" for c in types)
        xs = (f", CASE WHEN starts_with(ltrim(inputs), '{{') THEN list_transform(range(n), "
              f"lambda i: struct_pack({pack})) ELSE from_json(inputs, {rows_type}) END AS xs")
        inner = (f"(SELECT *, CASE WHEN starts_with(ltrim(inputs), '{{') THEN "
                 f"from_json(inputs, {cols_type}) END AS colsx FROM req)")
        unnest_x = ", unnest(xs) AS x"
    else:
        xs, inner, unnest_x = "", "req", ""
    rec = (f"rec AS (SELECT w, version, request_id, ts, latency_ms, cls, unnest(range(n)) AS "
           f"idx, unnest(preds) AS prediction, unnest(probs) AS pl{unnest_x} FROM (SELECT *, "
           "from_json(predictions, '[\"VARCHAR\"]') AS preds, from_json(probabilities, "
           f"'[[\"DOUBLE\"]]') AS probs, from_json(classes, '[\"VARCHAR\"]') AS cls{xs} "
           f"FROM {inner}))")
    return f"{req}, {rec}"


def _labelled(classes: list[str], positive: str, seed: int) -> str:
    """CTE ``e``: ``rec`` with its label, p_pos, bad (invalid probabilities over
    ``classes``), ok (labelled and valid), y, yhat, bin (calibration bin) and h (sample key)."""
    pcs = [f"pl[list_position(cls, {_lit(c)})]" for c in classes]
    if pcs:
        valid = " AND ".join([*(f"{p} BETWEEN 0 AND 1" for p in pcs),
                              f"abs({' + '.join(pcs)} - 1.0) <= 1e-4"])
        bad = f"coalesce(NOT ({valid}), true)"
    else:
        bad = "true"
    pos = _lit(positive)
    bins = " + ".join(f"CAST(p_pos >= {e!r} AS INTEGER)" for e in _EDGES)
    return (f"lab AS (SELECT rec.*, f.label FROM rec LEFT JOIN feedback f ON "
            "f.request_id = rec.request_id AND f.idx = rec.idx), "
            f"d AS (SELECT *, pl[list_position(cls, {pos})] AS p_pos, {bad} AS bad, "
            f"hash(request_id, idx, {int(seed)}) AS h FROM lab), "
            f"e AS (SELECT *, label IS NOT NULL AND NOT bad AS ok, label = {pos} AS y, "
            f"prediction = {pos} AS yhat, {bins} AS bin FROM d)")


def _figure_sql(features: list[str], request_latency: bool) -> str:
    clip = "greatest(least(p_pos, 1 - 1e-15), 1e-15)"
    parts = [
        "w", "version", "grouping(version) AS gv", "count(*) AS records",
        "count(*) FILTER (WHERE idx = 0) AS requests",
        "quantile_cont(latency_ms, [0.5, 0.99]) AS lat",
        "sum(latency_ms) FILTER (WHERE idx = 0) AS rsum",
        *(f"count(x.{_ident(c)}) AS c{i}" for i, c in enumerate(features)),
        "avg(p_pos) AS mean_pos", "count(*) FILTER (WHERE bad) AS invalid",
        "count(*) FILTER (WHERE ok) AS labels", "count(*) FILTER (WHERE ok AND y) AS npos",
        "count(*) FILTER (WHERE ok AND y AND yhat) AS tp",
        "count(*) FILTER (WHERE ok AND NOT y AND yhat) AS fp",
        "count(*) FILTER (WHERE ok AND y AND NOT yhat) AS fn",
        "sum((CAST(y AS INTEGER) - p_pos) ** 2) FILTER (WHERE ok) AS brier",
        f"sum(-(CAST(y AS INTEGER) * ln({clip}) + (1 - CAST(y AS INTEGER)) * ln(1 - {clip}))) "
        "FILTER (WHERE ok) AS ll",
        *(f"count(*) FILTER (WHERE ok AND bin = {b}) AS b{b}n, count(*) FILTER "
          f"(WHERE ok AND y AND bin = {b}) AS b{b}y, sum(p_pos) FILTER (WHERE ok AND bin = {b}) "
          f"AS b{b}p" for b in range(10)),
        "count(label) AS labelled_all",
        "count(*) FILTER (WHERE label = prediction) AS correct_all",
        "histogram(prediction) AS shares",
        # ROC AUC ranks the labelled probabilities: 8 bytes a labelled record, not a record
        "list(p_pos) FILTER (WHERE ok AND y) AS ppos",
        "list(p_pos) FILTER (WHERE ok AND NOT y) AS pneg",
        "list({'h': h, 'x': x}) FILTER (WHERE h <= t) AS sample"]
    if request_latency:
        parts.append("quantile_cont(latency_ms, [0.5, 0.99]) FILTER (WHERE idx = 0) AS rlat")
    return (f"SELECT {', '.join(parts)} FROM e JOIN _thr USING (w, version) "
            "GROUP BY GROUPING SETS ((w), (w, version))")


def _auc(pos: Any, neg: Any) -> float | None:
    """ROC AUC of the positive records' probabilities against the negative ones' (the
    Mann-Whitney U with ties counted half, as sklearn's roc_auc_score)."""
    from scipy.stats import rankdata

    if pos is None or neg is None or not len(pos) or not len(neg):
        return None
    p = np.asarray(pos.to_numpy(zero_copy_only=False), dtype=float)
    q = np.asarray(neg.to_numpy(zero_copy_only=False), dtype=float)
    ranks = rankdata(np.concatenate([p, q]))
    u = ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2.0
    return float(u / (len(p) * len(q)))


def _performance(row: dict, auc: float | None) -> dict:
    """:func:`loopline.monitoring.monitor.performance` from a group's sums."""
    n, tp, fp, fn = row["labels"], row["tp"], row["fp"], row["fn"]
    tn = n - tp - fp - fn
    ece = 0.0
    for b in range(10):
        k = row[f"b{b}n"]
        if k:
            ece += k / n * abs(row[f"b{b}y"] / k - row[f"b{b}p"] / k)
    out = {"labels": int(n), "accuracy": (tp + tn) / n,
           "precision": tp / (tp + fp) if tp + fp else 0.0,
           "recall": tp / (tp + fn) if tp + fn else 0.0,
           "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
           "brier": float(row["brier"]) / n, "ece": float(ece), "log_loss": float(row["ll"]) / n}
    out["roc_auc"] = auc if 0 < row["npos"] < n else None
    return out


def _sample(values: Any, rows: int) -> pd.DataFrame | None:
    """The ``rows`` records of a group's candidates (list of {h, x}) with the smallest h."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values is None or len(values) == 0:
        return None
    h = values.field("h")
    if len(values) > rows:
        keep = pc.sort_indices(h)[:rows]
        values = values.take(keep)
    xs = values.field("x")
    return pa.Table.from_struct_array(xs).to_pandas()


def window_figures(con: Any, win: _Windows, reference: pd.DataFrame, numeric: list[str],
                   categorical: list[str], classes: list[str], positive: str,
                   cfg: MonitorConfig, *, sample_rows: int = SAMPLE_ROWS,
                   seed: int = SEED) -> dict[int, dict]:
    """Per window index (0 = oldest) that has records: ``{"all": fig, "versions": {v: fig}}``
    with the figures of :func:`loopline.monitoring.monitor.frame_figures`."""
    import pyarrow as pa

    from loopline.serving.log_store import arrow

    features = numeric + categorical
    targets = cfg.targets
    slice_cols = [c for c in (targets.slice_gap.columns if targets.slice_gap else [])]
    types = feature_types(reference, list(dict.fromkeys(features + slice_cols)), numeric)
    counts = con.execute(f"WITH {_requests(win, False)} SELECT w, version, "
                         "sum(n) AS c FROM req GROUP BY w, version").fetchall()
    if not counts:
        return {}
    full = 2**64 - 1
    margin = sample_rows + 5 * math.sqrt(sample_rows) + 10
    thr = pa.table({"w": pa.array([c[0] for c in counts], pa.int64()),
                    "version": pa.array([c[1] for c in counts], pa.string()),
                    "t": pa.array([full if c[2] <= sample_rows else
                                   min(full, int(margin / c[2] * 2**64)) for c in counts],
                                  pa.uint64())})
    con.register("_thr", thr)
    head = f"WITH {_records(win, types)}, {_labelled(classes, positive, seed)} "
    request_latency = targets.latency_p50_ms is not None or targets.latency_p99_ms is not None
    table = arrow(con.sql(head + _figure_sql(features, request_latency)))
    slices = _slices(con, win, types, classes, positive, seed, slice_cols) if slice_cols else None
    out: dict[int, dict] = {}
    samples, ppos, pneg = (table.column(c) for c in ("sample", "ppos", "pneg"))
    data = table.drop_columns(["sample", "ppos", "pneg"]).to_pylist()
    for i, row in enumerate(data):
        w, version = int(row["w"]), (row["version"] if row["gv"] == 0 else None)
        auc = _auc(ppos[i].values, pneg[i].values)
        fig = _figure(row, features, samples[i].values, sample_rows, seed, cfg, auc)
        if slices is not None:
            part = slices[slices["w"] == w]
            fig["slice_frame"] = part if version is None else part[part["version"] == version]
        entry = out.setdefault(w, {"all": None, "versions": {}})
        if version is None:
            entry["all"] = fig
        else:
            entry["versions"][version] = fig
    for entry in out.values():
        entry["all"]["versions"] = sorted(entry["versions"])
        for v, fig in entry["versions"].items():
            fig["versions"] = [v]
        perf = {v: f["performance_full"] for v, f in sorted(entry["versions"].items())
                if f["labels"] >= cfg.min_labels}
        entry["all"]["performance_by_version"] = perf
        for fig in entry["versions"].values():
            fig["performance_by_version"] = ({fig["versions"][0]: fig["performance_full"]}
                                             if fig["labels"] >= cfg.min_labels else {})
    return out


def _figure(row: dict, features: list[str], candidates: Any, sample_rows: int, seed: int,
            cfg: MonitorConfig, auc: float | None) -> dict:
    records = int(row["records"])
    lat = row["lat"]
    fig: dict[str, Any] = {"requests": int(row["requests"]), "records": records,
                           "latency_ms": {"p50": float(lat[0]), "p99": float(lat[1])}}
    fig["missing_rate"] = {c: float((records - row[f"c{i}"]) / records)
                           for i, c in enumerate(features)}
    fig["missing_counts"] = {c: records - row[f"c{i}"] for i, c in enumerate(features)}
    X = _sample(candidates, sample_rows)
    X = pd.DataFrame(columns=features) if X is None else X[features]
    fig["X"] = X.reset_index(drop=True)
    fig["sample"] = ({"rows": int(len(X)), "of": records, "seed": seed}
                     if len(X) < records else None)
    shares = dict(row["shares"] or {})
    total = sum(shares.values())
    ordered = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    fig["predicted_share"] = pd.Series({str(k): v / total for k, v in ordered}, dtype=float)
    mean = row["mean_pos"]
    fig["mean_positive_probability"] = float("nan") if mean is None else float(mean)
    fig["invalid_predictions"] = int(row["invalid"])
    fig["labels"] = int(row["labels"])
    fig["performance_full"] = _performance(row, auc) if row["labels"] else None
    fig["performance"] = fig["performance_full"] if row["labels"] >= cfg.min_labels else None
    fig["request_latency"] = row.get("rlat")
    fig["request_latency_sum"] = float(row["rsum"] or 0.0)
    fig["labelled_all"] = int(row["labelled_all"])
    fig["correct_all"] = int(row["correct_all"])
    return fig


def _slices(con: Any, win: _Windows, types: dict[str, str], classes: list[str], positive: str,
            seed: int, columns: list[str]) -> pd.DataFrame:
    """The labelled records (valid or not) with the slice columns, for the slice-gap target."""
    cols = ", ".join(f"x.{_ident(c)} AS {_ident(c)}" for c in columns)
    return con.execute(f"WITH {_records(win, types)}, {_labelled(classes, positive, seed)} "
                       f"SELECT w, version, prediction, label, {cols} FROM e WHERE label IS NOT "
                       "NULL ORDER BY ts, request_id, idx").df()


def grade_targets(out: dict, fig: dict, errors: pd.DataFrame | None, cfg: MonitorConfig,
                  positive: str, grade: Any) -> None:
    """:func:`loopline.monitoring.targets.grade_targets` from a window's figures."""
    targets, bands = cfg.targets, tg._bands
    found: dict[str, Any] = {}
    for name, q, i in (("latency_p50_ms", 50, 0), ("latency_p99_ms", 99, 1)):
        band = getattr(targets, name)
        if band is not None and fig["requests"]:
            found[name] = float(fig["request_latency"][i])
            grade(name, band.status(found[name]),
                  f"model latency p{q} {found[name]:.2f} ms ({bands(band)})")
    if targets.availability is not None:
        served = fig["requests"]
        found["availability"] = tg.availability(served, errors)
        if found["availability"] is not None and served + len(errors) >= cfg.min_requests:
            grade("availability", targets.availability.status(found["availability"]),
                  f"availability {found['availability']:.2%} ({bands(targets.availability)})")
    labelled = fig["labelled_all"]
    if targets.accuracy is not None and labelled:
        acc = fig["correct_all"] / labelled
        found["accuracy"] = acc
        grade("accuracy_range", targets.accuracy.status(acc),
              f"accuracy {acc:.3f} on {labelled} labelled records "
              f"({targets.accuracy.describe()})")
    gap = targets.slice_gap
    if gap is not None and labelled:
        part = fig["slice_frame"].reset_index(drop=True)
        inputs = part[[c for c in gap.columns]].copy()
        for c in gap.columns:  # a column with gaps in the window is float in the frame path
            if fig["missing_counts"].get(c) and inputs[c].dtype.kind in "iu":
                inputs[c] = inputs[c].astype(float)
        gaps = tg.slice_gaps(part, inputs, gap.columns, gap.metric, positive, gap.min_records)
        found["slice_gap"] = gaps
        if gaps:
            col = max(gaps, key=lambda c: gaps[c]["gap"])
            g = gaps[col]
            lo, hi = min(g["groups"], key=g["groups"].get), max(g["groups"], key=g["groups"].get)
            grade("slice_gap", gap.band.status(g["gap"]),
                  f"{gap.metric} gap {g['gap']:.3f} between {col} {hi!r} and {lo!r} "
                  f"({bands(gap.band)})")
    if targets.cost is not None and fig["records"]:
        seconds = fig["request_latency_sum"] / 1000.0
        per_1k = seconds / 3600.0 * targets.cost.cpu_hour_price / fig["records"] * 1000.0
        found["cost_per_1k"] = per_1k
        found["compute_seconds"] = seconds
        grade("cost_per_1k", targets.cost.per_1k.status(per_1k),
              f"cost {per_1k:.6f} per 1,000 predictions ({seconds:.2f} compute s at "
              f"{targets.cost.cpu_hour_price:g}/CPU-hour; {bands(targets.cost.per_1k)})")
    if found:
        out["targets"] = found


def run(source: Any, reference: pd.DataFrame, *, numeric: list[str], categorical: list[str],
        classes: list[str], positive: str, target: str, cfg: MonitorConfig,
        until: float | None = None, size: float | None = None,
        sample_rows: int = SAMPLE_ROWS, seed: int = SEED) -> tuple[dict, pd.DataFrame | None]:
    """The document of :func:`loopline.monitoring.monitor.run` from ``source`` (an open
    :class:`loopline.serving.log_store.LogSource`), and the latest window's drift sample
    (its features, for the HTML report; None without data)."""
    until = time.time() if until is None else until
    size = cfg.window_seconds if size is None else size
    span = cfg.windows * size
    errors = source.request_errors(since=until - span, until=until)
    win = _Windows(until, size, cfg.windows)
    with source.window(since=until - span, until=until, columns=COLUMNS) as log:
        figs = window_figures(log.con, win, reference, numeric, categorical, classes, positive,
                              cfg, sample_rows=sample_rows, seed=seed)

    def report(k: int, start: float, end: float, failed: pd.DataFrame | None,
               balance: dict[str, float]) -> dict | None:
        entry = figs.get(cfg.windows - k)
        if entry is None:
            return None
        return _report(entry["all"], entry["versions"], reference, numeric, categorical,
                       classes, positive, balance, cfg, failed)

    doc = mon.document(report, reference, target=target, cfg=cfg, until=until, size=size,
                       errors=errors)
    latest = None
    if doc["latest_window"]:
        k = round((until - doc["latest_window"]["end"]) / size) + 1
        entry = figs.get(cfg.windows - k)
        latest = entry["all"]["X"] if entry else None
    return doc, latest


def _report(fig: dict, versions: dict[str, dict], reference: pd.DataFrame, numeric: list[str],
            categorical: list[str], classes: list[str], positive: str,
            balance: dict[str, float], cfg: MonitorConfig, errors: pd.DataFrame | None, *,
            by_version: bool = True) -> dict:
    def targets(out: dict, grade: Any) -> None:
        grade_targets(out, fig, errors, cfg, positive, grade)

    def version_report(version: str) -> dict:
        return _report(versions[version], {}, reference, numeric, categorical, classes,
                       positive, balance, cfg, None, by_version=False)

    return mon.assemble(fig, reference, numeric, categorical, classes, balance, cfg,
                        errors=errors, targets=targets,
                        version_report=version_report if by_version else None)
