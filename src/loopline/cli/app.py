"""The ``loopline`` command line: the Typer app, its global options, and :func:`main`.

The commands live in one module per layer (pipeline, registry, serving, gitops, monitoring,
simulate), each adding its own to the app. Heavy libraries (pandas, scikit-learn, dvc,
hydra, onnxruntime) are imported inside the commands that need them, so ``loopline --help``
is instant. User errors are one line on stderr and a non-zero exit; ``--verbose`` (before
or after the command's name) adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from loopline import __version__
from loopline.cli import gitops, monitoring, pipeline, registry, rollout, serving, simulate
from loopline.cli.options import Group, VerboseOpt, set_verbose, verbose
from loopline.core.errors import LooplineError

app = typer.Typer(
    name="loopline",
    help="Declarative GitOps for the life of a tabular ML model: DVC stages + Hydra configs.",
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loopline {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: VerboseOpt = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    set_verbose(verbose)


for _module in (pipeline, registry, rollout, serving, gitops, monitoring, simulate):
    _module.add_commands(app)


def main() -> None:
    """Console-script entry point: run the app, turning LooplineError into one line."""
    try:
        app()
    except LooplineError as err:
        if verbose():
            traceback.print_exc()
        print(f"error: {err.message}", file=sys.stderr)
        if err.details:
            print(err.details, file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
