"""``loopline report``: the review of a change, as markdown for a pull-request comment.

Compares the workspace (head) with a base revision: the params that changed, every held-out
metric with base, head, delta and whether it got better or worse by its own sense, the gate
verdict with each check, the drift summary, the per-slice table, and bars that render in a
GitHub comment without any image hosting. Reads only committed JSON reports and params
(``git show``), so it takes well under a second and needs no heavy import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from loopline.core.errors import LooplineError
from loopline.core.git import git
from loopline.core.layout import (
    CARD_MD,
    EVALUATION_MD,
    GATE_HTML,
    GATE_JSON,
    METRICS_JSON,
    PARAMS_FILE,
    SLICES_JSON,
)
from loopline.core.names import METRICS, higher_is_better

MARKER = "<!-- loopline-report -->"  # lets CI find and update its own sticky comment
EPS = 5e-7


def default_base(root: Path) -> str:
    """The merge base with main (origin/main, else main), else the previous commit."""
    for ref in ("origin/main", "main", "origin/master", "master"):
        if git(root, "rev-parse", "--verify", "--quiet", ref, check=False).returncode != 0:
            continue
        base = git(root, "merge-base", "HEAD", ref, check=False).stdout.strip()
        head = git(root, "rev-parse", "HEAD").stdout.strip()
        if base and base != head:
            return base
    prev = git(root, "rev-parse", "--verify", "--quiet", "HEAD~1", check=False)
    if prev.returncode == 0:
        return prev.stdout.strip()
    raise LooplineError("no base to compare with: give --base REV")


def _at(root: Path, rev: str, rel: str) -> str | None:
    res = git(root, "show", f"{rev}:{rel}", check=False)
    return res.stdout if res.returncode == 0 else None


def _json_at(root: Path, rev: str | None, rel: str) -> Any:
    if rev is None:
        path = root / rel
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    else:
        text = _at(root, rev, rel)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise LooplineError(f"{rel} at {rev or 'the workspace'} is not valid JSON: {err}") from err


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def params_diff(base: dict | None, head: dict | None) -> list[dict]:
    a, b = _flatten(base or {}), _flatten(head or {})
    return [{"key": k, "base": a.get(k), "head": b.get(k)}
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def direction(metric: str, delta: float | None) -> str:
    if delta is None:
        return "new"
    if abs(delta) < EPS:
        return "same"
    better = delta > 0 if higher_is_better(metric) else delta < 0
    return "better" if better else "worse"


def metrics_diff(base: dict | None, head: dict | None) -> list[dict]:
    base, head = base or {}, head or {}
    names = [m for m in METRICS if m in head or m in base]
    rows = []
    for m in names:
        b, h = base.get(m), head.get(m)
        delta = None if b is None or h is None else h - b
        rows.append({"metric": m, "base": b, "head": h, "delta": delta,
                     "direction": direction(m, delta) if h is not None else "removed"})
    return rows


def slices_diff(base: dict | None, head: dict | None, metric: str = "roc_auc") -> dict:
    head = head or {}
    hs, bs = head.get("slices") or {}, (base or {}).get("slices") or {}
    rows = []
    for name, vals in hs.items():
        b = (bs.get(name) or {}).get(metric)
        h = vals.get(metric)
        rows.append({"slice": name, "rows": vals.get("rows"), "base": b, "head": h,
                     "delta": None if b is None or h is None else h - b,
                     "in_gap": vals.get("included_in_gap", True)})
    return {"column": head.get("column"), "metric": metric, "rows": rows}


def build(root: Path, base: str | None = None, artifacts_url: str | None = None) -> dict:
    """Everything the report shows, as a JSON-able dict."""
    from loopline.config.params import load_params

    params = load_params(root)
    reports = params.paths.reports
    base = base or default_base(root)
    found = git(root, "rev-parse", "--verify", "-q", f"{base}^{{commit}}", check=False)
    if found.returncode != 0:
        raise LooplineError(f"unknown base revision {base!r}: name a branch, tag or commit "
                            "(e.g. --base origin/main)")
    base_sha = found.stdout.strip()
    head_sha = git(root, "rev-parse", "HEAD").stdout.strip()
    dirty = bool(git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip())
    base_params = yaml.safe_load(_at(root, base_sha, PARAMS_FILE) or "{}")
    head_params = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8"))
    gate = _json_at(root, None, f"{reports}/{GATE_JSON}")
    html = [f"{reports}/{GATE_HTML}", f"{reports}/{EVALUATION_MD}", f"{params.paths.models}/{CARD_MD}"]
    return {
        "artifact": params.artifact,
        "base": {"rev": base, "commit": base_sha},
        "head": {"commit": head_sha, "dirty": dirty},
        "params": params_diff(base_params, head_params),
        "metrics": metrics_diff(_json_at(root, base_sha, f"{reports}/{METRICS_JSON}"),
                                _json_at(root, None, f"{reports}/{METRICS_JSON}")),
        "gate": gate,
        "slices": slices_diff(_json_at(root, base_sha, f"{reports}/{SLICES_JSON}"),
                              _json_at(root, None, f"{reports}/{SLICES_JSON}")),
        "reports": [p for p in html if (root / p).is_file()],
        "artifacts_url": artifacts_url if (artifacts_url or "").startswith("http") else None,
    }


# ------------------------------------------------------------------ markdown


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return f"`{v}`" if not isinstance(v, (int, bool)) else str(v)


def _signed(v: float | None) -> str:
    return "–" if v is None else f"{v:+.4f}"


ICON = {"better": "🟢 better", "worse": "🔴 worse", "same": "⚪ same", "new": "🆕 new",
        "removed": "removed"}


def bar(value: float | None, width: int = 20) -> str:
    """A Unicode bar for a value in [0, 1] (eighth blocks)."""
    if value is None:
        return ""
    v = min(max(value, 0.0), 1.0) * width
    full, rest = int(v), int((v - int(v)) * 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "") + " " * (width - full - (1 if rest else 0))


def markdown(doc: dict) -> str:
    gate = doc.get("gate") or {}
    verdict = (gate.get("verdict") or "missing").upper()
    head = doc["head"]["commit"][:12] + (" + uncommitted changes" if doc["head"]["dirty"] else "")
    lines = [MARKER, f"## loopline report: {doc['artifact']} — gate **{verdict}**", "",
             f"Base `{doc['base']['commit'][:12]}` ({doc['base']['rev']}) → head `{head}`", ""]
    worse = [m["metric"] for m in doc["metrics"] if m["direction"] == "worse"]
    if worse:
        lines += [f"⚠️ Worse than base: {', '.join(worse)}", ""]

    lines += ["### Metrics (held-out split)", "", "| metric | base | head | Δ | |", "|---|---:|---:|---:|---|"]
    for m in doc["metrics"]:
        lines.append(f"| {m['metric']} | {_fmt(m['base'])} | {_fmt(m['head'])} | "
                     f"{_signed(m['delta'])} | {ICON[m['direction']]} |")
    lines += ["", "```text"]
    for m in doc["metrics"]:
        if not higher_is_better(m["metric"]):
            continue
        lines.append(f"{m['metric']:<18} base {bar(m['base'])} {_fmt(m['base'])}")
        lines.append(f"{'':<18} head {bar(m['head'])} {_fmt(m['head'])}")
    lines += ["```", ""]

    lines += ["### Params changed", ""]
    if doc["params"]:
        lines += ["| key | base | head |", "|---|---|---|"]
        lines += [f"| `{p['key']}` | {_cell(_fmt(p['base']))} | {_cell(_fmt(p['head']))} |"
                  for p in doc["params"]]
    else:
        lines.append("No params changed.")
    lines.append("")

    lines += ["### Gate", ""]
    if gate:
        champ = gate.get("champion") or {}
        lines.append(f"Champion: {champ.get('version') or 'none yet (absolute checks only)'}"
                     f" in {champ.get('stage', 'prod')}")
        lines += ["", "| check | value | bound | result | reason |", "|---|---:|---:|---|---|"]
        for c in gate.get("checks", []):
            res = "skipped" if c.get("skipped") else ("✅ pass" if c.get("passed") else "❌ FAIL")
            bound = "–" if c.get("threshold") is None else f"{c.get('op', '')} {c['threshold']:.4g}"
            value = "–" if c.get("value") is None else f"{c['value']:.4g}"
            lines.append(f"| {_cell(c['name'])} | {value} | {bound} | {res} | "
                         f"{_cell(c.get('reason', ''))} |")
    else:
        lines.append("No gate report: run `loopline run` (or `dvc repro gate`).")
    lines.append("")

    drift = gate.get("drift") or []
    if drift:
        drifted = [d for d in drift if d.get("drifted")]
        lines += ["### Drift (training split vs held-out split)", "",
                  f"{len(drifted)} of {len(drift)} features drifted"
                  + (f": {', '.join(d['column'] for d in drifted)}" if drifted else "") + ".", "",
                  "| feature | method | value | threshold | drifted |", "|---|---|---:|---:|---|"]
        lines += [f"| {d['column']} | {d['method']} | {d['value']:.4g} | {d['threshold']:.4g} | "
                  f"{'⚠️ yes' if d['drifted'] else 'no'} |" for d in drift]
        lines.append("")

    sl = doc["slices"]
    if sl["rows"]:
        lines += [f"### Slices by `{sl['column']}` ({sl['metric']})", "",
                  "| slice | rows | base | head | Δ | |", "|---|---:|---:|---:|---:|---|"]
        for r in sl["rows"]:
            note = "" if r["in_gap"] else "too small for the gap"
            lines.append(f"| {r['slice']} | {r['rows']} | {_fmt(r['base'])} | {_fmt(r['head'])} | "
                         f"{_signed(r['delta'])} | {bar(r['head'], 10)} {note} |")
        lines.append("")

    if doc["reports"]:
        where = (f"[workflow artifacts]({doc['artifacts_url']})" if doc.get("artifacts_url")
                 else "the workspace")
        lines += ["### Reports", "", f"In {where}: " + ", ".join(f"`{p}`" for p in doc["reports"]), ""]
    return "\n".join(lines)
