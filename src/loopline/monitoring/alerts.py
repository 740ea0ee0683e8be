"""Alerts of ``loopline monitor``: a local file and a Slack-compatible webhook.

The webhook URL comes from the environment variable named by ``monitor.alerts.webhook_env``
and appears in no log, report or error message. A delivery that fails is retried with
backoff and then recorded as failed in the audit log; it never stops the monitor.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from loopline.config.operations import AlertConfig
from loopline.core.files import append_text

ICONS = {"GREEN": ":large_green_circle:", "AMBER": ":large_orange_circle:", "RED": ":red_circle:"}


def message(artifact: str, doc: dict, links: list[str]) -> dict:
    """The alert as a Slack message (``text`` plus blocks) and as plain fields."""
    status = doc["status"]
    lines = [f"{ICONS.get(status, '')} *{artifact}*: monitor status *{status}*"]
    lines += [f"• {r}" for r in doc["reasons"]]
    if links:
        lines.append("Reports: " + ", ".join(links))
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            "status": status, "reasons": doc["reasons"], "artifact": artifact, "links": links,
            "at": doc["generated_at"]}


def audit(path: Path, event: dict) -> None:
    append_text(path, json.dumps({"at": time.time(), **event}) + "\n")


def _post(url: str, body: dict, cfg: AlertConfig) -> tuple[bool, str, int]:
    import httpx

    error, attempts = "", 0
    for attempt in range(cfg.retries + 1):
        attempts = attempt + 1
        try:
            res = httpx.post(url, json=body, timeout=cfg.timeout)
            if res.status_code < 300:
                return True, "", attempts
            error = f"HTTP {res.status_code}"
            if 400 <= res.status_code < 500 and res.status_code != 429:
                break  # the receiver rejects it: retrying would not help
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            error = type(err).__name__  # never the URL: it is a secret
            if isinstance(err, httpx.InvalidURL):
                break
        if attempt < cfg.retries:
            time.sleep(min(0.5 * 2 ** attempt, 8.0))
    return False, error, attempts


def deliver(root: Path, cfg: AlertConfig, artifact: str, doc: dict, links: list[str],
            audit_path: Path) -> list[dict]:
    """Send the alert if the status calls for one; one outcome per channel (also audited)."""
    if doc["status"] not in cfg.statuses:
        return []
    msg = message(artifact, doc, links)
    outcomes: list[dict[str, Any]] = []
    if cfg.file:
        path = root / cfg.file
        append_text(path, json.dumps({k: msg[k] for k in ("at", "artifact", "status", "reasons",
                                                           "links")}) + "\n")
        outcomes.append({"channel": "file", "delivered": True, "path": cfg.file})
    url = (os.environ.get(cfg.webhook_env) or "").strip()
    if url:
        ok, error, attempts = _post(url, {"text": msg["text"], "blocks": msg["blocks"]}, cfg)
        outcomes.append({"channel": "webhook", "delivered": ok, "attempts": attempts,
                         **({"error": error} if error else {})})
    else:
        outcomes.append({"channel": "webhook", "delivered": False,
                         "error": f"{cfg.webhook_env} not set"})
    for o in outcomes:
        audit(audit_path, {"action": "alert", "status": doc["status"], **o})
    return outcomes
