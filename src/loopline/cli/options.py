"""What every ``loopline`` command shares: its options, ``--verbose``, and its command class.

Imports only typer and the standard library, so that ``loopline --help`` stays instant.
:class:`Command` is the class of every command: its plain parameters skip Typer's pydantic
coercion (see :func:`plain_coercion`) and it accepts ``--verbose`` / ``-v`` after the
command's name as well as before it (``loopline run -v`` and ``loopline -v run``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
RepoOpt = Annotated[Path | None, typer.Option(
    "--repo", "-C", help="Repository (default: the current one).")]
Overrides = Annotated[list[str] | None, typer.Argument(
    help="Hydra overrides, e.g. model=rf search.n_iter=5 features.numeric_imputer=knn")]

# ------------------------------------------------------------------------ --verbose

# The stages that `loopline -v run` starts (in dvc's process or their own) inherit it.
VERBOSE_ENV = "LOOPLINE_VERBOSE"
VERBOSE_HELP = "Show tracebacks on errors."


def set_verbose(value: bool) -> None:
    """Turn on tracebacks for this process and the stages it starts (never off again)."""
    if value:
        os.environ[VERBOSE_ENV] = "1"


def verbose() -> bool:
    """Whether ``--verbose`` was given (here, or to the ``loopline`` that started us)."""
    return os.environ.get(VERBOSE_ENV) == "1"


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)]


@cache
def _verbose_option():  # noqa: ANN202 (a click option of Typer's own making)
    """``--verbose`` as an option of a command, built once by Typer from a declaration."""
    probe = typer.Typer()

    @probe.command()
    def _probe(verbose: Annotated[bool, typer.Option(  # noqa: ARG001
            "--verbose", "-v", help=VERBOSE_HELP, callback=set_verbose,
            expose_value=False)] = False) -> None:
        """Not a command: it only lends its option."""

    return typer.main.get_command(probe).params[0]


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


def plain_coercion(params: list) -> None:
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
    """Mixin: :func:`plain_coercion` of a command's parameters and of its help option."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        plain_coercion(self.params)

    def get_help_option(self, ctx):  # noqa: ANN001, ANN201
        option = super().get_help_option(ctx)
        plain_coercion([option] if option is not None else [])
        return option


class Command(_PlainHelp, TyperCommand):
    """A loopline command: plain parameters skip pydantic; ``--verbose`` after its name."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if not any("--verbose" in getattr(p, "opts", ()) for p in self.params):
            self.params.append(_verbose_option())
            plain_coercion(self.params[-1:])


class Group(_PlainHelp, TyperGroup):
    """The ``loopline`` group: its own options (--help, --verbose …) skip pydantic too."""
