"""``loopline rollout status|advance|abort``: the rollout under way (registry.rollout).

Imports only typer and the standard library at import time; the registry when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from loopline.cli.options import Command, Group, JsonOpt, RepoOpt
from loopline.cli.registry import PushOpt, _pushed, _repair
from loopline.cli.tables import emit

ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the tag).")]


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share:g}%"


def describe(res: dict) -> str:
    """One line for a rollout: candidate, champion, step and share."""
    if res["step"] is None:
        return (f"{res['version']} is assigned to canary ({res['tag']}) without a rollout plan "
                "(not written by `loopline promote`): it gets no traffic; "
                "`loopline rollout abort` ends it")
    return (f"{res['strategy']} rollout of {res['version']} to {res['stage']} "
            f"(champion {res['champion']}): step {res['step']}/{len(res['steps'])}, "
            f"{_pct(res['share'])} of traffic to {res['version']} ({res['tag']})")


def status(as_json: JsonOpt = False, repo: RepoOpt = None) -> None:
    """The rollout under way: candidate, champion, plan, step and share of traffic."""
    _repair(repo)
    from loopline.registry import rollout

    res = rollout.status(repo)
    emit({"rollout": res}, as_json, describe(res) if res else "no rollout under way")


def advance(reason: ReasonOpt = None, push: PushOpt = None, as_json: JsonOpt = False,
            repo: RepoOpt = None) -> None:
    """Move the rollout to its next step; past the last one, the candidate takes the stage."""
    _repair(repo)
    from loopline.registry import rollout

    res = rollout.advance(repo, reason=reason, push=push)
    if res["action"] == "complete":
        text = (f"completed: {res['version']} is now {res['stage']} ({res['tag']}; "
                f"{res['canary_tag']}){_pushed(res)}; reload the service to follow")
    else:
        text = (f"advanced: {_pct(res['previous_share'])} -> {describe(res)}{_pushed(res)}; "
                "reload the service to follow")
    emit(res, as_json, text)


def abort(reason: Annotated[str | None, typer.Option(
              "--reason", help="Why the rollout is aborted (required, recorded).")] = None,
          push: PushOpt = None, as_json: JsonOpt = False, repo: RepoOpt = None) -> None:
    """End the rollout: all traffic back to the champion (a recorded event with the reason)."""
    _repair(repo)
    from loopline.registry import rollout

    res = rollout.abort(repo, reason=reason or "", push=push)
    emit(res, as_json, f"aborted the rollout of {res['version']} at step {res['step']} "
                       f"({res['canary_tag']}): all traffic back to {res['champion']} once the "
                       f"service reloads{_pushed(res)}")


def add_commands(app: typer.Typer) -> None:
    """Add ``loopline rollout status|advance|abort`` to ``app``."""
    group = typer.Typer(cls=Group, no_args_is_help=True, rich_markup_mode=None,
                        help="The rollout under way (deploy.strategy canary or blue_green).")
    for name, fn in (("status", status), ("advance", advance), ("abort", abort)):
        group.command(name, cls=Command)(fn)
    app.add_typer(group, name="rollout")
