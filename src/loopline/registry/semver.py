"""Version names: semver parsing and ordering, bumps, and the forms a user may type."""

from __future__ import annotations

import re

from loopline.core.errors import LooplineError

BUMPS = ("major", "minor", "patch")
SEMVER_RE = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)


def semver_key(version: str) -> tuple:
    """A sort key that orders versions by semver (pre-releases before their release).

    Raises:
        LooplineError: when ``version`` is not vMAJOR.MINOR.PATCH[-pre][+build].
    """
    m = SEMVER_RE.match(version)
    if not m:
        raise LooplineError(f"not a version: {version!r} (expected vMAJOR.MINOR.PATCH, "
                            "e.g. v1.2.0)")
    pre = m.group(4)
    pre_key: tuple = (1,) if pre is None else (0, *(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre_key


def bump_version(latest: str | None, part: str) -> str:
    """The next version after ``latest`` (v0.1.0 when there is none)."""
    if part not in BUMPS:
        raise LooplineError(f"--bump must be one of {', '.join(BUMPS)} (got {part!r})", exit_code=2)
    if latest is None:
        return "v0.1.0"
    major, minor, patch, _ = semver_key(latest)
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def normalize_version(ref: str) -> str:
    """``1.2.0``, ``v1.2.0`` and ``artifact@v1.2.0`` all become ``v1.2.0``."""
    ref = ref.rsplit("@", 1)[-1]
    return ref if ref.startswith("v") else f"v{ref}"
