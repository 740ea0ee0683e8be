"""`loopline simulate`: the whole loop on a sandboxed copy of the instance."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from tests.helpers.commands import loopline, sh


def test_simulate_runs_the_whole_loop_and_history_ends_with_the_rollback(instance: Path,
                                                                         tmp_path: Path) -> None:
    work = tmp_path / "sandbox"
    res = loopline("simulate", "--quick", "--seed", "0", "--workdir", str(work), "--json",
                   cwd=instance, check=False, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    statuses = doc["statuses"]
    kinds = [e["event"] for e in doc["events"]]
    # GREEN first; AMBER before the first retraining; the forced model caught and rolled back
    assert statuses[0] == "GREEN"
    first_retrain = next(e for e in doc["events"] if e["event"] == "retrained")
    assert "AMBER" in statuses[: first_retrain["step"]]
    assert statuses[first_retrain["step"] - 1] == "AMBER"
    forced = next(e for e in doc["events"] if e["event"] == "forced")
    rolled = next(e for e in doc["events"] if e["event"] == "rolled back")
    assert kinds.index("retrained") < kinds.index("forced") < kinds.index("rolled back")
    assert forced["version"] == doc["faulty_version"]
    assert rolled["step"] <= forced["step"] + doc["config"]["label_delay"] + 1
    last_good = [e for e in doc["events"] if e["event"] == "retrained" and e["step"] < forced["step"]]
    assert rolled["version"] == last_good[-1]["version"]
    assert "RED" in statuses[forced["step"] - 1:]
    # the registry's own record, as `loopline history` shows it (newest first)
    history = json.loads(loopline("history", "--stage", "prod", "--json", cwd=work).stdout)
    seq = [(e["event"], e["version"], e["forced"]) for e in reversed(history)]
    i = seq.index(("promote", doc["faulty_version"], True))
    assert seq[i + 1] == ("rollback", rolled["version"], False)
    assert seq[0] == ("promote", doc["first_version"], False)
    assert ("promote", first_retrain["version"], False) in seq[:i]
    # the report and the timeline
    page = Path(doc["report"]).read_text()
    assert '<svg id="auc"' in page and page.count('class="point"') == len(statuses)
    assert json.loads(Path(doc["timeline"]).read_text())["statuses"] == statuses
    assert (work / "reports" / "monitor.html").stat().st_size > 10_000  # Evidently's, last window
    # the instance itself is untouched
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=instance).stdout == ""
    assert not sh("git", "tag", cwd=instance).stdout.strip()
    shutil.rmtree(work, ignore_errors=True)
    assert math.isfinite(doc["seconds"])
