"""The HTML report of ``loopline simulate``: one static page, plots drawn as inline SVG.

- ROC AUC of each step's window over time, on the RAG bands of ``conf/monitor``, with the
  events (retrained, forced, rolled back) marked;
- the status of each step as a band;
- drift per feature and step (1.0 = the method's threshold);
- the share of new-regime records sent and the share of drifted features;
- the events and the timeline as tables.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

COLORS = {"GREEN": "#2e7d32", "AMBER": "#f9a825", "RED": "#c62828", "NO DATA": "#9e9e9e"}
W, L, R = 960, 56, 16


def _x(step: int, n: int) -> float:
    return L + (step - 0.5) * (W - L - R) / n


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _auc_plot(steps: list[dict], bands: dict[str, float], events: list[dict]) -> str:
    n, h, top, bottom = len(steps), 300, 14, 36
    lo, hi = 0.4, 1.0

    def y(v: float) -> float:
        return top + (hi - min(max(v, lo), hi)) / (hi - lo) * (h - top - bottom)

    out = [f'<svg id="auc" width="{W}" height="{h}" role="img" aria-label="ROC AUC over time">']
    amber, red = bands.get("amber"), bands.get("red")
    if amber is not None and red is not None:
        for a, b, name in ((hi, amber, "GREEN"), (amber, red, "AMBER"), (red, lo, "RED")):
            out.append(f'<rect x="{L}" y="{y(a):.1f}" width="{W - L - R}" height="{y(b) - y(a):.1f}" '
                       f'fill="{COLORS[name]}" opacity="0.10"/>')
    for v in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.1f}</text>')
    for i, e in enumerate(events):  # labels alternate between two rows, so neighbours stay legible
        x = _x(e["step"], n)
        out.append(f'<line class="event" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{h - bottom}" '
                   f'stroke="#555" stroke-dasharray="4 3"/><text x="{x + 3:.1f}" '
                   f'y="{top + 10 + 13 * (i % 2)}" font-size="11">{_esc(e["event"])} '
                   f'{_esc(e.get("version") or "")}</text>')
    pts = [(s["step"], s["roc_auc"]) for s in steps if s["roc_auc"] is not None]
    if pts:
        path = " ".join(f"{_x(k, n):.1f},{y(v):.1f}" for k, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for s in steps:
        if s["roc_auc"] is not None:
            out.append(f'<circle class="point" cx="{_x(s["step"], n):.1f}" cy="{y(s["roc_auc"]):.1f}" '
                       f'r="4" fill="{COLORS.get(s["status"], "#999")}"><title>step {s["step"]}: '
                       f'ROC AUC {s["roc_auc"]:.3f}, {s["status"]}</title></circle>')
    for s in steps:
        out.append(f'<text x="{_x(s["step"], n):.1f}" y="{h - bottom + 16}" text-anchor="middle" '
                   f'font-size="11">{s["step"]}</text>')
    out.append(f'<text x="{L}" y="{h - 4}" font-size="11">step (ROC AUC of the window ending '
               'there; points coloured by status)</text></svg>')
    return "".join(out)


def _status_band(steps: list[dict]) -> str:
    n, h = len(steps), 34
    cw = (W - L - R) / n
    out = [f'<svg id="status" width="{W}" height="{h}" role="img" aria-label="status per step">']
    for s in steps:
        x = L + (s["step"] - 1) * cw
        out.append(f'<rect class="status {_esc(s["status"])}" x="{x:.1f}" y="4" width="{cw - 2:.1f}" '
                   f'height="24" fill="{COLORS.get(s["status"], "#999")}"><title>step {s["step"]}: '
                   f'{_esc(s["status"])}</title></rect>')
    out.append(f'<text x="{L - 6}" y="21" text-anchor="end" font-size="11">status</text></svg>')
    return "".join(out)


def _drift_heatmap(steps: list[dict]) -> str:
    features = sorted({f for s in steps for f in s["drift_scores"]})
    if not features:
        return "<p>No window had enough rows for drift tests.</p>"
    n, row = len(steps), 18
    cw = (W - L - R - 60) / n
    left = L + 60
    h = row * len(features) + 30
    out = [f'<svg id="drift" width="{W}" height="{h}" role="img" aria-label="drift per feature">']
    for i, f in enumerate(features):
        yy = 4 + i * row
        out.append(f'<text x="{left - 6}" y="{yy + 13}" text-anchor="end" font-size="11">{_esc(f)}</text>')
        for s in steps:
            v = s["drift_scores"].get(f)
            if v is None:
                continue
            a = min(v / 3.0, 1.0)
            stroke = ' stroke="#000" stroke-width="1.5"' if f in s["drifted"] else ""
            out.append(f'<rect x="{left + (s["step"] - 1) * cw:.1f}" y="{yy}" width="{cw - 2:.1f}" '
                       f'height="{row - 3}" fill="rgb({int(255 - 57 * a)},{int(255 - 215 * a)},'
                       f'{int(255 - 215 * a)})"{stroke}><title>{_esc(f)}, step {s["step"]}: '
                       f'{v:.2f}× threshold{" (drifted)" if f in s["drifted"] else ""}</title></rect>')
    out.append(f'<text x="{left}" y="{h - 6}" font-size="11">darker = further past the method\'s '
               'threshold (outlined: drifted)</text></svg>')
    return "".join(out)


def _share_plot(steps: list[dict]) -> str:
    n, h, top, bottom = len(steps), 160, 10, 28

    def y(v: float) -> float:
        return top + (1 - v) * (h - top - bottom)

    out = [f'<svg id="share" width="{W}" height="{h}" role="img" aria-label="drift over time">']
    for v in (0.0, 0.5, 1.0):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:.0%}</text>')
    for key, color in (("drift", "#6a1b9a"), ("drift_share", "#ef6c00")):
        pts = [(s["step"], s[key]) for s in steps if s[key] is not None]
        if pts:
            out.append(f'<polyline points="{" ".join(f"{_x(k, n):.1f},{y(v):.1f}" for k, v in pts)}" '
                       f'fill="none" stroke="{color}" stroke-width="2"/>')
    out.append(f'<text x="{L}" y="{h - 6}" font-size="11"><tspan fill="#6a1b9a">■ share of '
               'new-regime records sent</tspan> <tspan fill="#ef6c00">■ share of features that '
               'drifted (window)</tspan></text></svg>')
    return "".join(out)


def render(doc: dict, artifact: str, bands: dict[str, float]) -> str:
    steps, events = doc["steps"], doc["events"]
    rows = []
    for s in steps:
        ev = "; ".join(f'{e["event"]} {e.get("version") or ""}'.strip()
                       for e in events if e["step"] == s["step"])
        auc = "–" if s["roc_auc"] is None else f'{s["roc_auc"]:.3f}'
        ds = "–" if s["drift_share"] is None else f'{s["drift_share"]:.0%}'
        rows.append(f'<tr><td>{s["step"]}</td><td>{s["drift"]:.0%}</td>'
                    f'<td class="l">{_esc(", ".join(s["served"]))}</td><td>{s["labels"]}</td>'
                    f'<td>{auc}</td><td>{ds}</td><td class="l"><b style="color:'
                    f'{COLORS.get(s["status"], "#999")}">{_esc(s["status"])}</b></td>'
                    f'<td class="l">{_esc(ev)}</td><td class="l small">{_esc("; ".join(s["reasons"]))}</td></tr>')
    ev_rows = "".join(f'<tr><td>{e["step"]}</td><td class="l">{_esc(e["event"])}</td>'
                      f'<td class="l">{_esc(e.get("version") or "")}</td><td class="l">{_esc(e["note"])}</td></tr>'
                      for e in events)
    reg_rows = "".join(f'<tr><td class="l">{_esc(e["event"])}{" (forced)" if e["forced"] else ""}</td>'
                       f'<td class="l">{_esc(e["version"] or "")}</td></tr>' for e in doc["registry"])
    concept = doc.get("concept")
    story = (f'Records of the new regime have {", ".join(f"{k} ×{v:g}" for k, v in doc["shift"].items())}'
             + (f', and their label is the positive class when {concept["column"]} is above '
                f'{concept["above"]:g}' if concept else "") + ".")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(artifact)}: loopline simulate (seed {doc["seed"]})</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}}
table{{border-collapse:collapse;font-size:13px;margin:8px 0 20px}} td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}
th{{background:#f4f4f4}} td.l,th.l{{text-align:left}} td.small{{font-size:11px;color:#555}} svg{{display:block;margin:4px 0 16px}}
</style></head><body>
<h1>{_esc(artifact)}: the loop, simulated (seed {doc["seed"]})</h1>
<p>{len(steps)} steps of {doc["config"]["records_per_step"]} records against a live local service;
labels arrive {doc["config"]["label_delay"]} step(s) late; the monitor judges the last
{doc["config"]["window_steps"]} steps. {_esc(story)} Sandbox: <code>{_esc(doc["sandbox"])}</code>,
{doc["seconds"]:.0f} s.</p>
<h2>ROC AUC and status</h2>
{_auc_plot(steps, bands, events)}
{_status_band(steps)}
<h2>Drift per feature</h2>
{_drift_heatmap(steps)}
{_share_plot(steps)}
<h2>Events</h2>
<table id="events"><tr><th>step</th><th class="l">event</th><th class="l">version</th><th class="l">what</th></tr>{ev_rows}</table>
<h2>Registry history (prod), oldest first</h2>
<table id="registry"><tr><th class="l">event</th><th class="l">version</th></tr>{reg_rows}</table>
<h2>Timeline</h2>
<table id="timeline"><tr><th>step</th><th>new regime</th><th class="l">served by</th><th>labels</th>
<th>ROC AUC</th><th>drift share</th><th class="l">status</th><th class="l">events</th><th class="l">reasons</th></tr>
{"".join(rows)}</table>
</body></html>
"""


def write(root: Path, params: Any, doc: dict, output: Path | None = None) -> tuple[Path, Path]:
    """Write the report (default ``reports/simulate.html``) and the timeline next to it.

    Returns the paths of the HTML report and of the timeline (the same name, ``.json``).
    """
    from loopline.core.files import write_json, write_text
    from loopline.core.layout import SIMULATE_CANARY_HTML, SIMULATE_HTML, Layout

    default = SIMULATE_CANARY_HTML if doc.get("scenario") == "canary" else SIMULATE_HTML
    html_path = output or Layout.of(root, params.paths).report(default)
    json_path = html_path.with_suffix(".json")
    write_json(json_path, doc)
    if doc.get("scenario") == "canary":
        write_text(html_path, render_canary(doc, params.artifact))
        return html_path, json_path
    band = params.monitor.performance.get("roc_auc")
    write_text(html_path, render(doc, params.artifact,
                                 {"amber": band.amber, "red": band.red} if band else {}))
    return html_path, json_path


DECISION_COLORS = {"advance": "#1565c0", "complete": "#2e7d32", "abort": "#c62828",
                   "wait": "#bdbdbd"}


def _canary_plot(steps: list[dict]) -> str:
    """The candidate's share per simulation step, each step's bar coloured by the decision."""
    n, h, top, bottom = max(len(steps), 1), 180, 10, 30

    def y(v: float) -> float:
        return top + (1 - v / 100.0) * (h - top - bottom)

    cw = (W - L - R) / n
    out = [f'<svg id="canary" width="{W}" height="{h}" role="img" aria-label="share per step">']
    for v in (0, 50, 100):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v}%</text>')
    for i, s in enumerate(steps):
        share = s.get("share") or 0.0
        color = DECISION_COLORS.get(str(s["decision"]).split(" ")[0], "#9e9e9e")
        out.append(f'<rect class="decision {_esc(s["decision"])}" x="{L + i * cw:.1f}" '
                   f'y="{y(share):.1f}" width="{cw - 2:.1f}" height="{y(0) - y(share):.1f}" '
                   f'fill="{color}"><title>step {s["step"]}: {_esc(s["candidate"])} at '
                   f'{share:g}%, {_esc(s["decision"])}</title></rect>'
                   f'<text x="{L + (i + 0.5) * cw:.1f}" y="{h - bottom + 14}" text-anchor="middle" '
                   f'font-size="11">{s["step"]}</text>')
    legend = " ".join(f'<tspan fill="{c}">■ {k}</tspan>' for k, c in DECISION_COLORS.items())
    out.append(f'<text x="{L}" y="{h - 4}" font-size="11">share routed to the candidate per '
               f'step, coloured by the monitor\'s decision: {legend}</text></svg>')
    return "".join(out)


def render_canary(doc: dict, artifact: str) -> str:
    """The page of ``loopline simulate --scenario canary``."""
    def pct(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = "".join(
        f'<tr><td>{s["step"]}</td><td class="l">{_esc(s["candidate"])}</td>'
        f'<td>{s.get("rollout_step") or "–"}</td><td>{(s.get("share") or 0):g}%</td>'
        f'<td class="l">{_esc(", ".join(f"{k}: {v}" for k, v in s["served"].items()))}</td>'
        f'<td>{s.get("candidate_records") or 0}</td><td>{s.get("candidate_labels") or 0}</td>'
        f'<td>{pct(s.get("candidate_accuracy"))}</td><td>{pct(s.get("champion_accuracy"))}</td>'
        f'<td class="l"><b style="color:{DECISION_COLORS.get(str(s["decision"]).split(" ")[0], "#999")}">'
        f'{_esc(s["decision"])}</b></td><td class="l small">{_esc("; ".join(s["reasons"]))}</td></tr>'
        for s in doc["steps"])
    outcome = "".join(
        f'<tr><td class="l">{_esc(r["kind"])}</td><td class="l">{_esc(r["version"])}</td>'
        f'<td class="l">{_esc(r["outcome"] or "still under way")}</td><td class="l">'
        + _esc("; ".join(f'step {d["step"]}: {d["decision"]} (rollout step {d["rollout_step"]}, '
                         f'{d["candidate_records"]} records, {d["candidate_labels"]} labels, '
                         f'{d["label_to_decision_s"]} s after the last label)'
                         for d in r["decisions"])) + "</td></tr>" for r in doc["rollouts"])
    reg = "".join(f'<tr><td class="l">{_esc(e["event"])}{" (forced)" if e["forced"] else ""}</td>'
                  f'<td class="l">{_esc(e.get("stage") or "")}</td>'
                  f'<td class="l">{_esc(e["version"] or "")}</td>'
                  f'<td class="l small">{_esc(e.get("reason") or "")}</td></tr>'
                  for e in doc["registry"])
    plan = doc["plan"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(artifact)}: loopline simulate --scenario canary (seed {doc["seed"]})</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}}
table{{border-collapse:collapse;font-size:13px;margin:8px 0 20px}} td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}
th{{background:#f4f4f4}} td.l,th.l{{text-align:left}} td.small{{font-size:11px;color:#555}} svg{{display:block;margin:4px 0 16px}}
</style></head><body>
<h1>{_esc(artifact)}: canary rollouts judged on live traffic (seed {doc["seed"]})</h1>
<p>Plan: steps {_esc(plan["steps"])} % of traffic, at least {plan["min_records"]} predictions and
{plan["min_labels"]} labels of the candidate per step; accuracy non-inferior within
{plan["criteria"]["margin"]} at {plan["criteria"]["confidence"]:.0%} confidence, error rate at most
{plan["criteria"]["max_error_rate"]:.0%}. {doc["config"]["records_per_step"]} records per step,
labels {doc["config"]["label_delay"]} step(s) late. Sandbox: <code>{_esc(doc["sandbox"])}</code>,
{doc["seconds"]:.0f} s.</p>
<h2>Rollouts</h2>
<table id="rollouts"><tr><th class="l">candidate</th><th class="l">version</th><th class="l">outcome</th><th class="l">decisions</th></tr>{outcome}</table>
{_canary_plot(doc["steps"])}
<h2>Timeline</h2>
<table id="timeline"><tr><th>step</th><th class="l">candidate</th><th>rollout step</th><th>share</th>
<th class="l">records served by</th><th>candidate records (step)</th><th>labels</th><th>candidate accuracy</th>
<th>champion accuracy</th><th class="l">decision</th><th class="l">reasons</th></tr>{rows}</table>
<h2>Registry history, oldest first</h2>
<table id="registry"><tr><th class="l">event</th><th class="l">stage</th><th class="l">version</th><th class="l">reason</th></tr>{reg}</table>
</body></html>
"""
