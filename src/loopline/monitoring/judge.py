"""The judge of a rollout: is the active step's candidate fit for more traffic?

``loopline monitor`` reads the rollout under way (:mod:`loopline.registry.rollout`) and the
live log through the same reader as the rest of the monitor
(:mod:`loopline.serving.log_store`): the records of the candidate and of the champion since
the step started (the time of the step's canary tag), their feedback labels joined. The
decision is one of

- ``wait``: the step has fewer than ``min_records`` predictions or ``min_labels`` labels of the
  candidate (the reasons say how many are missing), or the evidence is not conclusive yet;
- ``advance``: every criterion of the plan is met; ``complete`` when that step is the last;
- ``abort``: a criterion is failed, with the reasons.

The criteria (``deploy.criteria``):

- **accuracy, non-inferior**: the candidate's live accuracy is no worse than the champion's by
  more than ``margin``, one-sided at ``confidence`` (see :func:`noninferiority`). Shown: the
  step may advance. The opposite shown (the candidate worse by more than the margin): abort.
  Neither: once the step's minimums are met, a candidate whose estimated difference is
  already past the margin is aborted (a faulty candidate does not get more traffic while
  evidence piles up; an equal one lands there with a chance of about 1% at the defaults);
  otherwise wait for more labels, up to :data:`PATIENCE` times ``min_labels``, then abort.
- **error rate** at most ``max_error_rate``: server errors (5xx) of the prediction routes
  among the requests routed to the candidate during the step (the service records a failure
  after routing under the version it was routed to). Client errors (4xx) are left out: a
  request is validated against the contract before it is routed, and both versions share
  one contract.
- **p99 latency** of the candidate's requests at most ``p99_ms`` (when set; per request, as the
  monitor's latency target counts it).

A step is judged once its minimums are met; before that it can only be aborted, and only on
evidence that is conclusive at the stricter level :func:`early` (repeated looks at a growing
sample would otherwise abort a good candidate more often than ``1 - confidence``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any

PATIENCE = 4  # an inconclusive step is aborted once it has this many times its minimum labels
SERVER_ERROR = 500


def z_of(confidence: float) -> float:
    """The one-sided normal quantile of ``confidence`` (1.6449 for 0.95)."""
    return NormalDist().inv_cdf(confidence)


def early(confidence: float) -> float:
    """The confidence an early look (before the step's minimums) needs to abort: the chance
    of being wrong divided by 10 (0.995 for 0.95), a Bonferroni bound over ~10 looks."""
    return 1.0 - (1.0 - confidence) / 10.0


@dataclass(frozen=True)
class NonInferiority:
    """The comparison of two accuracies: ``diff`` (candidate − champion, adjusted), its
    one-sided bounds ``lower`` and ``upper`` at the confidence asked, and the verdicts."""

    diff: float
    se: float
    lower: float
    upper: float
    margin: float

    @property
    def shown(self) -> bool:
        """Non-inferior: the candidate is worse by less than ``margin`` (lower > −margin)."""
        return self.lower > -self.margin

    @property
    def inferior(self) -> bool:
        """Inferior: the candidate is worse by more than ``margin`` (upper < −margin)."""
        return self.upper < -self.margin

    def as_dict(self) -> dict[str, float]:
        return {"diff": self.diff, "se": self.se, "lower": self.lower, "upper": self.upper,
                "margin": self.margin}


def noninferiority(k_cand: int, n_cand: int, k_champ: int, n_champ: int, margin: float,
                   confidence: float) -> NonInferiority:
    """Non-inferiority of the candidate's accuracy (``k_cand`` right of ``n_cand``) to the
    champion's (``k_champ`` of ``n_champ``) within ``margin``, one-sided at ``confidence``.

    The test is the Agresti–Caffo interval for a difference of two proportions: add one
    success and one failure to each arm, ``p = (k + 1) / (n + 2)``, then the Wald interval
    ``diff ± z * sqrt(p_c (1 - p_c) / (n_c + 2) + p_0 (1 - p_0) / (n_0 + 2))`` with ``z`` the
    one-sided normal quantile of ``confidence``. Its coverage stays close to the nominal level
    for small samples and for accuracies near 0 or 1, where the plain Wald interval fails (it
    has zero width at an accuracy of 1). The candidate is non-inferior when the lower bound is
    above ``-margin`` (H0: candidate − champion ≤ −margin rejected at ``1 - confidence``), and
    inferior when the upper bound is below ``-margin``.
    """
    p_c = (k_cand + 1) / (n_cand + 2)
    p_0 = (k_champ + 1) / (n_champ + 2)
    diff = p_c - p_0
    se = math.sqrt(p_c * (1 - p_c) / (n_cand + 2) + p_0 * (1 - p_0) / (n_champ + 2))
    z = z_of(confidence)
    return NonInferiority(diff, se, diff - z * se, diff + z * se, margin)


def wilson_lower(k: int, n: int, confidence: float) -> float:
    """The one-sided lower Wilson bound of a proportion ``k / n`` at ``confidence`` (0 when
    ``n`` is 0): the error rate is above it with that confidence."""
    if n == 0:
        return 0.0
    z = z_of(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def parse_time(iso: str | None) -> float | None:
    """Unix time of a registry time (``2024-05-01T12:00:00Z``)."""
    if not iso:
        return None
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _arm(df: Any) -> dict[str, Any]:
    """Records, requests, labels, right answers and p99 latency of one version's records."""
    import numpy as np

    labelled = df[df["label"].notna()]
    right = int((labelled["prediction"].astype(str) == labelled["label"].astype(str)).sum())
    lat = df.drop_duplicates("request_id")["latency_ms"].to_numpy(dtype=float)  # per request
    return {"records": int(len(df)), "requests": int(df["request_id"].nunique()),
            "labels": int(len(labelled)), "correct": right,
            "accuracy": right / len(labelled) if len(labelled) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
            "last_label_at": float(labelled["label_ts"].max()) if len(labelled) else None}


def judge(rollout: dict, frame: Any, errors: Any, *, now: float | None = None,
          champion_frame: Any = None) -> dict[str, Any]:
    """The decision on ``rollout``'s active step (pure: no I/O).

    Args:
        rollout: :func:`loopline.registry.rollout.describe` of the canary tag (plan, step,
            versions, ``updated``: when the step started).
        frame: the log's records since the step started (``read_predictions``' frame).
        errors: the log's request errors since then (None: an old log without them).
        now: the time of the decision (default now).
        champion_frame: the champion's records to compare with when the step itself has
            too few of them (since the rollout started); default ``frame``.
    """
    now = time.time() if now is None else now
    plan = rollout.get("plan") or {}
    crit = plan.get("criteria") or {}
    margin, conf = float(crit.get("margin", 0.02)), float(crit.get("confidence", 0.95))
    max_err, p99_ms = float(crit.get("max_error_rate", 0.01)), crit.get("p99_ms")
    min_records, min_labels = int(plan.get("min_records", 1000)), int(plan.get("min_labels", 200))
    cand_v, champ_v = rollout["version"], rollout["champion"]
    cand = _arm(frame[frame["model_version"] == cand_v])
    champ_src = frame if champion_frame is None else champion_frame
    champ = _arm(champ_src[champ_src["model_version"] == champ_v])
    last = rollout["step"] == len(rollout["steps"])
    out: dict[str, Any] = {
        "version": cand_v, "champion": champ_v, "step": rollout["step"],
        "steps": len(rollout["steps"]), "share": rollout["share"], "tag": rollout["tag"],
        "since": parse_time(rollout.get("updated")), "at": now,
        "candidate": cand, "champion_records": champ,
        "minimums": {"records": min_records, "labels": min_labels}}
    ready = cand["records"] >= min_records and cand["labels"] >= min_labels
    abort: list[str] = []
    wait: list[str] = []
    passed: list[str] = []
    if not ready:
        miss = []
        if cand["records"] < min_records:
            miss.append(f"{min_records - cand['records']} more predictions "
                        f"({cand['records']} of {min_records})")
        if cand["labels"] < min_labels:
            miss.append(f"{min_labels - cand['labels']} more labels "
                        f"({cand['labels']} of {min_labels})")
        wait.append(f"step {rollout['step']} needs {' and '.join(miss)} of {cand_v}")
    level = conf if ready else early(conf)

    # errors: the candidate's 5xx of prediction routes during the step
    if errors is not None:
        failed = errors[(errors["status"] >= SERVER_ERROR) & (errors["route"] != "/feedback")
                        & (errors["model_version"] == cand_v)]
        total = cand["requests"] + len(failed)
        rate = len(failed) / total if total else None
        out["error_rate"] = rate
        if total:
            text = (f"error rate {rate:.2%} ({len(failed)} of {total} requests routed to "
                    f"{cand_v} failed with 5xx during the step; at most {max_err:.2%})")
            if (ready and rate > max_err) or wilson_lower(len(failed), total, level) > max_err:
                abort.append(text)
            elif ready:
                passed.append(text)

    # accuracy: candidate non-inferior to the champion within the margin
    if min_labels == 0 and cand["labels"] == 0:
        passed.append("accuracy not judged (min_labels is 0 and no labels arrived)")
    elif cand["labels"] and champ["labels"]:
        ni = noninferiority(cand["correct"], cand["labels"], champ["correct"], champ["labels"],
                            margin, level)
        out["test"] = {**ni.as_dict(), "confidence": level}
        text = (f"accuracy {cand['accuracy']:.3f} on {cand['labels']} labels vs "
                f"{champ_v}'s {champ['accuracy']:.3f} on {champ['labels']}: difference "
                f"{ni.diff:+.3f}, {level:.1%} bounds [{ni.lower:+.3f}, {ni.upper:+.3f}], "
                f"margin -{margin:g}")
        if ni.inferior:
            abort.append(f"worse than the champion by more than the margin: {text}")
        elif ready and ni.shown:
            passed.append(f"non-inferior: {text}")
        elif ready and ni.diff < -margin:
            abort.append(f"worse than the champion by more than the margin at the step's "
                         f"minimum: {text}")
        elif ready and cand["labels"] >= PATIENCE * max(min_labels, 1):
            abort.append(f"not shown non-inferior after {cand['labels']} labels "
                         f"({PATIENCE}x the minimum): {text}")
        elif ready:
            wait.append(f"inconclusive, more labels needed: {text}")
    elif ready:
        wait.append(f"no labelled records of the champion {champ_v} to compare with")

    # latency
    if p99_ms is not None and ready and cand["p99_ms"] is not None:
        text = f"p99 latency {cand['p99_ms']:.1f} ms (at most {float(p99_ms):g} ms)"
        (abort if cand["p99_ms"] > float(p99_ms) else passed).append(text)

    if abort:
        decision, reasons = "abort", abort
    elif wait or not ready:
        decision, reasons = "wait", wait
    else:
        decision, reasons = ("complete" if last else "advance"), passed
    out.update(decision=decision, reasons=reasons, passed=passed)
    labels_at = [a["last_label_at"] for a in (cand, champ) if a["last_label_at"] is not None]
    out["last_label_at"] = max(labels_at) if labels_at else None
    return out


def evaluate(root: Any, source: Any, *, now: float | None = None) -> dict[str, Any] | None:
    """The decision on the rollout under way at ``root`` from the log ``source`` (a
    :class:`loopline.serving.log_store.LogSource`), or None when no rollout is under way."""
    from loopline.core.errors import LooplineError
    from loopline.registry.rollout import active
    from loopline.registry.tags import open_registry

    try:
        cur = active(open_registry(root))
    except LooplineError:  # not a registry (e.g. serving a local export): nothing to judge
        return None
    if cur is None:
        return None
    if cur["step"] is None or not cur["steps"]:
        return {"version": cur["version"], "tag": cur["tag"], "decision": "wait",
                "reasons": [f"{cur['tag']} records no rollout plan: `loopline rollout abort` it"]}
    since = parse_time(cur["updated"])
    frame = source.predictions(since=since, until=now)
    errors = source.request_errors(since=since, until=now)
    plan = cur.get("plan") or {}
    champ = frame[frame["model_version"] == cur["champion"]]
    wanted = max(int(plan.get("min_labels", 200)), 1)
    champion_frame = None
    if champ["label"].notna().sum() < wanted and cur["started"] != cur["updated"]:
        champion_frame = source.predictions(since=parse_time(cur["started"]), until=now)
    return judge(cur, frame, errors, now=now, champion_frame=champion_frame)


def describe(j: dict[str, Any]) -> str:
    """One line for the monitor table: the decision, the step and the first reason."""
    head = (f"rollout of {j['version']} (step {j.get('step')}/{j.get('steps')}, "
            f"{j.get('share') or 0:g}% of traffic): {j['decision'].upper()}")
    reasons = j.get("reasons") or []
    return head + (f" - {'; '.join(reasons)}" if reasons else "")
