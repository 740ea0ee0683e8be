"""The offline actions/cache of `loopline ci` (gitops/actions/cache), run by nektos/act: an
entry saved by one run is restored by the next on its key (or a restore key's prefix), never
overwritten, kept across runs in LOOPLINE_CI_CACHE, and dropped rather than restored when a
step changed it in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.gitops import ci
from tests.helpers.commands import sh

WORKFLOW = """\
name: cache
on: workflow_dispatch
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v5
      - id: cache
        uses: actions/cache/restore@v5
        with:
          path: |
            build
          key: build-${{ hashFiles('lock.txt') }}
          restore-keys: build-
      - name: build
        env:
          HIT: ${{ steps.cache.outputs.cache-hit }}
          MATCHED: ${{ steps.cache.outputs.cache-matched-key }}
          PRIMARY: ${{ steps.cache.outputs.cache-primary-key }}
        run: bash build.sh
      - uses: actions/cache/save@v5
        if: ${{ steps.cache.outputs.cache-hit != 'true' }}
        with:
          path: build
          key: ${{ steps.cache.outputs.cache-primary-key }}
"""
# What the restore gave (as a notice), then a build of what is missing: build/made keeps
# the lock of the run that made it
BUILD = """\
got=$(cat build/made 2>/dev/null || echo none)
echo "::notice::hit=${HIT:-unset} matched=${MATCHED:-none} primary=$PRIMARY got=$got"
mkdir -p build/deep
[ -f build/made ] || cp lock.txt build/made
[ -f build/deep/lock.txt ] || cp lock.txt build/deep/lock.txt
"""


def _commit(root: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=root)


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "cache.yml").write_text(WORKFLOW)
    (root / "build.sh").write_text(BUILD)
    (root / "lock.txt").write_text("lock-1\n")
    sh("git", "init", "-q", "-b", "main", cwd=root)
    _commit(root, "a workflow with a cache")
    monkeypatch.setenv("LOOPLINE_CI_CACHE", str(tmp_path / "cache"))
    return root


def got(res: dict) -> dict[str, str]:
    assert res["status"] == "passed", res
    line = next(n for n in res["notices"] if "hit=" in n)
    return dict(part.split("=", 1) for part in line.split(": ", 1)[1].split())


def test_saved_once_restored_by_key_then_by_prefix_and_dropped_when_changed(repo: Path) -> None:
    first = got(ci.run(repo, "cache", echo=False))
    assert first["hit"] == "unset" and first["got"] == "none"  # nothing saved yet

    assert ci.wait_background(120)  # after the run: its folder removed, a spare of the entry made
    cache = Path(os.environ["LOOPLINE_CI_CACHE"])
    assert list((cache.parent / "runs").iterdir()) == []
    (spare,) = cache.glob("*/*/spare/*")
    assert (spare / "build" / "made").stat().st_ino == next(
        cache.glob("*/*/files/ws/build/made")).stat().st_ino  # links, not copies

    second = ci.run(repo, "cache", echo=False)
    assert not spare.exists()  # taken by the restore (a rename), not linked file by file
    assert got(second) == {
        "hit": "true", "matched": first["primary"], "primary": first["primary"], "got": "lock-1",
    }
    saves = [s["outcome"] for s in second["steps"] if "save" in s["step"]]
    assert saves == ["skipped"]  # an exact hit saves nothing

    (repo / "lock.txt").write_text("lock-2\n")  # a new lock: the newest entry by prefix
    _commit(repo, "new lock")
    third = got(ci.run(repo, "cache", echo=False))
    assert third == {  # the old build, from the newest entry whose key has the prefix
        "hit": "false", "matched": first["primary"], "primary": third["primary"], "got": "lock-1",
    }
    assert third["primary"] != first["primary"]
    keys = {p.read_text(): p.parent for p in Path(os.environ["LOOPLINE_CI_CACHE"]).glob("*/*/key")}
    assert set(keys) == {first["primary"], third["primary"]}  # the new key saved its own
    assert (keys[third["primary"]] / "files/ws/build/made").read_text() == "lock-1\n"

    # restored files are hard links to the entry: one written in place spoils the entry,
    # which the next restore drops instead of handing it out (here: the older one matches)
    with (keys[third["primary"]] / "files/ws/build/made").open("a") as fh:
        fh.write("changed-in-place\n")
    fourth = ci.run(repo, "cache", echo=False)
    assert (keys[third["primary"]] / "files/ws/build/made").read_text() == "lock-1\n"  # saved anew
    assert any("changed in place" in n for n in fourth["notices"]), fourth["notices"]
    assert got(fourth) == {
        "hit": "false", "matched": first["primary"], "primary": third["primary"], "got": "lock-1",
    }


def test_cold_runs_see_no_entry(repo: Path) -> None:
    ci.run(repo, "cache", echo=False)
    assert got(ci.run(repo, "cache", echo=False))["hit"] == "true"
    assert got(ci.run(repo, "cache", echo=False, cold=True))["hit"] == "unset"


def test_prune_drops_least_recently_used_beyond_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cache"
    monkeypatch.setenv("LOOPLINE_CI_CACHE", str(root))
    for i, key in enumerate(["old", "new"]):
        entry = root / "v" / key
        (entry / "files").mkdir(parents=True)
        (entry / "key").write_text(key)
        (entry / "manifest").write_text(f"ws/big {600_000_000} 1.0\n")
        os.utime(entry / "manifest", (1000 + i, 1000 + i))
    assert ci.prune_cache(root, limit_gb=1.0) == ["old"]
    assert [p.name for p in (root / "v").iterdir() if not p.name.startswith(".")] == ["new"]
    assert ci.wait_background(60)  # out of sight at once, removed in the background
    assert [p.name for p in (root / "v").iterdir()] == ["new"]
