"""GitOps commands of the ``loopline`` CLI: report (pull-request review), ci (a workflow run by act),
pull and push (the DVC remote), and init (a new instance, :mod:`loopline.gitops.scaffold`).

``add_commands(app)`` adds them to the Typer app; like the other command modules this one
imports only typer at import time (pandas, Hydra and DVC when ``init`` runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.cli.tables import emit, print_ci, print_json


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
        help="pr, main, release or monitor (a file in .github/workflows).")] = "pr",
    dirty: Annotated[bool, typer.Option(
        "--dirty", help="Include the working changes (committed in the clone).")] = False,
    base: Annotated[str, typer.Option(
        "--base", metavar="BRANCH", help="pr: the pull request's base branch.")] = "main",
    tag: Annotated[str | None, typer.Option(
        "--tag", metavar="TAG", help="release: the tag that was pushed (or deleted, --deleted).")] = None,
    deleted: Annotated[bool, typer.Option(
        "--deleted", help="release: the tag was deleted (a `delete` event).")] = False,
    cold: Annotated[bool, typer.Option(
        "--cold", help="Give the clone an empty DVC cache (as a runner without one).")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Run a workflow with nektos/act on a clean clone of this commit, as GitHub would."""
    from loopline.core.layout import find_root
    from loopline.gitops import ci as runner

    root = find_root(repo)
    if deleted and not tag:
        raise typer.BadParameter("--deleted needs --tag (the deleted tag)", param_hint="--deleted")
    res = runner.run(root, workflow, dirty=dirty, cold=cold, base=base, tag=tag, deleted=deleted,
                     echo=not as_json)
    if as_json:
        print_json(res)
    else:
        print_ci(res)
    if res["status"] == "failed":
        raise typer.Exit(1)


def image(
    ref: Annotated[str, typer.Argument(help="A version (v1.2.0) or stage (prod).")] = "prod",
    build: Annotated[bool, typer.Option(
        "--build", help="Build and push the image when the registry does not have it yet.")] = False,
    github_output: Annotated[bool, typer.Option(
        "--github-output", help="Also write image= and version= to the file $GITHUB_OUTPUT.")] = False,
    if_configured: Annotated[bool, typer.Option(
        "--if-configured", help="Without serve.image_registry, say so and do nothing.")] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """The image of the version REF names in serve.image_registry (built once, never rebuilt)."""
    import os

    from loopline.config.params import load_params
    from loopline.core.errors import LooplineError
    from loopline.core.layout import find_root
    from loopline.serving import image as images

    root = find_root(repo)
    params = load_params(root)
    if if_configured and not params.serve.image_registry:
        typer.echo("no image registry configured (serve.image_registry): no image kept")
        return
    doc = images.describe(params, root, ref)
    doc["built"] = False
    if not doc["exists"]:
        if not build:
            raise LooplineError(f"the image of {doc['version']} is not in {params.serve.image_registry} "
                                f"({doc['image']}): it is built when the version is registered "
                                f"(`loopline image {doc['version']} --build`)")
        from loopline.serving import bento
        from loopline.serving.spec import resolve_models

        backend = bento.pick_backend("auto")  # before anything is built
        entry, _ = resolve_models(root, params, doc["version"], None)
        built = bento.build(root, params, entry, None)
        local = f"{params.artifact}:{doc['version']}"
        bento.containerize(built["bento"], local, backend=backend, base=params.serve.image_base)
        images.push(local, [doc["image"], doc["by_sha"]], backend)
        doc.update(built=True, exists=True)
    if github_output:
        out = os.environ.get("GITHUB_OUTPUT")
        if not out:
            raise LooplineError("--github-output: GITHUB_OUTPUT is not set (it is in a workflow step)")
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"image={doc['image']}\nversion={doc['version']}\n")
    verb = "built and pushed" if doc["built"] else "in the registry"
    emit(doc, as_json, f"{doc['image']} ({doc['version']}, model sha256 {doc['sha256'][:12]}): {verb}")


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


COMMANDS = {"report": report, "ci": ci, "image": image, "pull": pull, "push": push, "init": init}


def add_commands(app: typer.Typer) -> None:
    """Add the GitOps commands to ``app`` (the ``loopline`` Typer app)."""
    for name, fn in COMMANDS.items():
        app.command(name, cls=Command)(fn)
