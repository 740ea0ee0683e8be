"""``loopline get``: the model files of a version or stage, as verified copies.

The objects' md5s come from dvc.lock at the version's commit; they are copied from the local
DVC cache, else streamed from the DVC remote at that commit, and always verified. ``dvc.api``
is imported only when an object is missing from the local cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from loopline.core.dvc import cache_paths, lock_md5, lock_outs
from loopline.core.errors import LooplineError
from loopline.core.files import NotWritten, copy_file, md5_file, write_atomic
from loopline.core.git import show
from loopline.core.layout import CARD_JSON, DVC_LOCK, MODEL_ONNX
from loopline.registry.settings import load_layout
from loopline.registry.tags import open_registry


def _md5_is(md5: str, what: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        if md5_file(tmp) != md5:
            raise NotWritten(what)
    return check


def _copy_verified(src: Path, dest: Path, md5: str) -> bool:
    """Copy ``src`` onto ``dest`` (a unique temp file next to it, renamed once its md5 matches)."""
    try:
        copy_file(src, dest, check=_md5_is(md5, str(src)))
        return True
    except (NotWritten, OSError):
        return False


def default_remote(root: Path) -> str | None:
    """The DVC remote ``dvc.api`` fetches from (``core.remote`` in .dvc/config[.local])."""
    for name in ("config.local", "config"):
        try:
            text = (root / ".dvc" / name).read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^\[core\][^\[]*?^\s*remote\s*=\s*(.+?)\s*$", text, re.M | re.S)
        if m:
            return m.group(1).strip("'\"")
    return None


def _fetch_from_remote(root: Path, commit: str, rel: str, dest: Path, md5: str) -> str | None:
    """Stream ``rel`` at ``commit`` from the DVC remote into ``dest``; the error, or None."""
    try:
        import dvc.api

        with dvc.api.open(rel, repo=str(root), rev=commit, mode="rb") as src:
            write_atomic(dest, chunks=iter(lambda: src.read(1 << 20), b""),
                         check=_md5_is(md5, rel))
        return None
    except NotWritten:
        return f"the remote copy of {rel} does not match md5 {md5}"
    except Exception as err:  # dvc raises many types; report the first line
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir``, created if needed; a file there (or no way to create it) is one error line."""
    dest = Path(out_dir)
    if dest.exists() and not dest.is_dir():
        raise LooplineError(f"--output {dest} is a file, not a directory: name a directory "
                            "(it is created if missing)")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LooplineError(f"cannot create the directory {dest}: "
                            f"{err.strerror or err}") from None
    return dest


def get(ref: str, out_dir: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None) -> dict:
    """Write ``out_dir/model.onnx`` and ``out_dir/card.json`` of a version or stage.

    The objects' md5s come from dvc.lock at the version's commit; they are copied from the
    local DVC cache, else fetched from the DVC remote at that commit, and always verified.

    Raises:
        LooplineError: unknown version or stage, or objects neither cached nor on the remote.
    """
    reg = open_registry(root)
    v = reg.resolve(ref)
    base = reg.settings.root
    models = load_layout(base).models
    lock = show(base, v.commit, DVC_LOCK)
    if lock is None:
        raise LooplineError(f"{v.tag} (commit {v.commit[:12]}) has no dvc.lock")
    outs = lock_outs(lock, f"dvc.lock at {v.tag}")
    dest_dir = _out_dir(out_dir)
    written, sources = {}, {}
    for name in (MODEL_ONNX, CARD_JSON):
        rel = f"{models}/{name}"
        md5 = lock_md5(outs, rel, f"at {v.tag}")
        dest = dest_dir / name
        cached = [p for p in cache_paths(base, md5) if p.is_file()]
        if any(_copy_verified(p, dest, md5) for p in cached):
            sources[name] = "cache"
            written[name] = str(dest)
            continue
        where = (f"the DVC cache copy of {rel} of {v.tag} ({cached[0]}) is corrupt (its md5 is "
                 f"not {md5})" if cached else f"{rel} of {v.tag} (md5 {md5}) is not in the DVC "
                 "cache")
        err = _fetch_from_remote(base, v.commit, rel, dest, md5)
        if err is not None and default_remote(base) is None:
            fix = (f"remove it (rm {cached[0]}), then `dvc pull` from a remote that has it "
                   "(dvc remote add -d NAME URL)" if cached else
                   "add a remote that has it (dvc remote add -d NAME URL) and `dvc pull`")
            raise LooplineError(f"{where}, and no DVC remote is configured to fetch it from: "
                                f"{fix}, or reproduce it (git checkout {v.tag} && dvc repro)")
        if err is not None:
            raise LooplineError(f"{where}, and it cannot be fetched from DVC remote "
                                f"{default_remote(base)!r}: {err}")
        sources[name] = "remote"
        written[name] = str(dest)
    return {"artifact": reg.settings.artifact, "version": v.version, "tag": v.tag,
            "commit": v.commit, "files": written, "source": sources}
