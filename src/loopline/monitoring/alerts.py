"""Alerts of ``loopline monitor``: a local file and a Slack-compatible webhook.

The webhook URL comes from the environment variable named by ``monitor.alerts.webhook_env``
and appears in no log, report or error message. A delivery that fails is retried with
backoff and then recorded as failed in the audit log; it never stops the monitor, which
sends alerts only once its own work (status, reports, actions) is done and written.
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
    for a in rollout_decisions(doc):
        lines.append(f"Rollout of {a['version']}: *{a['decision']}* at step {a['step']} "
                     f"({a.get('reason') or ''})")
    actions = doc.get("actions") or []  # done before the alert: it says what they did
    if actions:
        lines.append("Actions: " + ", ".join(
            f"{a['action']} ({'done' if a.get('done') else 'not done'})" for a in actions))
    if links:
        lines.append("Reports: " + ", ".join(links))
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            "status": status, "reasons": doc["reasons"], "artifact": artifact, "links": links,
            "at": doc["generated_at"]}


def rollout_decisions(doc: dict) -> list[dict]:
    """The rollout decisions the monitor carried out (advance, complete, abort)."""
    return [a for a in doc.get("actions") or [] if a.get("action") == "rollout" and a.get("done")]


def audit(path: Path, event: dict) -> None:
    append_text(path, json.dumps({"at": time.time(), **event}) + "\n")


def _post(url: str, body: dict, cfg: AlertConfig) -> tuple[bool, str, int]:
    """POST ``body``; ``(delivered, why not, attempts)``. Never raises, never names the URL
    (it is a secret): a URL that cannot be sent to (bad host name, scheme) is not retried."""
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
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as err:
            # ValueError: UnicodeError of a host name IDNA refuses, among others
            return False, f"invalid webhook URL ({type(err).__name__})", attempts
        except Exception as err:  # noqa: BLE001 - a notification is never fatal
            error = type(err).__name__
        if attempt < cfg.retries:
            time.sleep(min(0.5 * 2 ** attempt, 8.0))
    return False, error, attempts


def deliver(root: Path, cfg: AlertConfig, artifact: str, doc: dict, links: list[str],
            audit_path: Path) -> list[dict]:
    """Send the alert if the status or a rollout decision calls for one; one outcome per
    channel (also audited)."""
    if doc["status"] not in cfg.statuses and not rollout_decisions(doc):
        return []
    msg = message(artifact, doc, links)
    outcomes: list[dict[str, Any]] = []
    if cfg.file:
        path = root / cfg.file
        try:
            line = {k: msg[k] for k in ("at", "artifact", "status", "reasons", "links")}
            decided = rollout_decisions(doc)
            if decided:
                line["rollout"] = [{k: a.get(k) for k in ("decision", "version", "step",
                                                          "reason")} for a in decided]
            append_text(path, json.dumps(line) + "\n")
            outcomes.append({"channel": "file", "delivered": True, "path": cfg.file})
        except OSError as err:
            outcomes.append({"channel": "file", "delivered": False, "path": cfg.file,
                             "error": f"cannot write {cfg.file}: {err.strerror or err}"})
    url = (os.environ.get(cfg.webhook_env) or "").strip()
    if url:
        ok, error, attempts = _post(url, {"text": msg["text"], "blocks": msg["blocks"]}, cfg)
        error = error.replace(url, "<webhook URL>")  # belt and braces: never the secret
        outcomes.append({"channel": "webhook", "delivered": ok, "attempts": attempts,
                         **({"error": error} if error else {})})
    else:
        outcomes.append({"channel": "webhook", "delivered": False,
                         "error": f"{cfg.webhook_env} not set"})
    for o in outcomes:
        try:
            audit(audit_path, {"action": "alert", "status": doc["status"], **o})
        except OSError as err:
            o["audit_error"] = err.strerror or str(err)
    return outcomes


def warnings(outcomes: list[dict]) -> list[str]:
    """One line per alert that was due and not delivered (no URL in it)."""
    return [f"alert not delivered by {o['channel']}: {o.get('error', 'unknown error')}"
            + (f" after {o['attempts']} attempts" if o.get("attempts", 1) > 1 else "")
            for o in outcomes
            if not o.get("delivered") and not o.get("error", "").endswith(" not set")]
