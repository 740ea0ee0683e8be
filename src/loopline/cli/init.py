"""The ``loopline init`` command: scaffold a new instance for the user's own data file.

``add_commands(app)`` adds it to the Typer app. Like the registry and serving commands, this
module imports only typer at import time; pandas, Hydra and DVC are imported when the
command runs (through :mod:`loopline.gitops.scaffold`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.registry import _Command

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def init(directory: DirArg, data: DataOpt, target: TargetOpt, positive_class: PositiveOpt = None,
         name: NameOpt = None, as_json: JsonOpt = False) -> None:
    """Create a loopline instance (Git + DVC repo, conf/, inferred schema) for a data file."""
    from loopline.gitops import scaffold

    res = scaffold.run(directory, data, target, positive=positive_class, name=name)
    typer.echo(json.dumps(res) if as_json else scaffold.summary(res))


def add_commands(app: typer.Typer) -> None:
    """Add ``init`` to ``app`` (the ``loopline`` Typer app)."""
    app.command("init", cls=_Command)(init)
