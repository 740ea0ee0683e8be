"""GitOps commands of the ``loopline`` CLI: report (pull-request review), ci (local CI),
pull and push (the DVC remote), and init (a new instance, :mod:`loopline.gitops.scaffold`).

``add_commands(app)`` adds them to the Typer app; like the other command modules this one
imports only typer at import time (pandas, Hydra and DVC when ``init`` runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.cli.tables import emit, print_json


def report(
    base: Annotated[str | None, typer.Option(
        "--base", help="Base revision (default: the merge base with main).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the markdown here too.")] = None,
    artifacts_url: Annotated[str | None, typer.Option(
        "--artifacts-url",
        help="Where CI uploaded the HTML reports (linked in the report).")] = None,
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
    emit(doc, as_json, text)


def ci(
    workflow: Annotated[str, typer.Argument(
        help="pr, main or release (a file in .github/workflows).")] = "pr",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the steps, run nothing.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Run a workflow's `run:` steps on this checkout, as CI would, and say how they went."""
    from loopline.core.layout import find_root
    from loopline.gitops import ci as local_ci

    root = find_root(repo)
    res = local_ci.run(root, workflow, dry_run=dry_run, echo=not as_json)
    if as_json:
        print_json(res)
    if not res["passed"]:
        raise typer.Exit(1)


def pull(repo: RepoOpt = None) -> None:
    """`dvc pull` the outputs that the remote has, when a DVC remote is configured."""
    from loopline.core.dvc import sync_remote
    from loopline.core.layout import find_root

    if not sync_remote(find_root(repo), "pull"):
        typer.echo("no DVC remote configured: nothing to pull")


def push(repo: RepoOpt = None) -> None:
    """`dvc push` the outputs, when a DVC remote is configured."""
    from loopline.core.dvc import sync_remote
    from loopline.core.layout import find_root

    if not sync_remote(find_root(repo), "push"):
        typer.echo("no DVC remote configured: nothing to push")


DirArg = Annotated[Path, typer.Argument(
    metavar="DIR", help="The new instance's directory: must not exist, or be empty.")]
DataOpt = Annotated[Path, typer.Option(
    "--data", metavar="FILE", help="A CSV or Parquet file to learn from (copied to DIR/data/).")]
TargetOpt = Annotated[str, typer.Option(
    "--target", "-t", metavar="COLUMN", help="The column to predict (a class label).")]
PositiveOpt = Annotated[str | None, typer.Option(
    "--positive-class", metavar="VALUE",
    help="The class recall, precision and ROC AUC are about (default: the minority class).")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", metavar="ARTIFACT",
    help="Registry artifact name (default: DIR's name as lower-case letters, digits and '-').")]
DropOpt = Annotated[list[str] | None, typer.Option(
    "--drop", metavar="COLUMN", help="Leave a column out of the features (repeatable).")]
IdOpt = Annotated[str | None, typer.Option(
    "--id", metavar="COLUMN", help="The unique identifier column (default: found by init).")]
TimeOpt = Annotated[str | None, typer.Option(
    "--time", metavar="COLUMN",
    help="The date/time column: rows in its order, tested on the latest (split.method: time).")]


def init(directory: DirArg, data: DataOpt, target: TargetOpt, positive_class: PositiveOpt = None,
         name: NameOpt = None, drop: DropOpt = None, id_column: IdOpt = None,
         time_column: TimeOpt = None, as_json: JsonOpt = False) -> None:
    """Create a loopline instance (Git + DVC repo, conf/, inferred schema) for a data file."""
    from loopline.gitops import scaffold

    res = scaffold.run(directory, data, target, positive=positive_class, name=name,
                       drop=tuple(drop or ()), id_column=id_column, time_column=time_column)
    emit(res, as_json, scaffold.summary(res))


COMMANDS = {"report": report, "ci": ci, "pull": pull, "push": push, "init": init}


def add_commands(app: typer.Typer) -> None:
    """Add the GitOps commands to ``app`` (the ``loopline`` Typer app)."""
    for name, fn in COMMANDS.items():
        app.command(name, cls=Command)(fn)
