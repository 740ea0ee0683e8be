"""Where ``loopline init`` finds the files an instance shares with the reference instance.

dvc.yaml, conf/config.yaml and the GitHub workflows exist once, at the root of loopline's
repository, where they run the reference instance (GitHub reads .github/workflows only
there, and from real files). A wheel carries copies of them under
``loopline/gitops/templates/``, made at build time by pyproject.toml's
``[tool.hatch.build.targets.wheel.force-include]`` (dvc.yaml as ``dvc.yaml.tmpl``: DVC
collects every dvc.yaml below a repository, an installed package's included). A source
checkout (an editable install) reads them where they are, so an edit there is what the
next ``loopline init`` copies. (Hatchling writes the copies into an editable install's
site-packages too, but outside the package that Python imports from the checkout: they are
never read.)
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from loopline.core.errors import LooplineError
from loopline.core.layout import CONF_DIR, CONF_NAME, DVC_YAML, WORKFLOWS_DIR

CONFIG_YAML = f"{CONF_DIR}/{CONF_NAME}.yaml"
TEMPLATES = "templates"  # the wheel's directory of copies, inside loopline.gitops
# An instance's path -> the copy's path under TEMPLATES (force-include makes the same map).
SHIPPED = {DVC_YAML: "dvc.yaml.tmpl", CONFIG_YAML: "conf/config.yaml",
           WORKFLOWS_DIR: "github/workflows"}
REQUIRED = (DVC_YAML, CONFIG_YAML)  # the workflows are optional


def locate() -> tuple[Traversable, dict[str, str]]:
    """The directory holding the shared files, and each one's path in it.

    Raises:
        LooplineError: neither a wheel's copies nor a source checkout are there.
    """
    packaged = files("loopline.gitops").joinpath(TEMPLATES)
    if packaged.joinpath(SHIPPED[DVC_YAML]).is_file():  # an installed wheel
        return packaged, SHIPPED
    import loopline

    checkout = Path(loopline.__file__).resolve().parents[2]  # <checkout>/src/loopline/
    if (checkout / "pyproject.toml").is_file() and (checkout / DVC_YAML).is_file():
        return checkout, {rel: rel for rel in SHIPPED}
    raise LooplineError(f"this loopline installation has no instance templates (no "
                        f"{packaged} and no source checkout): reinstall loopline")


def _files(node: Traversable, prefix: str) -> dict[str, bytes]:
    """The files below ``node`` by their path under ``prefix`` (hidden files left out)."""
    out: dict[str, bytes] = {}
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.startswith(".") or child.name == "__pycache__":
            continue
        if child.is_dir():
            out.update(_files(child, f"{prefix}/{child.name}"))
        else:
            out[f"{prefix}/{child.name}"] = child.read_bytes()
    return out


def shared_files(where: tuple[Traversable, dict[str, str]] | None = None) -> dict[str, bytes]:
    """The shared files by their path in an instance: dvc.yaml, conf/config.yaml and
    .github/workflows/*.yml (when there are workflows), as :func:`locate` finds them."""
    root, names = where or locate()
    out: dict[str, bytes] = {}
    for rel, name in names.items():
        node = root.joinpath(*name.split("/"))
        if node.is_dir():
            out.update(_files(node, rel))
        elif node.is_file():
            out[rel] = node.read_bytes()
        elif rel in REQUIRED:
            raise LooplineError(f"the instance template {name} is missing from {root}")
    return out
