"""The rollout judge (monitoring/judge.py): its statistics against hand computations, and its
decisions on small logs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from loopline.monitoring.judge import (
    PATIENCE,
    early,
    judge,
    noninferiority,
    wilson_lower,
    z_of,
)

Z95 = 1.6448536  # one-sided normal quantile of 0.95
Z995 = 2.5758293  # and of 0.995


def test_normal_quantiles_and_the_early_level() -> None:
    assert z_of(0.95) == pytest.approx(Z95, abs=1e-6)
    assert early(0.95) == pytest.approx(0.995)
    assert z_of(early(0.95)) == pytest.approx(Z995, abs=1e-6)


def test_equal_accuracies_on_small_samples_are_not_yet_non_inferior() -> None:
    # 48 of 98 right in each arm: p = 49/100 = 0.49 each, diff 0,
    # se = sqrt(2 * 0.49 * 0.51 / 100) = sqrt(0.004998) = 0.0706966
    ni = noninferiority(48, 98, 48, 98, 0.05, 0.95)
    assert ni.diff == pytest.approx(0.0)
    assert ni.se == pytest.approx(0.0706966, abs=1e-6)
    assert ni.lower == pytest.approx(-Z95 * 0.0706966, abs=1e-6)  # -0.116286
    assert not ni.shown and not ni.inferior  # inconclusive: a margin of 0.05 needs more labels
    assert noninferiority(48, 98, 48, 98, 0.2, 0.95).shown  # within a margin of 0.2


def test_non_inferiority_by_hand() -> None:
    # candidate 90/100, champion 180/200: p_c = 91/102 = 0.8921569, p_0 = 181/202 = 0.8960396
    # diff = -0.0038827; var = 0.8921569 * 0.1078431 / 102 + 0.8960396 * 0.1039604 / 202
    #      = 0.00094327 + 0.00046115 = 0.00140442; se = 0.0374756
    ni = noninferiority(90, 100, 180, 200, 0.10, 0.95)
    assert ni.diff == pytest.approx(-0.0038827, abs=1e-6)
    assert ni.se == pytest.approx(0.0374756, abs=1e-6)
    assert ni.lower == pytest.approx(-0.0038827 - Z95 * 0.0374756, abs=1e-6)  # -0.0655250
    assert ni.upper == pytest.approx(-0.0038827 + Z95 * 0.0374756, abs=1e-6)  # +0.0577596
    assert ni.shown  # -0.0655 > -0.10
    assert not noninferiority(90, 100, 180, 200, 0.05, 0.95).shown  # -0.0655 < -0.05


def test_a_candidate_that_is_always_wrong_is_inferior_after_a_few_labels() -> None:
    # 0 of 8 vs 98 of 98: p_c = 1/10, p_0 = 99/100, diff = -0.89,
    # se = sqrt(0.1 * 0.9 / 10 + 0.99 * 0.01 / 100) = sqrt(0.009099) = 0.0953887
    ni = noninferiority(0, 8, 98, 98, 0.02, 0.995)
    assert ni.diff == pytest.approx(-0.89)
    assert ni.se == pytest.approx(0.0953887, abs=1e-6)
    assert ni.upper == pytest.approx(-0.89 + Z995 * 0.0953887, abs=1e-6)  # -0.644294
    assert ni.inferior and not ni.shown


def test_wilson_lower_bound_by_hand() -> None:
    # 5 of 100 at 0.95: z^2 = 2.7055436; centre = 0.05 + z^2/200 = 0.0635277;
    # spread = z * sqrt(0.05 * 0.95 / 100 + z^2 / 40000) = 1.6448536 * 0.0232947 = 0.0383163
    # lower = (0.0635277 - 0.0383163) / (1 + z^2 / 100) = 0.0245472
    assert wilson_lower(5, 100, 0.95) == pytest.approx(0.0245472, abs=1e-6)
    assert wilson_lower(0, 100, 0.95) == 0.0
    assert wilson_lower(0, 0, 0.95) == 0.0


PLAN = {"strategy": "canary", "steps": [5.0, 50.0], "min_records": 100, "min_labels": 50,
        "criteria": {"margin": 0.1, "confidence": 0.95, "max_error_rate": 0.01, "p99_ms": None}}


def rollout(step: int = 1, **plan: object) -> dict:
    p = {**PLAN, **plan}
    return {"version": "v2", "champion": "v1", "step": step, "steps": p["steps"],
            "share": p["steps"][step - 1], "tag": f"m#canary#{step}", "plan": p,
            "updated": "2026-01-01T00:00:00Z", "started": "2026-01-01T00:00:00Z"}


def records(version: str, n: int, labelled: int, right: int, *, latency: float = 2.0,
            start: int = 0) -> pd.DataFrame:
    """``n`` one-record requests of ``version``; the first ``labelled`` have labels, the first
    ``right`` of those equal to the prediction."""
    labels = ["yes" if i < right else "no" for i in range(labelled)] + [None] * (n - labelled)
    return pd.DataFrame({"request_id": [f"{version}-{start + i}" for i in range(n)],
                         "model_version": version, "prediction": "yes", "label": labels,
                         "label_ts": [100.0 + i if i < labelled else math.nan for i in range(n)],
                         "latency_ms": latency})


def errors(n: int, status: int = 500, version: str = "v2") -> pd.DataFrame:
    return pd.DataFrame({"ts": [1.0] * n, "route": "/predict", "status": status,
                         "model_version": version})


def test_wait_says_how_many_records_and_labels_are_missing() -> None:
    frame = pd.concat([records("v2", 60, 20, 20), records("v1", 900, 400, 380)])
    j = judge(rollout(), frame, errors(0), now=1.0)
    assert j["decision"] == "wait"
    assert j["reasons"] == ["step 1 needs 40 more predictions (60 of 100) and 30 more labels "
                            "(20 of 50) of v2"]


def test_advance_then_complete_when_non_inferior() -> None:
    frame = pd.concat([records("v2", 120, 100, 95), records("v1", 2000, 1000, 950)])
    j = judge(rollout(1), frame, errors(0), now=1.0)
    assert j["decision"] == "advance", j["reasons"]
    assert j["candidate"]["accuracy"] == 0.95 and j["champion_records"]["labels"] == 1000
    assert any(r.startswith("non-inferior: accuracy 0.950 on 100 labels") for r in j["reasons"])
    assert j["last_label_at"] == 100.0 + 999
    assert judge(rollout(2), frame, errors(0), now=1.0)["decision"] == "complete"


def test_a_clearly_worse_candidate_is_aborted_before_its_minimums() -> None:
    frame = pd.concat([records("v2", 30, 10, 0), records("v1", 600, 300, 290)])
    j = judge(rollout(), frame, errors(0), now=1.0)
    assert j["decision"] == "abort"
    assert j["reasons"][0].startswith("worse than the champion by more than the margin: "
                                      "accuracy 0.000 on 10 labels")
    assert j["test"]["confidence"] == pytest.approx(0.995)


def test_inconclusive_waits_then_aborts_after_patience() -> None:
    # 80% vs 85%: diff about -0.05 against a margin of 0.1, on few labels: inconclusive
    frame = pd.concat([records("v2", 120, 50, 40), records("v1", 600, 60, 51)])
    j = judge(rollout(), frame, errors(0), now=1.0)
    assert j["decision"] == "wait" and j["reasons"][0].startswith("inconclusive")
    many = PATIENCE * 50
    frame = pd.concat([records("v2", many, many, int(many * 0.8)),
                       records("v1", 600, 60, 51)])
    j = judge(rollout(), frame, errors(0), now=1.0)
    assert j["decision"] == "abort" and j["reasons"][0].startswith(
        f"not shown non-inferior after {many} labels")


def test_server_errors_abort_and_client_errors_do_not() -> None:
    frame = pd.concat([records("v2", 120, 100, 95), records("v1", 880, 500, 475)])
    assert judge(rollout(), frame, errors(30, 400), now=1.0)["decision"] == "advance"
    # the champion's failures are not the candidate's
    assert judge(rollout(), frame, errors(30, 500, "v1"), now=1.0)["decision"] == "advance"
    j = judge(rollout(), frame, errors(3, 500), now=1.0)  # 3 of 123: 2.4% > 1%
    assert j["decision"] == "abort" and j["error_rate"] == pytest.approx(3 / 123)
    assert j["reasons"] == ["error rate 2.44% (3 of 123 requests routed to v2 failed with 5xx "
                            "during the step; at most 1.00%)"]
    # early: 30 failures in 70 requests is conclusive before the step's minimums; 1 in 41 not
    early_frame = pd.concat([records("v2", 40, 0, 0), records("v1", 90, 0, 0)])
    assert judge(rollout(), early_frame, errors(30), now=1.0)["decision"] == "abort"
    assert judge(rollout(), early_frame, errors(1), now=1.0)["decision"] == "wait"


def test_p99_latency_over_the_target_aborts() -> None:
    frame = pd.concat([records("v2", 120, 100, 95, latency=80.0), records("v1", 900, 500, 475)])
    crit = {**PLAN["criteria"], "p99_ms": 50.0}
    j = judge(rollout(criteria=crit), frame, None, now=1.0)
    assert j["decision"] == "abort" and j["reasons"] == ["p99 latency 80.0 ms (at most 50 ms)"]
    crit["p99_ms"] = 100.0
    assert judge(rollout(criteria=crit), frame, None, now=1.0)["decision"] == "advance"


def test_the_champion_of_earlier_steps_is_used_when_the_step_has_none() -> None:
    cand = records("v2", 120, 100, 95)
    j = judge(rollout(2, steps=[50.0, 100.0]), cand, None, now=1.0)
    assert j["decision"] == "wait" and "no labelled records of the champion" in j["reasons"][0]
    before = pd.concat([records("v1", 500, 500, 470, start=10_000)])
    j = judge(rollout(2, steps=[50.0, 100.0]), cand, None, now=1.0, champion_frame=before)
    assert j["decision"] == "complete" and j["champion_records"]["labels"] == 500


def test_at_its_minimums_a_candidate_estimated_past_the_margin_is_aborted() -> None:
    # 35 of 50 vs 51 of 60: p_c = 36/52 = 0.6923, p_0 = 52/62 = 0.8387, diff = -0.1464 past the
    # margin of 0.1; se = 0.0793, upper = -0.0160: not conclusive, but no more traffic for it
    frame = pd.concat([records("v2", 120, 50, 35), records("v1", 600, 60, 51)])
    j = judge(rollout(), frame, errors(0), now=1.0)
    assert j["test"]["diff"] == pytest.approx(36 / 52 - 52 / 62, abs=1e-9)
    assert j["test"]["upper"] > -0.1  # not shown inferior
    assert j["decision"] == "abort" and j["reasons"][0].startswith(
        "worse than the champion by more than the margin at the step's minimum")
    # the same numbers before the minimums wait (an early abort needs conclusive evidence)
    early_frame = pd.concat([records("v2", 90, 50, 35), records("v1", 600, 60, 51)])
    assert judge(rollout(), early_frame, errors(0), now=1.0)["decision"] == "wait"
