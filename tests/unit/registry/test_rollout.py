"""Rollouts as registry tags (registry/rollout.py and the promote hook in actions.py)."""

from __future__ import annotations

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry import rollout
from tests.helpers.registry_repo import ART, Repo, cli, git, message


def _canary_plan(repo: Repo, strategy: str = "canary", steps: str = "[1, 10, 50]") -> None:
    """Declare the rollout plan in params.yaml and commit it."""
    with (repo.path / "params.yaml").open("a") as f:
        f.write(f"deploy:\n  strategy: {strategy}\n  steps: {steps}\n  min_records: 500\n"
                "  min_labels: 100\n  criteria:\n    margin: 0.01\n    confidence: 0.9\n"
                "    max_error_rate: 0.02\n    p99_ms: 40\n")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "deploy plan")


def _two_versions(repo: Repo) -> None:
    repo.register("a")
    registry.promote("v0.1.0", "prod", root=repo.path)
    _canary_plan(repo)
    repo.register("b")


def test_promote_under_a_canary_plan_records_a_rollout_not_a_cutover(repo: Repo) -> None:
    _two_versions(repo)
    res = registry.promote("v0.2.0", "prod", root=repo.path)
    assert res["action"] == "rollout" and res["created"]
    assert res["tag"] == f"{ART}#canary#1" and res["share"] == 1.0 and res["step"] == 1
    assert registry.which("prod", repo.path)["version"] == "v0.1.0"  # prod did not move
    assert registry.which("canary", repo.path)["version"] == "v0.2.0"
    meta = message(repo.path, f"{ART}#canary#1")
    assert meta["action"] == "rollout" and meta["champion"] == "v0.1.0" and meta["target"] == "prod"
    assert meta["plan"]["steps"] == [1.0, 10.0, 50.0] and meta["plan"]["min_records"] == 500
    assert meta["plan"]["criteria"] == {"margin": 0.01, "confidence": 0.9,
                                        "max_error_rate": 0.02, "p99_ms": 40.0}
    assert git(repo.path, "rev-parse", f"{ART}#canary#1^{{commit}}") == git(
        repo.path, "rev-parse", f"{ART}@v0.2.0^{{commit}}")
    # the same promotion again creates nothing; another version is refused while under way
    assert not registry.promote("v0.2.0", "prod", root=repo.path)["created"]
    repo.register("c")
    with pytest.raises(LooplineError, match=r"a rollout of v0\.2\.0 to prod is under way"):
        registry.promote("v0.3.0", "prod", root=repo.path)
    with pytest.raises(LooplineError, match="canary is the stage of rollouts"):
        registry.promote("v0.3.0", "canary", root=repo.path)


def test_advance_steps_then_completes_with_an_ordinary_prod_assignment(repo: Repo) -> None:
    _two_versions(repo)
    registry.promote("v0.2.0", "prod", root=repo.path)
    shares = [rollout.advance(repo.path)["share"] for _ in range(2)]
    assert shares == [10.0, 50.0]
    state = rollout.status(repo.path)
    assert state["step"] == 3 and state["tag"] == f"{ART}#canary#3"
    done = rollout.advance(repo.path, reason="clean at 50%")
    assert done["action"] == "complete" and done["tag"] == f"{ART}#prod#2"
    assert done["canary_tag"] == f"{ART}#canary!#4"
    assert registry.which("prod", repo.path)["version"] == "v0.2.0"
    assert rollout.status(repo.path) is None
    with pytest.raises(LooplineError, match="no version assigned to canary"):
        registry.which("canary", repo.path)
    meta = message(repo.path, f"{ART}#prod#2")
    assert meta["action"] == "promote" and meta["rollout"] == f"{ART}#canary#3"
    events = [(e["event"], e["stage"], e["version"]) for e in registry.history(repo.path)]
    assert events[:5] == [("complete", "canary", "v0.2.0"), ("promote", "prod", "v0.2.0"),
                          ("advance", "canary", "v0.2.0"), ("advance", "canary", "v0.2.0"),
                          ("rollout", "canary", "v0.2.0")]
    assert not any(e == "deleted" for e, _, _ in events)
    with pytest.raises(LooplineError, match="no rollout of credit-risk is under way"):
        rollout.advance(repo.path)


def test_abort_records_the_reason_and_leaves_prod_alone(repo: Repo) -> None:
    _two_versions(repo)
    registry.promote("v0.2.0", "prod", root=repo.path)
    rollout.advance(repo.path)
    with pytest.raises(LooplineError, match="abort needs --reason"):
        rollout.abort(repo.path, reason=" ")
    res = rollout.abort(repo.path, reason="error rate 4% at step 2")
    assert res["canary_tag"] == f"{ART}#canary!#3" and res["previous_share"] == 10.0
    assert rollout.status(repo.path) is None
    assert registry.which("prod", repo.path)["version"] == "v0.1.0"
    top = registry.history(repo.path)[0]
    assert (top["event"], top["reason"], top["version"]) == (
        "abort", "error rate 4% at step 2", "v0.2.0")
    # a new rollout of the same version starts over at step 1, numbered after the abort
    again = registry.promote("v0.2.0", "prod", root=repo.path)
    assert again["tag"] == f"{ART}#canary#4" and again["step"] == 1


def test_cutover_forces_an_ordinary_promotion_or_completes_the_rollout(repo: Repo) -> None:
    _two_versions(repo)
    repo.register("c")
    res = registry.promote("v0.2.0", "prod", root=repo.path, strategy="cutover")
    assert res["action"] == "promote" and res["tag"] == f"{ART}#prod#2"
    registry.promote("v0.3.0", "prod", root=repo.path)  # the plan says canary
    with pytest.raises(LooplineError, match=r"rollout of v0\.3\.0 .* abort"):
        registry.promote("v0.1.0", "prod", root=repo.path, strategy="cutover")
    now = registry.promote("v0.3.0", "prod", root=repo.path, strategy="cutover")
    assert now["rollout"] == f"{ART}#canary#1" and now["tag"] == f"{ART}#prod#3"
    assert rollout.status(repo.path) is None
    assert registry.which("prod", repo.path)["version"] == "v0.3.0"


def test_staging_and_the_first_version_never_roll_out(repo: Repo) -> None:
    _canary_plan(repo, strategy="blue_green", steps="[25, 50, 75]")
    repo.register("a")
    assert registry.promote("v0.1.0", "prod", root=repo.path)["action"] == "promote"
    repo.register("b")
    assert registry.promote("v0.2.0", "staging", root=repo.path)["action"] == "promote"
    res = registry.promote("v0.2.0", "prod", root=repo.path)
    assert (res["strategy"], res["share"]) == ("blue_green", 25.0)


def test_a_bad_plan_is_one_line_naming_the_key(repo: Repo) -> None:
    _canary_plan(repo, steps="[10, 5]")
    repo.register("a")
    with pytest.raises(LooplineError, match=r"params\.yaml: deploy\.steps: steps must increase "
                                            r"\(got \[10, 5\]\)$"):
        registry.promote("v0.1.0", "prod", root=repo.path)
    assert registry.promote("v0.1.0", "staging", root=repo.path)["action"] == "promote"


def test_gto_sees_the_canary_stage_as_loopline_does(repo: Repo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    gto_api = pytest.importorskip("gto.api")
    clock = iter(range(1_700_000_000, 1_700_001_000, 10))

    def tick() -> None:
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"{next(clock)} +0000")

    tick()
    repo.register("a")
    tick()
    registry.promote("v0.1.0", "prod", root=repo.path)
    tick()
    _canary_plan(repo)
    repo.register("b")
    tick()
    registry.promote("v0.2.0", "prod", root=repo.path)
    assert gto_api.show(str(repo.path))[ART]["stage"] == {"prod": "v0.1.0", "canary": "v0.2.0"}
    tick()
    rollout.advance(repo.path)
    assert gto_api.show(str(repo.path))[ART]["stage"]["canary"] == "v0.2.0"
    tick()
    rollout.abort(repo.path, reason="p99 over target")
    shown = gto_api.show(str(repo.path))[ART]["stage"]
    assert shown.get("canary") is None and shown["prod"] == "v0.1.0"
    refs = [e["ref"] for e in gto_api.history(str(repo.path), artifact=ART)]
    assert f"{ART}#canary!#3" in refs and f"{ART}#canary#2" in refs


def test_rollout_cli_status_advance_abort(repo: Repo) -> None:
    _two_versions(repo)
    out = cli(repo.path, "promote", "v0.2.0", "--to", "prod")
    assert out.exit_code == 0, out.output
    assert "rollout" in out.stdout and "1%" in out.stdout and "v0.1.0" in out.stdout
    assert "not a cutover" in out.stdout
    from typer.testing import CliRunner

    from loopline.cli.app import app

    def run(*args: str):
        return CliRunner().invoke(app, [*args, "--repo", str(repo.path)])

    out = run("rollout", "status")
    assert out.exit_code == 0 and "step 1/3, 1% of traffic to v0.2.0" in out.stdout
    out = run("rollout", "advance", "--json")
    assert out.exit_code == 0 and '"share": 10.0' in out.stdout
    out = run("rollout", "abort")
    assert out.exit_code != 0 and "abort needs --reason" in str(out.exception)
    out = run("rollout", "abort", "--reason", "latency")
    assert out.exit_code == 0 and "all traffic back to v0.1.0" in out.stdout
    assert "no rollout under way" in run("rollout", "status").stdout


def test_a_canary_assignment_without_a_plan_routes_nothing_and_can_be_aborted(repo: Repo) -> None:
    from loopline.cli.rollout import describe

    _two_versions(repo)
    commit = git(repo.path, "rev-parse", f"{ART}@v0.2.0^{{commit}}")
    git(repo.path, "tag", "-a", f"{ART}#canary#1", "-m", "assigned by hand", commit)
    state = rollout.status(repo.path)
    assert (state["version"], state["step"], state["share"]) == ("v0.2.0", None, None)
    assert "without a rollout plan" in describe(state)
    with pytest.raises(LooplineError, match="records no rollout plan"):
        rollout.advance(repo.path)
    rollout.abort(repo.path, reason="not ours")
    assert rollout.status(repo.path) is None


def test_a_decision_on_a_step_that_has_moved_does_nothing(repo: Repo) -> None:
    _two_versions(repo)
    registry.promote("v0.2.0", "prod", root=repo.path)
    judged = f"{ART}#canary#1"
    rollout.advance(repo.path, expect=judged)  # the first judge moves the step
    for move in (lambda: rollout.advance(repo.path, expect=judged),
                 lambda: rollout.abort(repo.path, reason="bad", expect=judged)):
        with pytest.raises(LooplineError, match=rf"moved since it was judged on {judged} "
                                                rf"\(now {ART}#canary#2\)"):
            move()  # a second judge of the same step: nothing written
    state = rollout.status(repo.path)
    assert (state["tag"], state["step"], state["share"]) == (f"{ART}#canary#2", 2, 10.0)
