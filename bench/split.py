"""The cost of a rollout's traffic split, side by side in one run, same model, 127.0.0.1.

    python bench/split.py [--rounds 6] [--duration 4]

Two `loopline serve` services run at once (2 workers each, inference log on): *plain*
serves the model alone; *canary* serves it with a rollout routing 50% of requests to a
candidate (a second copy of the model under another version). wrk (-t1 -c8, one record per
request) loads them in turn, round after round, so that both see the same machine; the
canary's requests name a caller key (the keyed hash, the dearer path). Also the in-process
cost of choosing the version, per request. Needs a model in models/ (`make run` makes one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, OUT, ROOT, Proc, free_port, sample_records, setup, wrk  # noqa: E402


def route_ns() -> dict[str, float]:
    """Nanoseconds per call of the split's choice, in-process."""
    from types import SimpleNamespace

    from loopline.serving.bundle import ServedVersion
    from loopline.serving.split import Split

    def version(v: str) -> ServedVersion:
        return ServedVersion(v, SimpleNamespace(sha256=v), [], {}, None)

    plain, canary = Split(version("v1")), Split(version("v1"), version("v2"), 50.0)
    rid, headers, n = uuid.uuid4().hex, {}, 200_000
    cases = {"no rollout": lambda: plain.route(None, headers, rid),
             "rollout, by request id": lambda: canary.route(None, headers, rid),
             "rollout, by caller key": lambda: canary.route("customer-42", headers, rid),
             "uuid4().hex (every request)": lambda: uuid.uuid4().hex}
    return {k: min(timeit.repeat(f, number=n, repeat=5)) / n * 1e9 for k, f in cases.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=4)
    args = ap.parse_args()
    tmp, env = setup("loopline-split-")
    record = sample_records(1)
    bodies = {"plain": json.dumps({"records": record}).encode(),
              "canary": json.dumps({"records": record, "key": "customer-42"}).encode()}
    procs: dict[str, Proc] = {}
    try:
        for name in ("plain", "canary"):
            spec = json.loads(subprocess.run(
                [str(BIN / "loopline"), "serve", "--dry-run", "--port", "1"], cwd=ROOT, env=env,
                capture_output=True, text=True, check=True).stdout)
            spec["log"]["path"] = str(tmp / f"{name}.sqlite")
            if name == "canary":
                spec["model"]["rollout"] = {**spec["model"], "version": "candidate",
                                            "share": 50.0, "tag": "bench#canary#1"}
            path = tmp / f"{name}.json"
            path.write_text(json.dumps(spec))
            port = free_port()
            procs[name] = Proc(f"split-{name}", [
                str(BIN / "bentoml"), "serve", "loopline.serving.service:LooplineService",
                "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}",
                {**env, "LOOPLINE_SERVE_SPEC": str(path)}, tmp,
                ("/predict", bodies[name])).wait()
        rps: dict[str, list[float]] = {"plain": [], "canary": []}
        print(f"{args.rounds} rounds, wrk -t1 -c8 -d{args.duration}s each, in turn:", flush=True)
        for i in range(args.rounds):
            order = ("plain", "canary") if i % 2 == 0 else ("canary", "plain")
            for name in order:
                res = wrk(procs[name].url + "/predict", bodies[name], connections=8,
                          duration=args.duration)
                rps[name].append(res["rps"])
            print(f"  round {i + 1}: plain {rps['plain'][-1]:6.0f}  canary "
                  f"{rps['canary'][-1]:6.0f} req/s", flush=True)
    finally:
        for p in procs.values():
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = {k: sum(v) / len(v) for k, v in rps.items()}
    per_round = sorted(c / p for p, c in zip(rps["plain"], rps["canary"], strict=True))
    ns = route_ns()
    print()
    for label, value in ns.items():
        print(f"{label:<32}{value:8.0f} ns per call")
    print()
    print(f"{'ratio':<50}{'value':>8}  target")
    print(f"{'canary split (50%, keyed) vs plain, req/s (mean)':<50}"
          f"{total['canary'] / total['plain']:>8.2f}  ≥ 0.9")
    print(f"{'  median of the rounds':<50}{per_round[len(per_round) // 2]:>8.2f}")
    (OUT / "split.json").write_text(json.dumps({"rps": rps, "route_ns": ns}, indent=2))


if __name__ == "__main__":
    main()
