"""The inference log when something is wrong with it, with the real commands.

Each kind of damage stops `loopline serve` (and a Bento's `bentoml serve`) at once with one
line naming the file and the fix, and no worker ever starts; `--log-reset` moves the bad
log aside and serves; spooled rows are replayed at start; `loopline monitor` refuses a
damaged log with one line and warns about spooled rows; a webhook it cannot reach costs
it nothing but a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loopline.serving import spool
from loopline.serving.inference_log import read_predictions
from tests.helpers import BIN
from tests.helpers.logs import DAMAGE, sound_log
from tests.helpers.server import Server, free_port

RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
          "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
          "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}


@pytest.fixture(scope="module")
def root(built_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("log") / "repo"
    shutil.copytree(built_instance, dest, symlinks=True)
    return dest


def run(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # the timeout is a guard against a server that loops, not a speed figure
    return subprocess.run([str(BIN / "loopline"), *args], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", list(DAMAGE))
def test_serve_refuses_a_damaged_log_with_one_line(name: str, root: Path, tmp_path: Path) -> None:
    path = sound_log(tmp_path / "logs" / "inference.sqlite", requests=50)
    damage, words = DAMAGE[name]
    damage(path)
    res = run(root, "serve", "--port", str(free_port()), "--log", str(path))
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert "--log-reset" in lines[0] and "Traceback" not in res.stderr + res.stdout
    assert path.exists() or path.parent.is_file()  # refused, never deleted


def test_a_bento_start_refuses_a_damaged_log_before_any_worker(root: Path, tmp_path: Path) -> None:
    spec = json.loads(run(root, "serve", "--dry-run", "--port", "1").stdout)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    path = sound_log(tmp_path / "inference.sqlite", requests=20)
    DAMAGE["garbled header"][0](path)
    res = subprocess.run([str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
                          "--port", str(free_port())], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "LOOPLINE_SERVE_SPEC": str(spec_path),
                              "LOOPLINE_INFERENCE_LOG": str(path)})
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"error: inference log {path} is damaged" in out and "Traceback" not in out
    assert "worker" not in out.lower()  # refused before any worker started


def test_log_reset_moves_it_aside_and_the_spool_is_replayed(root: Path) -> None:
    log = root / "logs" / "reset.sqlite"
    sound_log(log, requests=30)
    DAMAGE["garbled pages"][0](log)
    spooled = ("from-the-spool", 1.0, "v0", 1, json.dumps([RECORD]), '["good"]', "[[0.3, 0.7]]",
               '["bad", "good"]', 0.4, None, None, None)
    spool.append(log, {"requests": [spooled]})
    srv = Server(root, "--log-reset", log=log).wait_ready()
    try:
        res = srv.predict([RECORD])
        assert res.status_code == 200
    finally:
        text = srv.stop()
    aside = sorted(log.parent.glob("reset.sqlite.*.aside"))
    assert aside and f"aside to {aside[0]}" in text
    assert "replayed 1 spooled rows" in text
    ids = read_predictions(log)["request_id"].tolist()
    assert ids[0] == "from-the-spool" and res.json()["request_id"] in ids


def test_monitor_refuses_a_damaged_log_and_warns_about_spooled_rows(root: Path,
                                                                    tmp_path: Path) -> None:
    path = sound_log(tmp_path / "inference.sqlite", requests=20)
    DAMAGE["garbled pages"][0](path)
    res = run(root, "monitor", "--log", str(path), "--no-html")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: inference log {path} is damaged")

    good = sound_log(tmp_path / "good.sqlite", requests=20)
    spool.append(good, {"feedback": [("r1", 0, "bad", 1.0)]})
    res = run(root, "monitor", "--log", str(good), "--no-html", "--json")
    doc = json.loads(res.stdout)
    assert any("1 rows the service could not write" in w for w in doc["warnings"])
    assert "warning: 1 rows the service could not write" in res.stderr


def test_monitor_finishes_its_work_before_an_alert_it_cannot_send(root: Path,
                                                                   tmp_path: Path) -> None:
    path = sound_log(tmp_path / "inference.sqlite", requests=40)  # most features missing: RED
    url = "http://bad..host.example/hooks/SECRET-TOKEN"  # IDNA refuses it: UnicodeError
    res = run(root, "monitor", "--log", str(path), "--no-html", "--json", "--window", "1h",
              "--windows", "1", env={"LOOPLINE_ALERT_WEBHOOK": url})
    doc = json.loads(res.stdout)
    assert doc["status"] == "RED" and res.returncode == 4, res.stderr
    report = json.loads((root / "reports" / "monitor.json").read_text())
    assert report["status"] == "RED" and report["alerts"] == doc["alerts"]
    webhook = next(a for a in doc["alerts"] if a["channel"] == "webhook")
    assert webhook == {"channel": "webhook", "delivered": False, "attempts": 1,
                       "error": "invalid webhook URL (UnicodeError)"}
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert warnings == ["warning: alert not delivered by webhook: invalid webhook URL "
                        "(UnicodeError)"]
    for text in (res.stdout, res.stderr, (root / "reports" / "monitor.json").read_text(),
                 (root / "reports" / "monitor_audit.jsonl").read_text()):
        assert "SECRET-TOKEN" not in text and "bad..host" not in text
