"""Serving commands of the ``loopline`` CLI: serve, reload, build, containerize.

``add_commands(app)`` adds them to the Typer app. Like the registry commands, this module
imports only typer at import time; BentoML is imported (or run) when a command needs it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.options import Command, JsonOpt, RepoOpt
from loopline.core.errors import LooplineError

RefArg = Annotated[str | None, typer.Argument(
    help="A version (v1.2.0) or stage (prod); default: serve.model, else current prod, "
         "else the latest local export.")]
ShadowOpt = Annotated[str | None, typer.Option(
    "--shadow", help="A second version or stage predicted in shadow (logged, never returned).")]


def _context(repo: Path | None):  # noqa: ANN202
    from loopline.config.params import load_params
    from loopline.core.layout import find_root

    root = find_root(repo)
    return root, load_params(root)


def serve(
    ref: RefArg = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port (default serve.port).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address (default serve.host).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Server processes.")] = None,
    shadow: ShadowOpt = None,
    log: Annotated[str | None, typer.Option(
        "--log", help="Inference log file (default serve.log.path).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Resolve and write the spec, print it, do not start.")] = False,
    log_reset: Annotated[bool, typer.Option(
        "--log-reset", help="Move the inference log aside (<log>.<UTC time>.aside, nothing is "
                            "deleted) and start a new one.")] = False,
    repo: RepoOpt = None,
) -> None:
    """Run the BentoML service locally on the model of a version or stage.

    The inference log is checked first: a damaged one stops start-up with the fix.
    """
    from loopline.serving.spec import prepare_run

    root, params = _context(repo)
    run = prepare_run(root, params, ref, shadow=shadow, port=port, host=host, workers=workers,
                      log_path=str(Path(log).resolve()) if log else None)
    if dry_run:
        typer.echo(json.dumps(run.spec, indent=2))
        return
    if run.spec["log"]["enabled"]:
        _open_log(run, log_reset)
    entry = run.spec["model"]
    typer.echo(f"serving {params.artifact} {entry['version']} ({entry['source']}, sha256 "
               f"{entry['sha256'][:12]}) on {run.url}; inference log {run.spec['log']['path']}",
               err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, run.argv, run.env)


def _open_log(run, reset: bool) -> None:  # noqa: ANN001
    """Check the inference log once, before the server processes open it (BadLog: one line)."""
    from loopline.serving.log_check import CHECKED_ENV, open_log
    from loopline.serving.spec import LOG_ENV

    state = open_log(os.environ.get(LOG_ENV) or run.spec["log"]["path"], reset=reset)
    for moved in state["moved_aside"]:
        typer.echo(f"moved {moved.rsplit('.', 2)[0]} aside to {moved}", err=True)
    if state["replayed"]:
        typer.echo(f"replayed {state['replayed']} spooled rows into {state['path']}", err=True)
    if state["unreadable"]:
        typer.echo(f"warning: {state['unreadable']} spooled rows were unreadable (cut short "
                   f"by a crash) and are lost", err=True)
    run.env[CHECKED_ENV] = state["path"]


def reload(
    ref: Annotated[str | None, typer.Argument(
        help="The stage or version to switch to (default: what the service was started with).")] = None,
    url: Annotated[str, typer.Option("--url", help="The service.")] = "http://127.0.0.1:3000",
    token_env: Annotated[str, typer.Option(
        "--token-env", help="Environment variable holding the admin token.")] = "LOOPLINE_ADMIN_TOKEN",
    as_json: JsonOpt = False,
) -> None:
    """Tell a running service to switch to the version now assigned (after promote/rollback)."""
    from loopline.serving.reload import request_reload

    res = request_reload(url, ref, token_env)
    if not res.done:
        raise LooplineError(res.message)
    typer.echo(json.dumps(res.body) if as_json else res.message)


def build(
    ref: RefArg = None,
    shadow: ShadowOpt = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Build the Bento ARTIFACT-service:VERSION with the model of VERSION pinned in it."""
    from loopline.serving import bento
    from loopline.serving.spec import resolve_models

    root, params = _context(repo)
    entry, shadow_entry = resolve_models(root, params, ref, shadow)
    res = bento.build(root, params, entry, shadow_entry)
    typer.echo(json.dumps(res) if as_json else
               f"built Bento {res['bento']} (model {res['model']}, sha256 {res['sha256'][:12]})")


def containerize(
    ref: RefArg = None,
    backend: Annotated[str, typer.Option(
        "--backend", help="auto (Docker if a daemon answers, else buildah), docker or buildah.")] = "auto",
    base: Annotated[str | None, typer.Option(
        "--base", help="Base image for buildah (default serve.image_base).")] = None,
    opt: Annotated[list[str] | None, typer.Option(
        "--opt", help="Extra option for the builder, KEY=VALUE (repeatable).")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Build the Bento of VERSION (if needed) and its OCI image ARTIFACT:VERSION."""
    from loopline.serving import bento
    from loopline.serving.spec import resolve_models

    if backend not in ("auto", "docker", "buildah"):
        raise LooplineError(f"--backend must be auto, docker or buildah, not {backend!r}", exit_code=2)
    root, params = _context(repo)
    backend = bento.pick_backend(backend)  # no builder: say so before building the Bento
    entry, shadow_entry = resolve_models(root, params, ref, None)
    built = bento.build(root, params, entry, shadow_entry)
    image = f"{params.artifact}:{entry['version']}"
    res = bento.containerize(built["bento"], image, backend=backend,
                             base=base or params.serve.image_base, opts=opt)
    res["model_version"] = entry["version"]
    typer.echo(json.dumps(res) if as_json else
               f"image {image} built with {res['backend']} from Bento {built['bento']}")


COMMANDS = {"serve": serve, "reload": reload, "build": build, "containerize": containerize}


def add_commands(app: typer.Typer) -> None:
    for name, fn in COMMANDS.items():
        app.command(name, cls=Command)(fn)
