"""``loopline log`` on the command line (cli/monitoring.py): table, CSV, JSON, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from loopline.serving.inference_log import InferenceLog
from tests.helpers.commands import loopline


def _log(path: Path, n: int) -> Path:
    w = InferenceLog(path, flush_interval=0.01)
    now = time.time()
    for i in range(n):
        w.predictions(f"r{i:03d}", now - 60 + i * 0.1, "v1", [{"City name": "Zürich", "x": i}],
                      np.array(["yes" if i % 2 else "no"], dtype=object),
                      np.array([[0.4, 0.6] if i % 2 else [0.8, 0.2]]), ["no", "yes"], 1.0)
    w.feedback([(f"r{i:03d}", 0, "yes") for i in range(n)], now)
    w.close()
    return path


def test_log_prints_csv_json_and_a_cut_table(tmp_path: Path) -> None:
    log = _log(tmp_path / "inference.sqlite", 30)
    out = loopline("log", "--log", str(log), "--wrong", "--csv", "-c", "request_id,City name",
                   cwd=tmp_path).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 15 and rows[0] == {"request_id": "r000", "City name": "Zürich"}
    doc = json.loads(loopline("log", "--log", str(log), "--by", "prediction", "--json",
                              cwd=tmp_path).stdout)
    assert {d["prediction"]: d["accuracy"] for d in doc} == {"no": 0.0, "yes": 1.0}
    table = loopline("log", "--log", str(log), cwd=tmp_path).stdout
    assert "first 20 rows" in table and "r019" in table and "r020" not in table


def test_log_errors_are_one_line(tmp_path: Path) -> None:
    log = _log(tmp_path / "inference.sqlite", 2)
    res = loopline("log", "--log", str(log), "--where", "nope > 1", cwd=tmp_path, check=False)
    assert res.returncode == 1 and res.stderr.startswith("error: --where:")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    res = loopline("log", "--log", str(log), "--csv", "--json", cwd=tmp_path, check=False)
    assert res.returncode == 2 and "choose one of --csv and --json" in res.stderr
