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


def test_canary_report_shows_each_step_and_decision() -> None:
    import json

    from loopline.simulate.canary import PLAN
    from loopline.simulate.report import render_canary

    def step(k: int, cand: str, share: float, decision: str) -> dict:
        return {"step": k, "candidate": cand, "served": {"v1": 225, cand: 25},
                "rollout_step": 1 if share == 10 else 2, "share": share,
                "candidate_records": 25 * k, "candidate_labels": 20 * k,
                "candidate_accuracy": 0.8, "champion_accuracy": 0.79, "decision": decision,
                "reasons": ["<i>why</i>"], "label_to_decision_s": 0.3}

    steps = [step(1, "v2", 10, "wait"), step(2, "v2", 10, "advance"),
             step(3, "v2", 50, "complete"), step(4, "v3", 10, "abort")]
    doc = {"scenario": "canary", "seed": 0, "sandbox": "/tmp/x", "seconds": 60.0, "plan": PLAN,
           "config": {"records_per_step": 250, "label_delay": 1}, "steps": steps,
           "rollouts": [{"version": "v2", "kind": "good", "outcome": "complete",
                         "decisions": [steps[1], steps[2]]},
                        {"version": "v3", "kind": "faulty", "outcome": "abort",
                         "decisions": [steps[3]]}],
           "registry": [{"event": "abort", "stage": "canary", "version": "v3", "forced": False,
                         "reason": "monitor: worse"}]}
    page = render_canary(json.loads(json.dumps(doc)), "credit-risk")
    assert '<svg id="canary"' in page and 'id="timeline"' in page and 'id="rollouts"' in page
    assert [page.count(f'class="decision {d}"') for d in ("wait", "advance", "complete",
                                                          "abort")] == [1, 1, 1, 1]
    assert "<i>why</i>" not in page and "&lt;i&gt;why&lt;/i&gt;" in page
    assert "step 4: abort (rollout step 1, 100 records, 80 labels, 0.3 s after" in page
