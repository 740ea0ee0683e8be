"""Schemathesis against `loopline serve`'s OpenAPI document, for as long as asked.

    python bench/schemathesis_serving.py [--max-time 600] [--checks all] [--repo DIR]

Serves the model of an instance (default this one; `make run` makes its model) on a free
port of 127.0.0.1, runs `schemathesis run <url>/docs.json` for ``--max-time`` seconds with
the admin token, then prints the test cases generated, the failures by check, the answers
with a 5xx status counted from the service's access log, and whether the server still
answers a good request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "schemathesis-admin-token"
RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
          "Records": "no", "Job": "freelance", "Expenses": 73, "Income": 129.0,
          "Assets": 0.0, "Debt": 0.0, "Amount": 800, "Price": 846}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-time", type=int, default=600)
    ap.add_argument("--checks", default="all")
    ap.add_argument("--workers", default="1")
    ap.add_argument("--repo", type=Path, default=ROOT)
    args = ap.parse_args()
    if not (args.repo / "models" / "model.onnx").is_file():
        raise SystemExit(f"no model in {args.repo / 'models'}: run `make run` first")
    work = Path(tempfile.mkdtemp(prefix="loopline-schemathesis-"))
    port = free_port()
    env = {**os.environ, "LOOPLINE_ADMIN_TOKEN": TOKEN, "BENTOML_HOME": str(work / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True"}
    out = open(work / "server.out", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([str(BIN / "loopline"), "serve", "--port", str(port),
                             "--log", str(work / "inference.sqlite"), "--repo", str(args.repo)],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start; see {work / 'server.out'}")
            time.sleep(0.5)
        start = time.monotonic()
        res = subprocess.run([str(BIN / "schemathesis"), "run", f"{url}/docs.json",
                              "--checks", args.checks, "--max-time", str(args.max_time),
                              "-w", args.workers, "-H", f"Authorization: Bearer {TOKEN}"],
                             capture_output=True, text=True, env=env)
        took = time.monotonic() - start
        alive = httpx.post(f"{url}/predict", json={"records": [RECORD]}).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        out.close()
    (work / "schemathesis.out").write_text(res.stdout + res.stderr)
    access = (work / "server.out").read_text(errors="replace")
    statuses = re.findall(r"\(status=(\d{3}),", access)
    five = sum(s.startswith("5") for s in statuses)
    generated = re.search(r"(\d+) generated", res.stdout)
    failures = re.findall(r"❌ (ST\d+ [^:]+): (\d+)", res.stdout)
    print(f"schemathesis {args.max_time}s budget, checks {args.checks}: ran {took:.0f}s, "
          f"{generated.group(1) if generated else '?'} test cases, {len(statuses)} requests "
          f"answered, {five} answered 5xx, server alive after: {alive}")
    for name, n in failures:
        print(f"  {name}: {n}")
    print(f"full output: {work / 'schemathesis.out'}; access log: {work / 'server.out'}")
    shutil.rmtree(work / "bentoml", ignore_errors=True)


if __name__ == "__main__":
    main()
