"""The simulation's report page (simulate/report.py)."""

from __future__ import annotations

from loopline.simulate.report import render


def _doc() -> dict:
    steps = []
    for k, (st, auc) in enumerate([("GREEN", 0.83), ("AMBER", 0.76), ("RED", 0.6)], start=1):
        steps.append({"step": k, "drift": 0.1 * k, "records": 250, "labels_sent": 250,
                      "served": ["v0.1.0"], "status": st, "reasons": [f"{st}: <b>x</b>"],
                      "roc_auc": auc, "accuracy": 0.7, "labels": 750, "drift_share": 0.1,
                      "drift_scores": {"Price": 0.5 * k}, "drifted": ["Price"] if k > 2 else [],
                      "missing_rate": 0.1, "status_by_version": {}, "events": []})
    return {"seed": 0, "sandbox": "/tmp/x", "seconds": 1.0, "shift": {"Price": 1.4},
            "concept": {"column": "Amount", "above": 1500.0},
            "config": {"records_per_step": 250, "label_delay": 1, "window_steps": 4},
            "steps": steps, "events": [{"step": 2, "event": "retrained", "version": "v0.2.0",
                                        "note": "n"}],
            "registry": [{"event": "promote", "version": "v0.1.0", "forced": False}]}


def test_report_has_its_plots_and_escapes_text() -> None:
    page = render(_doc(), "credit-risk", {"amber": 0.8, "red": 0.7})
    for element in ('<svg id="auc"', '<svg id="status"', '<svg id="drift"', '<svg id="share"',
                    'id="events"', 'id="timeline"', 'id="registry"'):
        assert element in page
    assert page.count('class="point"') == 3 and page.count('class="event"') == 1
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
