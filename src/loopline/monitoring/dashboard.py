"""``loopline dashboard``: one self-contained HTML page of the live model's health.

Current status and its reasons, the status history as a chart (ROC AUC and drift share per
monitor run over coloured RAG bands, with promotions and rollbacks marked), the latest
windows, the production targets (SLOs: what was agreed, the latest value and the grade of each
window), the monitor's decision on a rollout under way, and links to the latest reports. The data is embedded as JSON and drawn by a small
script into inline SVG: no network, no external scripts, so the file opens anywhere (and
CI can upload it as an artifact).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from loopline.core.layout import (
    DASHBOARD_HTML,
    EVALUATION_MD,
    GATE_HTML,
    GATE_MD,
    MONITOR_HTML,
    MONITOR_JSON,
    SIMULATE_CANARY_HTML,
    SIMULATE_HTML,
    Layout,
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
 .badge{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:600}
 .GREEN{background:#2e7d32}.AMBER{background:#ef8f00}.RED{background:#c62828}.NODATA{background:#777}
 table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
 th{background:#f4f4f4}td.l,th.l{text-align:left} svg{border:1px solid #ddd;background:#fff}
 .legend span{margin-right:14px}
 .st-GREEN{color:#2e7d32;font-weight:600}.st-AMBER{color:#ef8f00;font-weight:600}.st-RED{color:#c62828;font-weight:600}
</style></head>
<body>
<h1>__TITLE__</h1>
<p>Status <span id="status" class="badge">…</span> <span id="generated"></span></p>
<ul id="reasons"></ul>
<p id="rollout" hidden>Rollout: <span class="badge"></span> <span class="what"></span></p>
<h2>History</h2>
<div class="legend"><span style="color:#1565c0">● ROC AUC</span><span style="color:#6a1b9a">■ drift share</span>
<span>▲ promote / ▼ rollback (prod)</span></div>
<svg id="history" width="1000" height="260" role="img" aria-label="status history"></svg>
<h2>Latest windows</h2>
<table id="windows"><thead><tr><th class="l">window end (UTC)</th><th>records</th><th>labels</th>
<th>roc_auc</th><th>accuracy</th><th>drift share</th><th>worst missing</th><th>p99 ms</th><th>errors</th>
<th class="l">status</th></tr></thead><tbody></tbody></table>
<h2>Production targets</h2>
<p id="no-targets">No production targets configured (<code>monitor.targets</code> in conf/monitor).</p>
<table id="targets" hidden><thead><tr><th class="l">target</th><th class="l">agreed</th><th>latest</th>
<th class="l">grade</th><th class="l">grades, oldest → newest window</th></tr></thead><tbody></tbody></table>
<h2>Reports</h2><ul id="links"></ul>
<script id="data" type="application/json">__DATA__</script>
<script>
(function () {
  const d = JSON.parse(document.getElementById("data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const fmt = (v, p) => v === null || v === undefined ? "–" : (p ? (100 * v).toFixed(0) + "%" : v.toFixed(3));
  const iso = t => new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ");
  const st = document.getElementById("status");
  st.textContent = d.status; st.className = "badge " + d.status.replace(" ", "");
  document.getElementById("generated").textContent = d.generated_at ? "at " + iso(d.generated_at) + " UTC" : "";
  const reasons = document.getElementById("reasons"), links = document.getElementById("links");
  for (const r of d.reasons) { const li = document.createElement("li"); li.textContent = r; reasons.appendChild(li); }
  if (d.rollout) {  // the monitor's decision on the rollout under way
    const p = document.getElementById("rollout"), r = d.rollout; p.hidden = false;
    const b = p.querySelector(".badge"); b.textContent = r.decision.toUpperCase();
    b.className = "badge " + ({advance: "GREEN", complete: "GREEN", abort: "RED"}[r.decision] || "NODATA");
    p.querySelector(".what").textContent = r.text;
  }
  const body = document.querySelector("#windows tbody");
  for (const w of d.windows) {
    const tr = document.createElement("tr"); const p = w.performance || {}; const m = w.missing_rate || {};
    const worst = Object.values(m).length ? Math.max(...Object.values(m)) : null;
    const cells = [iso(w.end), w.records || 0, w.labels || 0, fmt(p.roc_auc), fmt(p.accuracy),
                   fmt(w.drift_share, true), fmt(worst, true), fmt((w.latency_ms || {}).p99),
                   w.error_rate === null || w.error_rate === undefined ? "–" : (100 * w.error_rate).toFixed(1) + "%", w.status];
    cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c;
      if (i === 0 || i === 9) td.className = "l"; if (i === 9) td.classList.add("st-" + String(c).replace(" ", ""));
      tr.appendChild(td); });
    body.appendChild(tr);
  }
  if (d.targets.length) {
    document.getElementById("no-targets").hidden = true; const tt = document.getElementById("targets"); tt.hidden = false;
    for (const t of d.targets) {
      const tr = document.createElement("tr"); tr.className = "target";
      [t.label, t.agreed, t.value, t.grade].forEach((c, i) => { const td = document.createElement("td"); td.textContent = c;
        if (i !== 2) td.className = "l"; if (i === 3) td.classList.add("grade", "st-" + c); tr.appendChild(td); });
      const hist = document.createElement("td"); hist.className = "l";
      for (const g of t.history) { const s = document.createElement("span"); s.className = "badge " + (g.grade || "NODATA");
        s.title = iso(g.end) + " UTC: " + g.value; s.textContent = g.grade ? g.grade[0] : "–"; s.style.padding = "0 4px"; s.style.marginRight = "2px";
        hist.appendChild(s); }
      tr.appendChild(hist); tt.tBodies[0].appendChild(tr);
    }
  }
  for (const l of d.links) { const li = document.createElement("li"); const a = document.createElement("a");
    a.href = l.href; a.textContent = l.label; li.appendChild(a); links.appendChild(li); }
  const svg = document.getElementById("history"); const W = 1000, H = 260, L = 40, R = 10, T = 10, B = 30;
  const h = d.history; if (!h.length) return;
  const t0 = Math.min(...h.map(e => e.at), ...d.events.map(e => e.at)), t1 = Math.max(...h.map(e => e.at));
  const x = t => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L - R), y = v => T + (1 - v) * (H - T - B);
  const el = (n, a) => { const e = document.createElementNS(NS, n); for (const k in a) e.setAttribute(k, a[k]); svg.appendChild(e); return e; };
  const colours = {GREEN: "#c8e6c9", AMBER: "#ffe0b2", RED: "#ffcdd2"};
  h.forEach((e, i) => { const next = i + 1 < h.length ? x(h[i + 1].at) : W - R; const x0 = i ? (x(h[i - 1].at) + x(e.at)) / 2 : L;
    el("rect", {x: x0, y: T, width: Math.max(1, next - x0), height: H - T - B, fill: colours[e.status] || "#eee", class: "band"}); });
  for (const v of [0, 0.5, 0.7, 0.8, 1]) { el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#bbb", "stroke-dasharray": "3 3"});
    el("text", {x: 4, y: y(v) + 4, "font-size": 10}).textContent = v.toFixed(1); }
  const series = (key, colour, cls) => { const pts = h.filter(e => e[key] !== null && e[key] !== undefined);
    if (pts.length > 1) el("polyline", {points: pts.map(e => x(e.at) + "," + y(e[key])).join(" "), fill: "none", stroke: colour, "stroke-width": 2});
    for (const e of pts) el("circle", {cx: x(e.at), cy: y(e[key]), r: 3, fill: colour, class: cls}); };
  series("roc_auc", "#1565c0", "auc"); series("drift_share", "#6a1b9a", "drift");
  for (const e of d.events) { if (e.at < t0 || e.at > t1 + 1) continue;
    const right = x(e.at) > W - R - 80;  // near the right edge: the label ends at the mark
    el("text", {x: right ? x(e.at) + 5 : x(e.at) - 5, "text-anchor": right ? "end" : "start",
                y: e.event === "rollback" ? H - B + 14 : T + 12, "font-size": 12, class: "event " + e.event,
                fill: e.event === "rollback" ? "#c62828" : "#2e7d32"}).textContent = (e.event === "rollback" ? "▼ " : "▲ ") + (e.version || ""); }
  el("text", {x: L, y: H - 6, "font-size": 10}).textContent = iso(t0);
  el("text", {x: W - R - 90, y: H - 6, "font-size": 10}).textContent = iso(t1);
})();
</script></body></html>
"""


# (key in a window's ``targets``, its grade's name, label, format of the value)
TARGETS = (("latency_p50_ms", "latency_p50_ms", "latency p50", "{:.2f} ms"),
           ("latency_p99_ms", "latency_p99_ms", "latency p99", "{:.2f} ms"),
           ("availability", "availability", "availability", "{:.2%}"),
           ("accuracy", "accuracy_range", "accuracy", "{:.3f}"),
           ("slice_gap", "slice_gap", "slice gap", "{:.3f}"),
           ("cost_per_1k", "cost_per_1k", "cost per 1,000 predictions", "{:.6f}"))


def _agreed(targets: Any, key: str) -> str:
    """What was agreed for a target, in words (the configured bands or range)."""
    from loopline.monitoring.targets import _bands

    if targets is None:
        return ""
    if key == "accuracy":
        return targets.accuracy.describe() if targets.accuracy else ""
    if key == "slice_gap":
        g = targets.slice_gap
        return f"{g.metric} gap over {', '.join(g.columns)}: {_bands(g.band)}" if g else ""
    if key == "cost_per_1k":
        c = targets.cost
        return f"{_bands(c.per_1k)} at {c.cpu_hour_price:g}/CPU-hour" if c else ""
    band = getattr(targets, key, None)
    return _bands(band) if band is not None else ""


def _target_value(found: dict, key: str, fmt: str) -> tuple[str, float | None]:
    value = found.get(key)
    if key == "slice_gap":
        if not value:
            return "–", None
        col = max(value, key=lambda c: value[c]["gap"])
        return f"{value[col]['gap']:.3f} ({col})", value[col]["gap"]
    return ("–", None) if value is None else (fmt.format(value), float(value))


def target_rows(windows: list[dict], targets: Any = None) -> list[dict[str, Any]]:
    """One row per production target found in the windows: what was agreed, the latest
    value and grade, and the grade of every window (the SLO's recent history)."""
    graded = [w for w in windows if w.get("targets")]
    rows = []
    for key, grade_name, label, fmt in TARGETS:
        seen = [w for w in graded if w["targets"].get(key) not in (None, {})]
        if not seen:
            continue
        history = []
        for w in graded:
            text, _ = _target_value(w["targets"], key, fmt)
            history.append({"end": w["end"], "value": text,
                            "grade": (w.get("grades") or {}).get(grade_name)})
        text, value = _target_value(seen[-1]["targets"], key, fmt)
        rows.append({"key": key, "label": label, "agreed": _agreed(targets, key), "value": text,
                     "raw": value, "grade": (seen[-1].get("grades") or {}).get(grade_name) or "–",
                     "history": history})
    return rows


def _rollout(j: dict | None) -> dict | None:
    """The monitor's decision on the rollout under way, as the page shows it."""
    if not j or not j.get("decision"):
        return None
    where = (f" (step {j['step']}/{j['steps']}, {j.get('share') or 0:g}% of traffic)"
             if j.get("step") and j.get("steps") else "")
    return {"decision": j["decision"],
            "text": f"{j.get('version')}{where}: {'; '.join(j.get('reasons') or [])}"}


def render(artifact: str, monitor: dict | None, history: list[dict], events: list[dict],
           links: list[dict], targets: Any = None) -> str:
    """The page; ``events`` are registry events ({at, event, version}) of the monitored stage;
    ``targets``: ``monitor.targets`` of the config, to say what was agreed per target."""
    monitor = monitor or {"status": "NO DATA", "reasons": ["no monitor run yet: run `loopline monitor`"],
                          "windows": [], "generated_at": None}
    shown = [w for w in monitor.get("windows", []) if w.get("status") != "NO DATA"][-12:]
    data = {"status": monitor["status"], "reasons": monitor.get("reasons", []),
            "generated_at": monitor.get("generated_at"), "windows": shown,
            "targets": target_rows(shown, targets),
            "rollout": _rollout(monitor.get("rollout")),
            "history": history[-500:], "events": events, "links": links}
    payload = json.dumps(data, default=str).replace("</", "<\\/")  # never closes the <script>
    return (PAGE.replace("__TITLE__", html.escape(f"{artifact}: live model health"))
            .replace("__DATA__", payload))


def events_of(history: list[dict], stage: str) -> list[dict[str, Any]]:
    """Promotions and rollbacks of ``stage`` from ``loopline history`` entries, as Unix times."""
    from datetime import datetime

    out = []
    for e in history:
        if e.get("stage") == stage and e.get("event") in ("promote", "rollback"):
            at = datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00")).timestamp()
            out.append({"at": at, "event": e["event"], "version": e.get("version")})
    return out


LINKED_REPORTS = (MONITOR_HTML, MONITOR_JSON, SIMULATE_HTML, SIMULATE_CANARY_HTML, GATE_HTML,
                  GATE_MD, EVALUATION_MD)


def write(root: Path, params: Any, output: Path | None = None) -> tuple[Path, str | None]:
    """Write the page of an instance: its monitor report and history, registry events, links.

    Returns the page's path (default ``reports/dashboard.html``) and the current status
    (None before the first ``loopline monitor``).
    """
    import os

    from loopline.core.errors import LooplineError
    from loopline.core.files import read_json, read_jsonl, write_text
    from loopline.registry import actions as registry

    lay = Layout.of(root, params.paths)
    mon_path = lay.report(MONITOR_JSON)
    doc = read_json(mon_path) if mon_path.is_file() else None
    history = read_jsonl(root / params.monitor.history)
    stage = params.registry.serving_stage
    try:
        events = events_of(registry.history(root, stage), stage)
    except LooplineError:
        events = []
    out = output or lay.report(DASHBOARD_HTML)
    links = [{"label": name, "href": os.path.relpath(lay.report(name), out.resolve().parent)}
             for name in LINKED_REPORTS if lay.report(name).is_file()]
    write_text(out, render(params.artifact, doc, history, events, links,
                           params.monitor.targets))
    return out, doc["status"] if doc else None
