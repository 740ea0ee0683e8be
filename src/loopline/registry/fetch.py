"""``loopline get``: the model files of a version or stage, as verified copies.

The objects' md5s come from dvc.lock at the version's commit; they are copied from the local
DVC cache, else streamed from the DVC remote at that commit, and always verified. ``dvc.api``
is imported only when an object is missing from the local cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from loopline.core.dvc import cache_paths, lock_md5, lock_outs
from loopline.core.errors import LooplineError
from loopline.core.files import md5_file
from loopline.core.git import show
from loopline.core.layout import CARD_JSON, DVC_LOCK, MODEL_ONNX
from loopline.registry.settings import load_layout
from loopline.registry.tags import open_registry


def _copy_verified(src: Path, dest: Path, md5: str) -> bool:
    """Copy ``src`` to a temp file next to ``dest``; rename it there if its md5 matches."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        if md5_file(tmp) != md5:
            return False
        os.replace(tmp, dest)
        return True
    except OSError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_from_remote(root: Path, commit: str, rel: str, dest: Path, md5: str) -> str | None:
    """Stream ``rel`` at ``commit`` from the DVC remote into ``dest``; the error, or None."""
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        import dvc.api

        with (dvc.api.open(rel, repo=str(root), rev=commit, mode="rb") as src,
              open(tmp, "wb") as out):
            shutil.copyfileobj(src, out, 1 << 20)
        if md5_file(tmp) != md5:
            return f"the remote copy of {rel} does not match md5 {md5}"
        os.replace(tmp, dest)
        return None
    except Exception as err:  # dvc raises many types; report the first line
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    finally:
        tmp.unlink(missing_ok=True)


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
    dest_dir = Path(out_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    written, sources = {}, {}
    for name in (MODEL_ONNX, CARD_JSON):
        rel = f"{models}/{name}"
        md5 = lock_md5(outs, rel, f"at {v.tag}")
        dest = dest_dir / name
        if any(p.is_file() and _copy_verified(p, dest, md5) for p in cache_paths(base, md5)):
            sources[name] = "cache"
        else:
            err = _fetch_from_remote(base, v.commit, rel, dest, md5)
            if err is not None:
                raise LooplineError(f"{rel} of {v.tag} (md5 {md5}) is not in the DVC cache and "
                                    f"cannot be fetched from the DVC remote: {err}")
            sources[name] = "remote"
        written[name] = str(dest)
    return {"artifact": reg.settings.artifact, "version": v.version, "tag": v.tag,
            "commit": v.commit, "files": written, "source": sources}
