"""Registry commands of the ``loopline`` CLI: register, promote, rollback, which, history, get.

``add_commands(app)`` adds them to a Typer app. This module imports only typer and the
standard library at import time; :mod:`loopline.registry` (itself light) is imported when
a command runs, and rich only for the history table (:mod:`loopline.cli.tables`). User errors are
:class:`~loopline.core.errors.LooplineError` one-liners that name the bad ref.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.cli.tables import emit, print_history, print_json

PushOpt = Annotated[str | None, typer.Option(
    "--push", metavar="REMOTE", help="Push the new tag to REMOTE first (git push --atomic), then "
                                     "create it here; a refused push creates nothing.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Override a failed gate (needs --reason).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why the gate is overridden (recorded).")]


def _repair(repo: Path | None) -> None:
    """Finish or undo what a killed registry command left, saying so on stderr."""
    from loopline.registry.settings import load_settings
    from loopline.registry.write import repair

    for line in repair(load_settings(repo).root):
        typer.echo(line, err=True)


def _pushed(res: dict) -> str:
    return f", pushed to {res['pushed']}" if res.get("pushed") else ""


def register(
    bump: Annotated[str, typer.Option(
        "--bump", help="major, minor or patch (default minor).")] = "minor",
    version: Annotated[str | None, typer.Option(
        "--version", help="An explicit version vX.Y.Z instead of a bump.")] = None,
    push: PushOpt = None,
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Register the model of HEAD as a new version (tag ARTIFACT@vX.Y.Z)."""
    _repair(repo)
    from loopline.registry import actions as registry

    res = registry.register(repo, bump=bump, version=version, push=push, force=force, reason=reason)
    gate = res["metadata"]["gate"]["verdict"]
    forced = " (gate failed: forced)" if res["metadata"]["forced"] else ""
    emit(res, as_json, f"registered {res['tag']} at {res['commit'][:12]} "
                       f"(gate {gate}){forced}{_pushed(res)}")


def promote(
    version: Annotated[str, typer.Argument(
        help="The version, e.g. v0.3.0, or HEAD (the version of the checked-out commit).")],
    to: Annotated[str, typer.Option("--to", help="The stage, e.g. prod.")],
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    push: PushOpt = None,
    now: Annotated[bool, typer.Option(
        "--now", help="Cut over at once, whatever deploy.strategy says.")] = False,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="cutover, canary or blue_green instead of deploy.strategy.")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Assign a version to a stage (a new tag ARTIFACT#STAGE#N), or start a rollout to the
    serving stage under a canary or blue_green deploy.strategy."""
    _repair(repo)
    from loopline.registry import actions as registry

    res = registry.promote(version, to, root=repo, force=force, reason=reason, push=push,
                           strategy="cutover" if now else strategy)
    if res.get("action") == "rollout":
        from loopline.cli.rollout import describe

        verb = "recorded a" if res["created"] else "already under way: the"
        text = f"{verb} {describe(res)}, not a cutover{_pushed(res)}"
    elif not res["created"]:
        text = (f"{res['version']} is already current in {res['stage']} ({res['tag']}): "
                "nothing to do")
    else:
        forced = f" (forced: {res['reason']})" if res["forced"] else ""
        text = f"promoted {res['version']} to {res['stage']} ({res['tag']}){forced}{_pushed(res)}"
    emit(res, as_json, text)


def rollback(
    stage: Annotated[str, typer.Option("--stage", help="The stage to roll back, e.g. prod.")],
    to: Annotated[str | None, typer.Option("--to", help="Roll back to this version.")] = None,
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    push: PushOpt = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Assign the previous gate-passed version (or --to VERSION) to a stage, as a new tag."""
    _repair(repo)
    from loopline.registry import actions as registry

    res = registry.rollback(stage, to=to, root=repo, force=force, reason=reason, push=push)
    forced = f" (forced: {res['reason']})" if res["forced"] else ""
    emit(res, as_json, f"rolled {res['stage']} back from {res['previous']} to {res['version']} "
                       f"({res['tag']}){forced}{_pushed(res)}")


def which(
    stage: Annotated[str, typer.Argument(help="The stage, e.g. prod.")],
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Print the version currently assigned to a stage (exit 1 if none)."""
    _repair(repo)
    from loopline.registry import actions as registry

    res = registry.which(stage, root=repo)
    emit(res, as_json, str(res["version"]))


def history(
    stage: Annotated[str | None, typer.Option(
        "--stage", help="Only this stage's assignments.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", help="Show the newest N events.")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Audit timeline, newest first: registrations, promotions, rollbacks, forced, deleted."""
    _repair(repo)
    from loopline.registry import actions as registry

    events = registry.history(repo, stage=stage)
    if limit is not None:
        events = events[:max(limit, 0)]
    if as_json:
        print_json(events)
        return
    print_history(events)


def get(
    version: Annotated[str, typer.Argument(help="A version (v0.3.0) or a stage (prod).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write into.")],
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Write DIR/model.onnx and DIR/card.json of a version, from the DVC cache or remote."""
    _repair(repo)
    from loopline.core.layout import CARD_JSON, MODEL_ONNX
    from loopline.registry import fetch

    res = fetch.get(version, output, root=repo)
    src = "/".join(sorted(set(res["source"].values())))
    emit(res, as_json, f"wrote {res['files'][MODEL_ONNX]} and {res['files'][CARD_JSON]} "
                       f"({res['tag']}, from {src})")


COMMANDS = {"register": register, "promote": promote, "rollback": rollback, "which": which,
            "history": history, "get": get}


def add_commands(app: typer.Typer) -> None:
    """Add the registry commands to ``app`` (the ``loopline`` Typer app)."""
    for name, fn in COMMANDS.items():
        app.command(name, cls=Command)(fn)
