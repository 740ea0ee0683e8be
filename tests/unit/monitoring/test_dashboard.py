"""The dashboard page (monitoring/dashboard.py): rendered for real in headless Chromium
(Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loopline.monitoring.dashboard import events_of, render, target_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
T0 = 1_800_000_000


def monitor_doc() -> dict:
    windows = [{"start": T0 + 3600 * k, "end": T0 + 3600 * (k + 1), "status": s, "records": 300,
                "labels": 150, "performance": {"roc_auc": auc, "accuracy": 0.8},
                "drift_share": drift, "missing_rate": {"Income": 0.1}, "latency_ms": {"p99": 0.5},
                "error_rate": 0.025 * k,
                "targets": {"latency_p99_ms": p99, "accuracy": acc,
                            "slice_gap": {"Home": {"groups": {"rent": 0.8, "own": 0.8 - gap},
                                                   "gap": gap}}},
                "grades": {"latency_p99_ms": g99, "accuracy_range": gacc, "slice_gap": ggap}}
               for k, (s, auc, drift, p99, g99, acc, gacc, gap, ggap) in enumerate([
                   ("GREEN", 0.86, 0.0, 0.40, "GREEN", 0.81, "GREEN", 0.02, "GREEN"),
                   ("AMBER", 0.75, 0.3, 0.90, "AMBER", 0.74, "AMBER", 0.07, "AMBER"),
                   ("RED", 0.62, 0.6, 2.50, "RED", 0.62, "RED", 0.12, "RED")])]
    return {"status": "RED", "rollout": {"version": "v0.3.0", "step": 1, "steps": 2, "share": 10.0,
                                         "decision": "abort", "reasons": ["worse than the champion"],
                                         "candidate": {"records": 150}},
            "reasons": ["RED: roc_auc 0.620 on 150 labelled records",
                                         "</script><script>document.title='pwned'</script>"],
            "generated_at": T0 + 3 * 3600, "windows": windows}


HISTORY = [{"at": T0 + 600 * k, "status": s, "roc_auc": auc, "drift_share": d}
           for k, (s, auc, d) in enumerate([("GREEN", 0.86, 0.0), ("GREEN", 0.85, 0.1),
                                            ("AMBER", 0.76, 0.3), ("AMBER", 0.74, 0.3),
                                            ("RED", 0.62, 0.6), ("GREEN", 0.84, 0.1)])]
EVENTS = [{"at": T0 + 1300, "event": "promote", "version": "v0.2.0"},
          {"at": T0 + 2500, "event": "rollback", "version": "v0.1.0"}]


def test_embedded_data_cannot_close_the_script() -> None:
    page = render("credit-risk", monitor_doc(), HISTORY, EVENTS, [])
    assert page.count("</script>") == 2  # the data block and the drawing script, nothing more
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["reasons"][1].startswith("</script>")


def test_target_rows_show_what_was_agreed_the_latest_value_and_each_windows_grade() -> None:
    from loopline.config.operations import Targets

    targets = Targets.model_validate({"latency_p99_ms": {"amber": 0.5, "red": 2.0},
                                      "accuracy": {"low": 0.7, "high": 0.99, "margin": 0.05},
                                      "slice_gap": {"columns": ["Home"]}})
    rows = {r["key"]: r for r in target_rows(monitor_doc()["windows"], targets)}
    assert list(rows) == ["latency_p99_ms", "accuracy", "slice_gap"]  # the order of TARGETS
    p99 = rows["latency_p99_ms"]
    assert (p99["value"], p99["grade"], p99["agreed"]) == ("2.50 ms", "RED", "GREEN ≤ 0.5, RED > 2")
    assert [h["grade"] for h in p99["history"]] == ["GREEN", "AMBER", "RED"]
    assert rows["accuracy"]["agreed"] == "range [0.7, 0.99], AMBER within 0.05 of an end"
    assert rows["slice_gap"]["value"] == "0.120 (Home)" and rows["slice_gap"]["raw"] == 0.12
    assert target_rows([{"end": T0, "status": "GREEN"}]) == []  # no targets: no rows


def test_the_rollout_line_without_a_plan_names_no_step() -> None:
    from loopline.monitoring.dashboard import _rollout

    assert _rollout(None) is None
    bare = {"version": "v2", "tag": "m#canary#1", "decision": "wait",
            "reasons": ["m#canary#1 records no rollout plan"]}
    assert _rollout(bare) == {"decision": "wait",
                              "text": "v2: m#canary#1 records no rollout plan"}


def test_events_come_from_the_registry_history() -> None:
    hist = [{"time": "2027-01-15T08:00:00Z", "event": "promote", "stage": "prod", "version": "v2"},
            {"time": "2027-01-15T09:00:00Z", "event": "register", "version": "v3"},
            {"time": "2027-01-15T10:00:00Z", "event": "rollback", "stage": "prod", "version": "v1"}]
    ev = events_of(hist, "prod")
    assert [e["event"] for e in ev] == ["promote", "rollback"] and ev[1]["at"] - ev[0]["at"] == 7200


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={cwd / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_the_page_renders_status_history_and_windows_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "dashboard.html"
    page.write_text(render("credit-risk", monitor_doc(), HISTORY, EVENTS,
                           [{"label": "monitor.html", "href": "monitor.html"}]))
    dom = chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout
    assert '<span id="status" class="badge RED">RED</span>' in dom
    assert dom.count('class="auc"') == 6 and dom.count('class="drift"') == 6
    assert dom.count('class="band"') == 6 and dom.count('fill="#ffcdd2"') == 1  # one RED band
    assert "▲ v0.2.0" in dom and "▼ v0.1.0" in dom
    assert len(re.findall(r'class="l st-(GREEN|AMBER|RED)"', dom)) == 3
    assert "<td>0.0%</td>" in dom and "<td>2.5%</td>" in dom and "<td>5.0%</td>" in dom
    assert '<span class="badge RED">ABORT</span>' in dom
    assert "v0.3.0 (step 1/2, 10% of traffic): worse than the champion" in dom
    assert dom.count('class="target"') == 3 and '<p id="no-targets" hidden="">' in dom
    assert '<td class="l grade st-RED">RED</td>' in dom and "<td>2.50 ms</td>" in dom
    assert "<title>credit-risk: live model health</title>" in dom  # the injected script never ran
    shot = tmp_path / "dashboard.png"
    chromium(f"--screenshot={shot}", "--window-size=1150,1100", page.as_uri(), cwd=tmp_path)
    assert shot.stat().st_size > 20_000
