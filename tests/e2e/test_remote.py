"""DVC remotes for a loopline instance: S3 (moto's S3 server on 127.0.0.1) and a local directory.

On a private copy of the built reference instance: push to the remote, empty the local cache
and delete the cached outputs, then get everything back with ``dvc pull`` and with
``dvc repro --pull`` (which must restore outputs without running any stage command), and
``loopline get`` a registered version whose objects are only on the remote.

Every dvc / loopline subprocess gets dummy AWS credentials and an environment that can reach
nothing but 127.0.0.1: no AWS config or credentials files, no instance-metadata lookups, and
HTTP(S)_PROXY pointing at a closed local port with only 127.0.0.1 exempt, so a request meant
for real AWS fails at the proxy instead of leaving the machine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import BIN
from tests.helpers.commands import sh
from tests.helpers.s3 import REMOTE_BUCKET as BUCKET
from tests.helpers.s3 import S3, add_s3_remote, local_only_env, moto_s3

# Cached (DVC-managed, git-ignored) outputs that must round-trip through every remote.
MUST_CACHE = {"data/raw/data.parquet", "data/prepared/train.parquet",
              "data/prepared/test.parquet", "models/model.joblib", "models/model.onnx",
              "models/card.json"}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3(BUCKET) as server:
        yield server


def dvc(*args: str, cwd: Path, env: dict[str, str], check: bool = True):
    return sh(str(BIN / "dvc"), *args, cwd=cwd, env=env, check=check, timeout=300)


def loopline_env(*args: str, cwd: Path, env: dict[str, str], check: bool = True):
    return sh(str(BIN / "loopline"), *args, cwd=cwd, env=env, check=check, timeout=300)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def lock_outs(root: Path) -> tuple[dict[str, str], list[str]]:
    """(cached outputs -> md5 from dvc.lock, uncached outputs) of the pipeline."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    in_git = set(sh("git", "ls-files", cwd=root).stdout.split())
    cached, uncached = {}, []
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in in_git:
                uncached.append(out["path"])
            else:
                cached[out["path"]] = out["md5"]
    assert set(cached) >= MUST_CACHE, sorted(cached)
    assert "reports/metrics.json" in uncached
    return cached, uncached


def drop_cache_and_outputs(root: Path, cached: dict[str, str]) -> None:
    shutil.rmtree(root / ".dvc" / "cache")
    for rel in cached:
        (root / rel).unlink()


def assert_restored(root: Path, cached: dict[str, str]) -> None:
    got = {rel: md5(root / rel) for rel in cached if (root / rel).is_file()}
    assert got == cached


# ------------------------------------------------------------------------------ S3


def test_s3_push_pull_and_repro_pull(built_copy: Path, s3: S3) -> None:
    root, env = built_copy, local_only_env()
    cached, uncached = lock_outs(root)
    add_s3_remote(root, s3, "store", env)
    config = (root / ".dvc" / "config").read_text()
    assert f"url = s3://{BUCKET}/store" in config and f"endpointurl = {s3.endpoint}" in config
    assert "testing" not in config  # credentials come from the environment only

    out = dvc("push", cwd=root, env=env).stdout
    assert f"{len(set(cached.values()))} files pushed" in out, out
    keys = set(s3.keys("store/"))
    assert {f"store/files/md5/{h[:2]}/{h[2:]}" for h in cached.values()} <= keys

    # dvc pull: an empty cache and no outputs come back byte for byte
    drop_cache_and_outputs(root, cached)
    dvc("pull", cwd=root, env=env)
    assert_restored(root, cached)
    assert dvc("status", cwd=root, env=env).stdout.strip() == "Data and pipelines are up to date."

    # dvc repro --pull: the same, and no stage command runs (uncached outputs untouched)
    drop_cache_and_outputs(root, cached)
    before = {rel: (root / rel).stat().st_mtime_ns for rel in uncached}
    res = dvc("repro", "--pull", cwd=root, env=env)
    text = res.stdout + res.stderr
    assert "Running stage" not in text, text
    assert "Pulling data for stage: 'train'" in text, text
    assert_restored(root, cached)
    assert {rel: (root / rel).stat().st_mtime_ns for rel in uncached} == before
    assert dvc("status", cwd=root, env=env).stdout.strip() == "Data and pipelines are up to date."
    # only the remote's configuration changed in the Git work tree
    assert sh("git", "status", "--porcelain", cwd=root).stdout.split() == ["M", ".dvc/config"]


def test_loopline_get_fetches_from_s3_when_the_cache_is_empty(built_copy: Path, s3: S3,
                                                             tmp_path: Path) -> None:
    root, env = built_copy, local_only_env()
    cached, _ = lock_outs(root)
    add_s3_remote(root, s3, "registry", env)
    sh("git", "commit", "-q", "-am", "DVC remote on S3", cwd=root)
    reg = json.loads(loopline_env("register", "--json", cwd=root, env=env).stdout)
    assert reg["version"] == "v0.1.0"

    # not pushed yet: with an empty cache, get fails and says why
    shutil.move(root / ".dvc" / "cache", tmp_path / "cache")
    res = loopline_env("get", "v0.1.0", "-o", str(tmp_path / "none"), cwd=root, env=env,
                       check=False)
    assert res.returncode == 1
    assert "is not in the DVC cache and cannot be fetched from the DVC remote" in res.stderr
    shutil.move(tmp_path / "cache", root / ".dvc" / "cache")

    dvc("push", cwd=root, env=env)
    shutil.rmtree(root / ".dvc" / "cache")
    out = tmp_path / "model"
    doc = json.loads(loopline_env("get", "v0.1.0", "-o", str(out), "--json", cwd=root,
                                  env=env).stdout)
    assert doc["tag"] == "credit-risk@v0.1.0"
    assert doc["source"] == {"model.onnx": "remote", "card.json": "remote"}
    assert md5(out / "model.onnx") == cached["models/model.onnx"]
    assert md5(out / "card.json") == cached["models/card.json"]
    assert not (root / ".dvc" / "cache" / "files").exists()  # streamed, not added to the cache


def test_get_uses_the_workspace_remote_and_local_secrets(built_copy: Path, s3: S3,
                                                         tmp_path: Path) -> None:
    """A remote and its keys only in .dvc/config.local (never committed): push and get work.

    The version's commit has no remote at all: DVC takes the remote of the work tree's
    configuration, not the one recorded at the version's commit.
    """
    root, env = built_copy, local_only_env(credentials=False)
    cached, _ = lock_outs(root)
    reg = json.loads(loopline_env("register", "--json", cwd=root, env=env).stdout)
    add_s3_remote(root, s3, "local-config", env, "--local")
    dvc("remote", "modify", "--local", "s3", "access_key_id", "testing", cwd=root, env=env)
    dvc("remote", "modify", "--local", "s3", "secret_access_key", "testing", cwd=root, env=env)
    assert sh("git", "status", "--porcelain", cwd=root).stdout == ""  # config.local is ignored
    assert "remote" not in (root / ".dvc" / "config").read_text()
    dvc("push", cwd=root, env=env)

    shutil.rmtree(root / ".dvc" / "cache")
    doc = json.loads(loopline_env("get", reg["version"], "-o", str(tmp_path / "m"), "--json",
                                  cwd=root, env=env).stdout)
    assert doc["source"] == {"model.onnx": "remote", "card.json": "remote"}
    assert md5(tmp_path / "m" / "model.onnx") == cached["models/model.onnx"]


# --------------------------------------------------------------------- local directory


def test_local_directory_remote_round_trip(built_copy: Path, tmp_path: Path) -> None:
    root, env = built_copy, local_only_env(credentials=False)
    cached, _ = lock_outs(root)
    store = tmp_path / "dvc-store"
    dvc("remote", "add", "-d", "local", str(store), cwd=root, env=env)
    out = dvc("push", cwd=root, env=env).stdout
    assert f"{len(set(cached.values()))} files pushed" in out, out
    assert {p.parent.name + p.name for p in (store / "files" / "md5").glob("*/*")} \
        == set(cached.values())

    drop_cache_and_outputs(root, cached)
    dvc("pull", cwd=root, env=env)
    assert_restored(root, cached)
    assert dvc("status", cwd=root, env=env).stdout.strip() == "Data and pipelines are up to date."
