"""The gate's checks: pure functions, and real Evidently on small data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopline.config.pipeline import DriftCheck, GateConfig
from loopline.pipeline.stages import gate


def cfg(**kw) -> GateConfig:
    base = {"min": {"roc_auc": 0.8}, "max": {"log_loss": 0.5}}
    base.update(kw)
    return GateConfig.model_validate(base)


def test_empty_gate_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no thresholds configured"):
        GateConfig.model_validate({})
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        GateConfig.model_validate({"min": {"auc": 0.8}})
    with pytest.raises(ValueError, match="unknown drift method"):
        GateConfig.model_validate({"min": {"roc_auc": 0.8}, "drift": {"num_method": "magic"}})


def test_compare_is_one_sided_with_a_reason() -> None:
    ok = gate.compare("min_roc_auc", "absolute", 0.85, 0.8, ">=", "roc_auc")
    bad = gate.compare("min_roc_auc", "absolute", 0.79, 0.8, ">=", "roc_auc")
    assert ok.passed and not bad.passed
    assert "0.7900 misses the bound (at least 0.8000)" in bad.reason
    assert gate.compare("max_log_loss", "absolute", 0.6, 0.5, "<=", "log_loss").passed is False
    missing = gate.compare("min_recall", "absolute", None, 0.5, ">=", "recall")
    assert not missing.passed and "could not be computed" in missing.reason


@pytest.mark.parametrize(("n", "classes"), [(12, 2), (30, 2), (120, 2), (30, 3), (101, 7),
                                             (60, 25)])
def test_a_model_without_skill_passes_the_prior_check_by_chance_one_time_in_twenty(
        n: int, classes: int) -> None:
    """Scores that know nothing, on n held-out rows: the margin alone lets a third of them
    through on 30 rows; with the chance bound, about the significance level."""
    from loopline.model.metrics import classification_metrics

    rng = np.random.default_rng(n * classes)
    names = [f"c{i:02d}" for i in range(classes)]
    positive = names[1] if classes == 2 else None
    c = GateConfig.model_validate({"baseline": {"roc_auc": 0.05}})
    passed = margin_only = 0
    draws = 200
    for _ in range(draws):
        y = np.array(names)[rng.permutation(np.arange(n) % classes)]
        proba = rng.dirichlet(np.ones(classes), n)
        auc = classification_metrics(y, proba, names, positive or names[0])["roc_auc"]
        bound = gate.chance_roc_auc(y, proba, names, positive, 0.05, draws=300)
        checks = gate.baseline_checks({"roc_auc": auc}, {"roc_auc": 0.5}, c, {"roc_auc": bound}, n)
        passed += checks[0].passed
        margin_only += auc >= 0.55
    assert passed / draws <= 0.1
    if n <= 30:
        assert margin_only / draws >= 0.2  # what the margin alone let through


def test_the_chance_bound_shrinks_with_the_rows_and_is_named_in_the_reason() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["no"] * 15 + ["yes"] * 15)
    proba = rng.dirichlet([1, 1], 30)
    bound = gate.chance_roc_auc(y, proba, ["no", "yes"], "yes", 0.05)
    normal = 0.5 + 1.6449 * (31 / (12 * 15 * 15)) ** 0.5  # Mann-Whitney's normal approximation
    assert bound == pytest.approx(normal, abs=0.02)
    assert bound == gate.chance_roc_auc(y, proba, ["no", "yes"], "yes", 0.05)  # a fixed seed
    many = gate.chance_roc_auc(np.repeat(y, 20), np.repeat(proba, 20, axis=0), ["no", "yes"], "yes", 0.05)
    assert many < 0.545  # 600 rows: about 0.54
    assert gate.chance_roc_auc(np.array(["no"] * 5), proba[:5], ["no", "yes"], "yes", 0.05) is None
    c = GateConfig.model_validate({"baseline": {"roc_auc": 0.05}})
    check, = gate.baseline_checks({"roc_auc": 0.66}, {"roc_auc": 0.5}, c, {"roc_auc": 0.6762}, 30)
    assert not check.passed and check.threshold == pytest.approx(0.6762, abs=1e-6) and check.op == ">"
    tie, = gate.baseline_checks({"roc_auc": 0.619}, {"roc_auc": 0.5}, c, {"roc_auc": 0.619}, 60)
    assert not tie.passed and "0.6190 misses the bound (above 0.6190)" in tie.reason
    assert "a model with no skill reaches 0.6762 by chance (p 0.05) on these 30 rows" in check.reason
    big, = gate.baseline_checks({"roc_auc": 0.56}, {"roc_auc": 0.5}, c, {"roc_auc": 0.52}, 3000)
    assert big.passed and big.threshold == 0.55  # the margin, where it is the larger
    with pytest.raises(ValueError, match="baseline_significance must be between 0 and 0.5"):
        GateConfig.model_validate({"baseline": {"roc_auc": 0.05}, "baseline_significance": 0.7})
    assert GateConfig.model_validate({"baseline": {"roc_auc": 0.05},
                                      "baseline_significance": None}).baseline_significance is None


def test_absolute_checks_use_configured_metrics() -> None:
    checks = gate.absolute_checks({"roc_auc": 0.9, "log_loss": 0.7}, cfg())
    assert [(c.name, c.passed) for c in checks] == [("min_roc_auc", True), ("max_log_loss", False)]
    assert gate.verdict(checks) == "fail"


def test_no_champion_means_absolute_checks_only() -> None:
    c = cfg(champion={"metrics": ["roc_auc"], "tolerance": 0.02})
    checks = gate.champion_checks({"roc_auc": 0.5}, None, {"stage": "prod", "version": None}, c)
    assert len(checks) == 1 and checks[0].skipped and "no champion in prod yet" in checks[0].reason
    assert gate.verdict(checks) == "pass"


def test_candidate_must_stay_within_tolerance_of_the_champion() -> None:
    c = cfg(champion={"metrics": ["roc_auc", "log_loss"], "tolerance": 0.02})
    champ = {"version": "v0.2.0", "stage": "prod"}
    within = gate.champion_checks({"roc_auc": 0.845, "log_loss": 0.41}, {"roc_auc": 0.86, "log_loss": 0.40}, champ, c)
    assert all(x.passed for x in within)
    worse = gate.champion_checks({"roc_auc": 0.83, "log_loss": 0.45}, {"roc_auc": 0.86, "log_loss": 0.40}, champ, c)
    assert [x.passed for x in worse] == [False, False]
    assert worse[0].threshold == pytest.approx(0.84) and worse[1].threshold == pytest.approx(0.42)
    assert "v0.2.0" in worse[0].reason
    unscorable = gate.champion_checks({"roc_auc": 0.9}, None, {**champ, "error": "KeyError: Income"},
                                      cfg(champion={"metrics": ["roc_auc"]}))
    assert not unscorable[0].passed and "KeyError: Income" in unscorable[0].reason


def test_slice_minimums_and_fairness_gap() -> None:
    slices = {"column": "Home", "slices": {
        "owner": {"rows": 400, "roc_auc": 0.86, "included_in_gap": True},
        "rent": {"rows": 200, "roc_auc": 0.66, "included_in_gap": True},
        "ignore": {"rows": 3, "roc_auc": 0.1, "included_in_gap": False}},
        "max_gap": {"roc_auc": {"gap": 0.2, "lowest": "rent", "highest": "owner"}}}
    checks = gate.slice_checks(slices, cfg(slices={"min": {"roc_auc": 0.7}, "max_gap": {"roc_auc": 0.15}}))
    by = {c.name: c for c in checks}
    assert set(by) == {"slice_roc_auc[owner]", "slice_roc_auc[rent]", "slice_gap_roc_auc"}
    assert by["slice_roc_auc[owner]"].passed and not by["slice_roc_auc[rent]"].passed
    assert not by["slice_gap_roc_auc"].passed and "rent vs owner" in by["slice_gap_roc_auc"].reason


def test_drift_share_and_parity_checks() -> None:
    rows = [{"column": "a", "drifted": True}, {"column": "b", "drifted": False},
            {"column": "c", "drifted": False}, {"column": "d", "drifted": False}]
    (share,) = gate.drift_check(rows, cfg(drift={"max_share": 0.2}))
    assert share.value == 0.25 and not share.passed and "drifted: a" in share.reason
    (ok,) = gate.drift_check(rows, cfg(drift={"max_share": 0.3}))
    assert ok.passed
    (p,) = gate.parity_check({"passed": False, "max_abs_diff": 0.01, "atol": 1e-4, "rows": 9,
                              "label_mismatches": 2}, cfg())
    assert not p.passed and "2 label mismatches" in p.reason
    assert gate.parity_check({"passed": True}, cfg(parity=False)) == []


def test_evidently_drift_finds_a_shifted_column() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.normal(0, 1, 2000),
                        "c": rng.choice(["a", "b"], 2000)})
    cur = pd.DataFrame({"x": rng.normal(2, 1, 2000), "y": rng.normal(0, 1, 2000),
                        "c": rng.choice(["a", "b"], 2000, p=[0.1, 0.9])})
    rows, snap = gate.drift_report(ref, cur, ["x", "y"], ["c"], DriftCheck(num_method="ks", cat_method="chisquare"))
    drifted = {r["column"]: r["drifted"] for r in rows}
    assert drifted == {"x": True, "y": False, "c": True}
    assert {r["kind"] for r in rows} == {"p-value"}
    rows, _ = gate.drift_report(ref, cur, ["x", "y"], ["c"],
                                DriftCheck(num_method="wasserstein", per_column={"y": "psi"}))
    methods = {r["column"]: r["method"] for r in rows}
    assert methods["x"] == "wasserstein" and methods["y"] == "psi"
    assert {r["column"]: r["drifted"] for r in rows}["x"] is True


def drift_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 300), "y": rng.gamma(2.0, 1.0, 300),
                        "c": rng.choice(["a", "b", "c"], 300)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 120), "y": rng.gamma(2.0, 1.0, 120),
                        "c": rng.choice(["a", "b", "c"], 120, p=[0.6, 0.2, 0.2])})
    return ref, cur


def test_unshown_column_drift_widgets_are_skipped_and_the_page_is_the_same(monkeypatch) -> None:
    """The gate's drift report without each column's own plots: the same values and the same
    page, byte for byte. Fails when Evidently moves ValueDriftCalculation._render, or when
    its preset starts showing the columns' widgets (the pages would then differ)."""
    import contextlib

    ref, cur = drift_case()
    check = DriftCheck(num_method="ks", cat_method="chisquare")
    rows, skipped = gate.drift_report(ref, cur, ["x", "y"], ["c"], check)
    monkeypatch.setattr(gate, "unshown_column_drift_widgets_skipped", contextlib.nullcontext)
    rows_drawn, drawn = gate.drift_report(ref, cur, ["x", "y"], ["c"], check)

    def column_widgets(snap) -> int:
        return sum(len(r.widget or []) for r in snap._metrics.values())

    assert column_widgets(drawn) > column_widgets(skipped)  # something was skipped
    assert rows == rows_drawn and skipped.dict() == drawn.dict()
    page = gate.stable_ids(gate.evidently_page([("Data drift", skipped)]))
    assert page == gate.stable_ids(gate.evidently_page([("Data drift", drawn)]))
    assert page.count("DATA DRIFT") == drawn.get_html_str(as_iframe=False).count("DATA DRIFT")


def test_one_untitled_section_is_evidentlys_own_page() -> None:
    """evidently_page builds Evidently's page from its private widget lists: with one
    untitled section it must be Snapshot.get_html_str's page, byte for byte (ids aside)."""
    ref, cur = drift_case()
    _, snap = gate.drift_report(ref, cur, ["x", "y"], ["c"], DriftCheck())
    own = gate.stable_ids(snap.get_html_str(as_iframe=False))
    assert gate.stable_ids(gate.evidently_page([("", snap)])) == own


def test_the_gate_page_is_one_document_with_a_section_per_report(tmp_path) -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(["bad", "good"], 200, p=[0.3, 0.7])
    p_bad = np.clip(np.where(y == "bad", 0.65, 0.3) + rng.normal(0, 0.2, 200), 0, 1)
    frame = gate.scored_frame(y, np.column_stack([p_bad, 1 - p_bad]), ["bad", "good"], "bad", "Status")
    _, quality = gate.quality_report(frame, "Status", "bad", ["bad", "good"])
    ref, cur = drift_case()
    _, drift = gate.drift_report(ref, cur, ["x", "y"], ["c"], DriftCheck())
    gate.save_html([quality, drift], tmp_path / "gate.html")
    page = (tmp_path / "gate.html").read_text(encoding="utf-8")
    assert page.lower().count("<!doctype html") == 1 and "<iframe" not in page
    assert gate.SECTIONS[0] in page and gate.SECTIONS[1] in page and gate.SECTIONS[2] not in page
    separate = sum(len(s.get_html_str(as_iframe=False)) for s in (quality, drift))
    assert len(page) < 0.6 * separate  # one copy of Evidently's scripts, not one per report
    gate.save_html([quality, drift], tmp_path / "again.html")
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == page


def test_evidently_quality_matches_sklearn() -> None:
    from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.choice(["bad", "good"], 500, p=[0.3, 0.7])
    p_bad = np.clip(np.where(y == "bad", 0.65, 0.3) + rng.normal(0, 0.2, 500), 0, 1)
    proba = np.column_stack([p_bad, 1 - p_bad])
    frame = gate.scored_frame(y, proba, ["bad", "good"], "bad", "Status")
    values, _ = gate.quality_report(frame, "Status", "bad", ["bad", "good"])
    pred = np.where(p_bad >= 0.5, "bad", "good")
    assert values["roc_auc"] == pytest.approx(roc_auc_score(y == "bad", p_bad), abs=1e-9)
    assert values["recall"] == pytest.approx(recall_score(y, pred, pos_label="bad"), abs=1e-9)
    assert values["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-9)


def test_multiclass_quality_of_rows_without_some_class_is_over_the_classes_they_have() -> None:
    from sklearn.metrics import accuracy_score, roc_auc_score

    rng = np.random.default_rng(2)
    classes = ["a", "b", "c", "rare"]
    y = rng.choice(["a", "b", "c"], 300)
    proba = rng.dirichlet([1, 1, 1, 0.2], 300)
    for i, c in enumerate("abc"):
        proba[y == c, i] += 0.8
    proba[0] = [0.1, 0.1, 0.1, 0.7]  # predicted as the class no row holds
    proba /= proba.sum(axis=1, keepdims=True)
    frame = gate.scored_frame(y, proba, classes, None, "kind")
    values, _ = gate.quality_report(frame, "kind", None, classes)  # raised KeyError: 'rare'
    kept = proba[:, :3] / proba[:, :3].sum(axis=1, keepdims=True)
    assert values["roc_auc"] == pytest.approx(roc_auc_score(y, kept, multi_class="ovr"), abs=1e-9)
    assert values["accuracy"] == pytest.approx(
        accuracy_score(y, np.array(["a", "b", "c"])[kept.argmax(axis=1)]), abs=1e-9)


# ------------------------------------------------------------ the champion's model


def test_champion_model_is_the_fetched_file_with_the_registered_sha(tmp_path) -> None:
    import hashlib

    from loopline.core.errors import LooplineError

    rel = ".loopline/champion/model.onnx"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"onnx bytes")
    sha = hashlib.sha256(b"onnx bytes").hexdigest()
    assert gate.champion_model(tmp_path, {"onnx_sha256": sha}, rel) == tmp_path / rel
    with pytest.raises(LooplineError, match=r"sha256 [0-9a-f]{12}, not the registered 000000000000"):
        gate.champion_model(tmp_path, {"onnx_sha256": "0" * 64}, rel)
    with pytest.raises(LooplineError, match="is missing"):
        gate.champion_model(tmp_path, {"onnx_sha256": sha}, ".loopline/champion/other.onnx")
    with pytest.raises(LooplineError, match="not fetched"):
        gate.champion_model(tmp_path, {"onnx_sha256": sha}, None)


def test_a_champion_that_could_not_be_fetched_fails_with_that_reason(tmp_path) -> None:
    champion = {"stage": "prod", "version": "v0.1.0", "error": "LooplineError: not in the cache"}
    values, snap = gate._champion_values(tmp_path, champion, None, None, None, "Status", "bad")
    assert values is None and snap is None
    checks = gate.champion_checks({"roc_auc": 0.9}, values, champion,
                                  cfg(champion={"metrics": ["roc_auc"]}))
    assert not checks[0].passed and "LooplineError: not in the cache" in checks[0].reason


def test_a_tampered_champion_model_fails_its_checks(tmp_path) -> None:
    rel = ".loopline/champion/model.onnx"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"not the registered model")
    champion = {"stage": "prod", "version": "v0.1.0", "onnx_sha256": "0" * 64}
    values, _ = gate._champion_values(tmp_path, champion, rel, None, None, "Status", "bad")
    assert values is None and "not the registered" in champion["error"]


# ------------------------------------------------------------ offline latency


def test_offline_latency_times_one_record_calls_of_the_exported_model(tmp_path) -> None:
    from loopline.model.onnx.convert import convert
    from tests.helpers.model_data import CATEGORICAL, NUMERIC, fit_pipeline, model_frames

    frames = model_frames()
    path = tmp_path / "model.onnx"
    path.write_bytes(convert(fit_pipeline(frames, "hgb", "median", "most_frequent"),
                             NUMERIC, CATEGORICAL))
    test = frames["test"].copy()
    test.iloc[0, 0] = np.nan  # a missing value is sent as null, as a client would
    got = gate.offline_latency(path, test, calls=60)
    assert got["calls"] == 60 and 0 < got["p50_ms"] <= got["p99_ms"] < 1000


def test_latency_check_records_the_outcome_and_the_bound_not_the_figure() -> None:
    assert gate.latency_check({"p50_ms": 0.1, "p99_ms": 0.3, "calls": 500}, None) == []
    ok, = gate.latency_check({"p50_ms": 0.1, "p99_ms": 0.3, "calls": 500}, 2.0)
    assert ok.passed and ok.value is None and ok.threshold == 2.0 and ok.kind == "latency"
    slow, = gate.latency_check({"p50_ms": 1.0, "p99_ms": 2.5, "calls": 500}, 2.0)
    assert not slow.passed and "over 2 ms" in slow.reason and gate.verdict([ok, slow]) == "fail"


def test_latency_bound_is_a_number_or_the_production_targets_green_bound() -> None:
    from loopline.config.params import validate_params
    from tests.helpers.config import composed, error_of

    raw = composed()
    assert gate.latency_bound(validate_params(raw)) is None
    raw["gate"]["latency"] = {"p99_ms": 5}
    assert gate.latency_bound(validate_params(raw)) == 5
    raw["gate"]["latency"] = {"p99_ms": "target"}
    assert "monitor.targets.latency_p99_ms is not set" in error_of(raw)
    raw["monitor"]["targets"] = {"latency_p99_ms": {"amber": 3.0, "red": 10.0}}
    assert gate.latency_bound(validate_params(raw)) == 3.0
    for bad in (0, -1, "fast"):
        raw["gate"]["latency"] = {"p99_ms": bad}
        assert "gate.latency.p99_ms" in error_of(raw), bad
