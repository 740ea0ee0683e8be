"""validate: check data/raw against the declared schema before anything learns from it.

Checks columns (missing, unexpected), types, nullability, numeric ranges and allowed
categories. Each violation names the column, the rule and a few offending rows (by row id).
Any violation fails the stage, so nothing downstream runs on invalid data. Missing rates are
reported per feature; a rate above ``data.validate.max_missing_rate`` raises an alarm in the
report (and fails the stage only when ``fail_on_missing_alarm`` is set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loopline.config.params import Params
from loopline.config.pipeline import ColumnRule, DataConfig, Schema
from loopline.core.errors import LooplineError
from loopline.core.files import Outputs, md5_file
from loopline.core.layout import VALIDATE_JSON, Layout
from loopline.pipeline.tabular import ROW_ID, as_text, feature_columns, parse_boolean, parse_numeric


@dataclass
class Violation:
    column: str
    rule: str
    message: str
    count: int = 0
    examples: list[dict] = field(default_factory=list)

    def line(self) -> str:
        shown = ", ".join(f"{e['row_id']}={e['value']!r}" for e in self.examples)
        tail = f" (e.g. row_id {shown})" if shown else ""
        return f"column {self.column!r} [{self.rule}]: {self.message}{tail}"


def _examples(df: pd.DataFrame, mask: pd.Series, column: str, n: int) -> list[dict]:
    rows = df.loc[mask, [ROW_ID, column]].head(n)
    out = []
    for rid, value in zip(rows[ROW_ID], rows[column], strict=True):
        value = None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
        out.append({"row_id": str(rid), "value": value})
    return out


def check_column(df: pd.DataFrame, name: str, rule: ColumnRule, n: int) -> list[Violation]:
    """All violations of one column's rule."""
    col = df[name]
    found: list[Violation] = []
    null = col.isna()
    if not rule.nullable and null.any():
        found.append(Violation(name, "nullable", f"{int(null.sum())} empty value(s) where none are allowed",
                               int(null.sum()), _examples(df, null, name, n)))
    if rule.type == "category":
        if rule.categories is not None:
            allowed = set(rule.categories)
            bad = ~null & ~as_text(col).isin(allowed)
            if bad.any():
                found.append(Violation(name, "categories",
                                       f"{int(bad.sum())} value(s) outside the allowed {sorted(allowed)}",
                                       int(bad.sum()), _examples(df, bad, name, n)))
        return found
    if rule.type == "boolean":
        bad = parse_boolean(col)[1]
        if bad.any():
            found.append(Violation(name, "type", f"{int(bad.sum())} value(s) are not true/false",
                                   int(bad.sum()), _examples(df, bad, name, n)))
        return found
    parsed, unparseable = parse_numeric(col)
    if unparseable.any():
        found.append(Violation(name, "type", f"{int(unparseable.sum())} value(s) are not numbers",
                               int(unparseable.sum()), _examples(df, unparseable, name, n)))
    if rule.type == "integer":
        frac = parsed.notna() & np.isfinite(parsed) & (parsed != np.round(parsed))
        if frac.any():
            found.append(Violation(name, "type", f"{int(frac.sum())} value(s) are not whole numbers",
                                   int(frac.sum()), _examples(df, frac, name, n)))
    inf = parsed.notna() & ~np.isfinite(parsed.fillna(0))
    if inf.any():
        found.append(Violation(name, "type", f"{int(inf.sum())} value(s) are infinite",
                               int(inf.sum()), _examples(df, inf, name, n)))
    if rule.min is not None:
        low = parsed < rule.min
        if low.any():
            found.append(Violation(name, "min", f"{int(low.sum())} value(s) below the minimum {rule.min:g}",
                                   int(low.sum()), _examples(df, low, name, n)))
    if rule.max is not None:
        high = parsed > rule.max
        if high.any():
            found.append(Violation(name, "max", f"{int(high.sum())} value(s) above the maximum {rule.max:g}",
                                   int(high.sum()), _examples(df, high, name, n)))
    return found


def check_schema(df: pd.DataFrame, schema: Schema, n: int = 5) -> list[Violation]:
    """Every violation of ``schema`` in ``df`` (which carries a ``row_id`` column)."""
    found: list[Violation] = []
    present = [c for c in df.columns if c != ROW_ID]
    for name in schema.columns:
        if name not in df.columns:
            found.append(Violation(name, "required", "declared in the schema but absent from the data"))
    if not schema.allow_extra_columns:
        for name in present:
            if name not in schema.columns:
                found.append(Violation(str(name), "unexpected",
                                       "present in the data but not declared in the schema "
                                       "(declare it, or set allow_extra_columns: true)"))
    for name, rule in schema.columns.items():
        if name in df.columns:
            found.extend(check_column(df, name, rule, n))
    return found


def check_target(df: pd.DataFrame, cfg: DataConfig) -> list[Violation]:
    """The target must have at least two classes, including the positive class."""
    if cfg.target not in df.columns:
        return []
    values = as_text(df[cfg.target].dropna())  # as categories are compared everywhere
    found = []
    if values.nunique() < 2:
        found.append(Violation(cfg.target, "classes",
                               f"the target needs at least two classes, found {sorted(values.unique())}"))
    elif cfg.positive_class is not None and cfg.positive_class not in set(values):
        found.append(Violation(cfg.target, "positive_class",
                               f"positive class {cfg.positive_class!r} never occurs in the target"))
    return found


def missing_report(df: pd.DataFrame, columns: list[str], threshold: float) -> tuple[dict, list[dict]]:
    """Missing rate per column and the alarms for rates above ``threshold``."""
    rates = {c: round(float(df[c].isna().mean()), 6) for c in columns if c in df.columns}
    alarms = [
        {"column": c, "missing_rate": r, "threshold": threshold,
         "message": f"{c}: {r:.1%} missing, above the {threshold:.0%} threshold"}
        for c, r in rates.items() if r > threshold
    ]
    return rates, alarms


def validate(df: pd.DataFrame, cfg: DataConfig, feature_columns: list[str]) -> dict:
    """Validate a raw frame; return the report (``passed`` False when anything is violated)."""
    vcfg = cfg.validation
    violations = check_schema(df, cfg.schema_, vcfg.show_rows) + check_target(df, cfg)
    rates, alarms = missing_report(df, feature_columns, vcfg.max_missing_rate)
    passed = not violations and not (alarms and vcfg.fail_on_missing_alarm)
    return {
        "passed": passed,
        "rows": int(len(df)),
        "columns": int(df.shape[1] - 1),
        "violations": [asdict(v) for v in violations],
        "missing_rate": rates,
        "missing_threshold": vcfg.max_missing_rate,
        "alarms": alarms,
    }


def run(params: Params, root: Path) -> dict:
    cfg = params.data
    raw_path = root / params.paths.raw
    df = pd.read_parquet(raw_path)
    numeric, categorical = feature_columns(params)
    report = validate(df, cfg, numeric + categorical)
    report["data_md5"] = md5_file(raw_path)
    if not report["passed"]:
        lines = [Violation(**v).line() for v in report["violations"]]
        if cfg.validation.fail_on_missing_alarm:
            lines += [a["message"] + " (fail_on_missing_alarm)" for a in report["alarms"]]
        head = lines[0]
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        raise LooplineError(f"validate failed on {cfg.source}: {head}{more}",
                            details="\n".join(f"  - {line}" for line in lines))
    with Outputs(root) as out:
        out.json(Layout.of(root, params.paths).report(VALIDATE_JSON), report)
    return {"rows": report["rows"], "alarms": [a["message"] for a in report["alarms"]]}
