"""Registry commands of the ``loopline`` CLI: register, promote, rollback, which, history, get.

``add_commands(app)`` adds them to a Typer app. This module imports only typer and the
standard library at import time; :mod:`loopline.registry` (itself light) is imported when
a command runs, and rich only for the history table. User errors are
:class:`~loopline.core.errors.LooplineError` one-liners that name the bad ref.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
RepoOpt = Annotated[Path | None, typer.Option(
    "--repo", "-C", help="Repository (default: the current one).")]
PushOpt = Annotated[str | None, typer.Option(
    "--push", metavar="REMOTE", help="Push the new tag to REMOTE (git push --atomic); on failure "
                                     "the local tag is removed.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Override a failed gate (needs --reason).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", help="Why the gate is overridden (recorded).")]


def _emit(doc: dict | list, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(doc, default=str) if as_json else text)


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
    from loopline.registry import actions as registry

    res = registry.register(repo, bump=bump, version=version, push=push, force=force, reason=reason)
    gate = res["metadata"]["gate"]["verdict"]
    forced = " (gate failed: forced)" if res["metadata"]["forced"] else ""
    _emit(res, as_json, f"registered {res['tag']} at {res['commit'][:12]} "
                        f"(gate {gate}){forced}{_pushed(res)}")


def promote(
    version: Annotated[str, typer.Argument(help="The version, e.g. v0.3.0, or HEAD (the version of the checked-out commit).")],
    to: Annotated[str, typer.Option("--to", help="The stage, e.g. prod.")],
    force: ForceOpt = False,
    reason: ReasonOpt = None,
    push: PushOpt = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Assign a version to a stage (a new tag ARTIFACT#STAGE#N)."""
    from loopline.registry import actions as registry

    res = registry.promote(version, to, root=repo, force=force, reason=reason, push=push)
    if not res["created"]:
        text = (f"{res['version']} is already current in {res['stage']} ({res['tag']}): "
                "nothing to do")
    else:
        forced = f" (forced: {res['reason']})" if res["forced"] else ""
        text = f"promoted {res['version']} to {res['stage']} ({res['tag']}){forced}{_pushed(res)}"
    _emit(res, as_json, text)


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
    from loopline.registry import actions as registry

    res = registry.rollback(stage, to=to, root=repo, force=force, reason=reason, push=push)
    forced = f" (forced: {res['reason']})" if res["forced"] else ""
    _emit(res, as_json, f"rolled {res['stage']} back from {res['previous']} to {res['version']} "
                        f"({res['tag']}){forced}{_pushed(res)}")


def which(
    stage: Annotated[str, typer.Argument(help="The stage, e.g. prod.")],
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Print the version currently assigned to a stage (exit 1 if none)."""
    from loopline.registry import actions as registry

    res = registry.which(stage, root=repo)
    _emit(res, as_json, str(res["version"]))


def history(
    stage: Annotated[str | None, typer.Option(
        "--stage", help="Only this stage's assignments.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", help="Show the newest N events.")] = None,
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Audit timeline, newest first: registrations, promotions, rollbacks, forced, deleted."""
    from loopline.registry import actions as registry

    events = registry.history(repo, stage=stage)
    if limit is not None:
        events = events[:max(limit, 0)]
    if as_json:
        typer.echo(json.dumps(events, default=str))
        return
    _print_history(events)


def _print_history(events: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: one line per event, never wrapped
        console = Console(highlight=False, width=240)
    if not events:
        console.print("no registry events yet (run `loopline register`)")
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("when (UTC)", "event", "version", "stage", "tag", "gate", "who"):
        table.add_column(col, no_wrap=True)
    table.add_column("note")
    for e in events:
        event = e["event"] + (" (forced)" if e["forced"] else "")
        style = "red" if e["forced"] or e["event"] == "deleted" else None
        table.add_row((e["time"] or "-").replace("T", " ").rstrip("Z"), event, e["version"] or "-",
                      e["stage"] or "-", e["tag"], e["gate"] or "-", e["who"] or "-",
                      e["reason"] or "", style=style)
    console.print(table)


def get(
    version: Annotated[str, typer.Argument(help="A version (v0.3.0) or a stage (prod).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write into.")],
    as_json: JsonOpt = False,
    repo: RepoOpt = None,
) -> None:
    """Write DIR/model.onnx and DIR/card.json of a version, from the DVC cache or remote."""
    from loopline.registry import fetch

    res = fetch.get(version, output, root=repo)
    src = "/".join(sorted(set(res["source"].values())))
    _emit(res, as_json, f"wrote {res['files']['model.onnx']} and {res['files']['card.json']} "
                        f"({res['tag']}, from {src})")


# ------------------------------------------------- Typer coercion without pydantic

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


def _to_bool(value: object) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(value)


_PLAIN_TYPES = {str: str, int: int, Path: Path, bool: _to_bool}


class _PlainParam:
    """Coerce a str, int, Path or bool parameter without pydantic (Typer's RuntimeParam API)."""

    def __init__(self, annotation: type) -> None:
        self.annotation = annotation
        self.convert = _PLAIN_TYPES[annotation]

    def coerce(self, value, param=None, ctx=None):  # noqa: ANN001, ANN201 (Typer's signature)
        if value is None or type(value) is self.annotation:
            return value
        try:
            return self.convert(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{value!r} is not a valid {self.annotation.__name__}",
                                     ctx=ctx, param=param) from None


def _plain_coercion(params: list) -> None:
    """Give str/int/Path/bool parameters a coercion that does not import pydantic.

    Typer 0.2x coerces every parameter value that is not already a bool through a pydantic
    TypeAdapter, including the help option's None on every run, so every command imports
    pydantic (~0.1 s, a third of the time budget of ``loopline which``). Parameters of
    other types, and Typer versions without ``_runtime_param``, keep Typer's own coercion.
    """
    for p in params:
        desc = getattr(p, "type_descriptor", None)
        if getattr(p, "_runtime_param", "absent") is None and _is_plain(desc):
            p._runtime_param = _PlainParam(desc.annotation)


def _is_plain(desc: object) -> bool:
    """A parameter with no file, choice, range or path checks for Typer to apply."""
    info = getattr(desc, "parameter_info", None)
    checks = ("exists", "resolve_path", "writable", "allow_dash")
    return (getattr(desc, "annotation", None) in _PLAIN_TYPES and info is not None
            and not desc.is_file and not desc.is_choice and not desc.is_ranged
            and not any(getattr(info, c, False) for c in checks))


class _PlainHelp:
    """Mixin: :func:`_plain_coercion` of a command's parameters and of its help option."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        _plain_coercion(self.params)

    def get_help_option(self, ctx):  # noqa: ANN001, ANN201
        option = super().get_help_option(ctx)
        _plain_coercion([option] if option is not None else [])
        return option


class _Command(_PlainHelp, TyperCommand):
    """A Typer command whose plain parameters skip Typer's pydantic coercion."""


class _Group(_PlainHelp, TyperGroup):
    """A Typer group whose own options (--help, --verbose …) skip pydantic coercion."""


COMMANDS = {"register": register, "promote": promote, "rollback": rollback, "which": which,
            "history": history, "get": get}


def add_commands(app: typer.Typer) -> None:
    """Add the registry commands to ``app`` (the ``loopline`` Typer app).

    If ``app`` uses Typer's default group class, it also gets :class:`_Group`, so that the
    group's own options (``--help``, ``--verbose``, ``--version``) do not import pydantic
    on every command (see :func:`_plain_coercion`); behaviour is otherwise unchanged.
    """
    for name, fn in COMMANDS.items():
        app.command(name, cls=_Command)(fn)
    cls = getattr(app.info, "cls", None)
    if not isinstance(cls, type):  # unset (Typer's Default placeholder): the default group
        app.info.cls = _Group
