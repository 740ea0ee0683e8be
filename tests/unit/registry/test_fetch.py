"""`loopline get` (registry/fetch.py): the right bytes, from the cache or the DVC remote."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.registry import actions as registry
from loopline.registry.fetch import get
from tests.helpers.registry_repo import Repo, cli, md5


def test_get_writes_the_right_bytes_and_fails_clearly(repo: Repo, tmp_path: Path) -> None:
    first = repo.register("a")["commit"]
    second = repo.register("b")["commit"]
    registry.promote("v0.1.0", "prod", root=repo.path)
    res = cli(repo.path, "get", "v0.2.0", "-o", str(tmp_path / "out2"), "--json")
    assert json.loads(res.stdout)["source"] == {"model.onnx": "cache", "card.json": "cache"}
    for name in ("model.onnx", "card.json"):
        assert (tmp_path / "out2" / name).read_bytes() == repo.files[second][name]
    get("prod", tmp_path / "out1", root=repo.path)
    assert (tmp_path / "out1" / "model.onnx").read_bytes() == repo.files[first]["model.onnx"]
    with pytest.raises(LooplineError, match=r"unknown version 'v9\.9\.9' of credit-risk"):
        get("v9.9.9", tmp_path / "out3", root=repo.path)
    with pytest.raises(LooplineError, match="no version assigned to staging"):
        get("staging", tmp_path / "out3", root=repo.path)
    onnx_md5 = md5(repo.files[first]["model.onnx"])
    cached = repo.path / ".dvc" / "cache" / "files" / "md5" / onnx_md5[:2] / onnx_md5[2:]
    cached.write_bytes(b"rot")
    # a corrupt cache copy and no remote: says both, and how to fix it
    with pytest.raises(LooplineError, match=rf"^the DVC cache copy of models/model\.onnx of "
                                            rf"credit-risk@v0\.1\.0 \({cached}\) is corrupt "
                                            rf"\(its md5 is not {onnx_md5}\), and no DVC remote "
                                            rf"is configured to fetch it from: remove it "
                                            rf"\(rm {cached}\), then `dvc pull`"):
        get("v0.1.0", tmp_path / "out4", root=repo.path)
    assert not (tmp_path / "out4" / "model.onnx").exists()
    cached.unlink()
    with pytest.raises(LooplineError, match=rf"^models/model\.onnx of credit-risk@v0\.1\.0 "
                                            rf"\(md5 {onnx_md5}\) is not in the DVC cache, and "
                                            "no DVC remote is configured to fetch it from: add "):
        get("v0.1.0", tmp_path / "out4", root=repo.path)


def test_get_never_writes_outside_its_directory(repo: Repo, tmp_path: Path) -> None:
    commit = repo.register("a")["commit"]
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    for name in ("model.onnx", "card.json"):  # planted links where a fixed temp name would be
        (out / f".{name}.tmp").symlink_to(outside / name)
    (out / "card.json").symlink_to(outside / "card-target.json")  # and at the target itself
    os.umask(0o022)
    get("v0.1.0", out, root=repo.path)
    assert list(outside.iterdir()) == []
    for name in ("model.onnx", "card.json"):
        path = out / name
        assert not path.is_symlink() and path.read_bytes() == repo.files[commit][name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the umask's mode, not mkstemp's
    res = cli(repo.path, "get", "v0.1.0", "-o", str(out / "model.onnx"))
    assert res.exit_code == 1 and str(res.exception).startswith(
        f"--output {out / 'model.onnx'} is a file, not a directory")


def test_get_fetches_from_the_dvc_remote_when_the_cache_lacks_the_objects(
        tmp_path: Path) -> None:
    pytest.importorskip("dvc.api")
    repo = Repo(tmp_path / "repo")
    store = tmp_path / "dvc-store"
    (repo.path / ".dvc" / "config").write_text(
        f"[core]\n    remote = store\n['remote \"store\"']\n    url = {store}\n")
    commit = repo.register("a")["commit"]
    (repo.path / ".dvc" / "cache").rename(store)  # "dvc push", then a clean cache
    res = get("v0.1.0", tmp_path / "out", root=repo.path)
    assert res["source"] == {"model.onnx": "remote", "card.json": "remote"}
    for name in ("model.onnx", "card.json"):
        assert (tmp_path / "out" / name).read_bytes() == repo.files[commit][name]
