"""The GitHub API calls loopline makes: its sticky pull-request comment, and the pull request
of a retraining (``loopline monitor --act --retrain-pr``).

The token comes from ``GITHUB_TOKEN`` and is sent only in the Authorization header, never
printed; the API base from ``GITHUB_API_URL`` (GitHub Actions sets it; tests point it at a
local server), the repository from ``GITHUB_REPOSITORY``.
"""

from __future__ import annotations

import os

from loopline.core.errors import LooplineError
from loopline.gitops.report import MARKER


def _settings(what: str = "comment on the pull request") -> tuple[str, str, dict[str, str]]:
    token = os.environ.get("GITHUB_TOKEN")
    repo = os.environ.get("GITHUB_REPOSITORY")
    missing = [n for n, v in (("GITHUB_TOKEN", token), ("GITHUB_REPOSITORY", repo)) if not v]
    if missing:
        raise LooplineError(f"cannot {what}: {', '.join(missing)} not set")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    return f"{api}/repos/{repo}", repo, headers


def sticky_comment(pr: int, body: str) -> dict:
    """Update the comment that carries loopline's marker on ``pr``, or create it."""
    import httpx

    base, repo, headers = _settings()
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    try:
        with httpx.Client(headers=headers, timeout=30.0) as client:
            url: str | None = f"{base}/issues/{pr}/comments?per_page=100"
            existing = None
            while url and existing is None:
                res = client.get(url)
                _check(res, f"list the comments of {repo}#{pr}")
                existing = next((c for c in res.json() if MARKER in (c.get("body") or "")), None)
                url = res.links.get("next", {}).get("url")
            if existing is not None:
                res = client.patch(f"{base}/issues/comments/{existing['id']}", json={"body": body})
                _check(res, f"update comment {existing['id']}")
                return {"action": "updated", "url": res.json().get("html_url", ""), "id": existing["id"]}
            res = client.post(f"{base}/issues/{pr}/comments", json={"body": body})
            _check(res, f"comment on {repo}#{pr}")
            return {"action": "created", "url": res.json().get("html_url", ""), "id": res.json().get("id")}
    except httpx.HTTPError as err:
        raise LooplineError(f"GitHub API unreachable: {type(err).__name__}") from None


def _check(res, what: str) -> None:  # noqa: ANN001
    if res.status_code >= 400:
        try:
            msg = res.json().get("message", "")
        except ValueError:
            msg = res.text[:200]
        raise LooplineError(f"GitHub API: cannot {what}: {res.status_code} {msg}")


def open_pulls(head_prefix: str) -> list[dict]:
    """The repository's open pull requests whose branch starts with ``head_prefix``."""
    import httpx

    base, repo, headers = _settings("look up pull requests")
    found: list[dict] = []
    try:
        with httpx.Client(headers=headers, timeout=30.0) as client:
            url: str | None = f"{base}/pulls?state=open&per_page=100"
            while url:
                res = client.get(url)
                _check(res, f"list the pull requests of {repo}")
                found += [p for p in res.json()
                          if str((p.get("head") or {}).get("ref", "")).startswith(head_prefix)]
                url = res.links.get("next", {}).get("url")
    except httpx.HTTPError as err:
        raise LooplineError(f"GitHub API unreachable: {type(err).__name__}") from None
    return found


def open_pull(title: str, head: str, base_branch: str, body: str) -> dict:
    """Open a pull request of ``head`` into ``base_branch``; its number and URL."""
    import httpx

    base, repo, headers = _settings("open a pull request")
    try:
        with httpx.Client(headers=headers, timeout=30.0) as client:
            res = client.post(f"{base}/pulls", json={"title": title, "head": head,
                                                     "base": base_branch, "body": body})
            _check(res, f"open a pull request on {repo}")
            doc = res.json()
    except httpx.HTTPError as err:
        raise LooplineError(f"GitHub API unreachable: {type(err).__name__}") from None
    return {"number": doc.get("number"), "url": doc.get("html_url", "")}
