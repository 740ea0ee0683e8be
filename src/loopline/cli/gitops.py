"""GitOps commands of the ``loopline`` CLI: report (pull-request review) and ci (local CI).

``add_commands(app)`` adds them to the Typer app; like the other command modules this one
imports only typer at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.registry import JsonOpt, RepoOpt, _Command


def report(
    base: Annotated[str | None, typer.Option(
        "--base", help="Base revision (default: the merge base with main).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the markdown here too.")] = None,
    artifacts_url: Annotated[str | None, typer.Option(
        "--artifacts-url", help="Where CI uploaded the HTML reports (linked in the report).")] = None,
    comment: Annotated[int | None, typer.Option(
        "--comment", metavar="PR", help="Create or update the sticky comment on pull request PR "
        "(GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL from the environment).")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Markdown review of the change against a base: params, metrics, gate, drift, slices."""
    from loopline.core.layout import find_root
    from loopline.gitops import report as rep

    root = find_root(repo)
    doc = rep.build(root, base, artifacts_url)
    text = rep.markdown(doc)
    if output is not None:
        from loopline.core.files import write_text

        write_text(output, text + "\n")
    if comment is not None:
        from loopline.gitops import github

        res = github.sticky_comment(comment, text)
        typer.echo(f"{res['action']} comment {res['url']}", err=True)
        return
    typer.echo(json.dumps(doc, default=str) if as_json else text)


def ci(
    workflow: Annotated[str, typer.Argument(help="pr, main or release (a file in .github/workflows).")] = "pr",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps, run nothing.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Run a workflow's `run:` steps on this checkout, as CI would, and say how they went."""
    from loopline.core.layout import find_root
    from loopline.gitops import ci as local_ci

    root = find_root(repo)
    res = local_ci.run(root, workflow, dry_run=dry_run, echo=not as_json)
    if as_json:
        typer.echo(json.dumps(res))
    if not res["passed"]:
        raise typer.Exit(1)


def _dvc_remote(root: Path, verb: str) -> None:
    import subprocess
    import sys

    from loopline.core.errors import LooplineError

    dvc = [sys.executable, "-m", "dvc"]
    remotes = subprocess.run([*dvc, "remote", "list"], cwd=root, capture_output=True, text=True)
    if remotes.returncode != 0:
        raise LooplineError(f"dvc remote list failed: {remotes.stderr.strip()}")
    if not remotes.stdout.strip():
        typer.echo(f"no DVC remote configured: nothing to {verb}")
        return
    args = [*dvc, verb] + (["--allow-missing"] if verb == "pull" else [])
    res = subprocess.run(args, cwd=root)
    if res.returncode != 0:
        raise LooplineError(f"dvc {verb} failed (exit {res.returncode})")


def pull(repo: RepoOpt = None) -> None:
    """`dvc pull` the outputs that the remote has, when a DVC remote is configured."""
    from loopline.core.layout import find_root

    _dvc_remote(find_root(repo), "pull")


def push(repo: RepoOpt = None) -> None:
    """`dvc push` the outputs, when a DVC remote is configured."""
    from loopline.core.layout import find_root

    _dvc_remote(find_root(repo), "push")


COMMANDS = {"report": report, "ci": ci, "pull": pull, "push": push}


def add_commands(app: typer.Typer) -> None:
    for name, fn in COMMANDS.items():
        app.command(name, cls=_Command)(fn)
