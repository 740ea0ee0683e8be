"""The image of a registry version in the image registry you configure (``serve.image_registry``).

A version's image is built once (main.yml after ``register``, or at its first promotion) and
pushed under two tags: the version (``v0.3.0``) and the model's sha256
(``sha256-<64 hex>``), so a deployment names exactly the model it serves. A release deploys
the image that is already there; it never rebuilds it.

``serve.image_registry`` is either a local directory holding one OCI image layout per
artifact (``oci:/srv/images`` or ``/srv/images`` -> ``oci:/srv/images/<artifact>:<tag>``),
or a registry (``registry.example.com/team`` -> ``registry.example.com/team/<artifact>:<tag>``,
pushed with buildah, credentials from buildah's own login; a registry served over plain
HTTP is marked ``insecure`` in containers' registries.conf, which buildah and skopeo read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from loopline.core.errors import LooplineError

REF_NAME = "org.opencontainers.image.ref.name"
_SHA = re.compile(r"^[0-9a-f]{64}$")


def _local_dir(registry: str) -> Path | None:
    if registry.startswith("oci:"):
        return Path(registry[4:]).expanduser()
    if registry.startswith(("/", "./", "~")):
        return Path(registry).expanduser()
    return None


def refs(registry: str | None, artifact: str, version: str, sha256: str) -> dict[str, str]:
    """The image references of a version: ``image`` (by version) and ``by_sha`` (by model).

    Raises:
        LooplineError: no registry configured, or a sha256 that is not one.
    """
    if not registry:
        raise LooplineError(
            "no image registry configured: set serve.image_registry (a directory "
            "such as oci:/srv/images, or a registry such as registry.example.com/team)"
        )
    if not _SHA.match(sha256 or ""):
        raise LooplineError(f"{version}: the registry records no model sha256 ({sha256!r})")
    local = _local_dir(registry)
    base = f"oci:{local / artifact}" if local is not None else f"{registry.rstrip('/')}/{artifact}"
    return {"image": f"{base}:{version}", "by_sha": f"{base}:sha256-{sha256}"}


def _layout_tags(layout: Path) -> dict[str, str]:
    """Tag -> manifest digest of an OCI image layout directory (empty when there is none)."""
    index = layout / "index.json"
    if not index.is_file():
        return {}
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as err:
        raise LooplineError(f"{index}: not an OCI index ({err})") from None
    return {
        m["annotations"][REF_NAME]: m.get("digest", "")
        for m in doc.get("manifests") or []
        if (m.get("annotations") or {}).get(REF_NAME)
    }


# what each tool says when the registry answers that it has no such manifest
_NOT_FOUND = re.compile(r"manifest unknown|no such manifest|not found|name unknown|"
                        r"no such image", re.I)


def exists(ref: str) -> bool:
    """Whether the registry holds ``ref`` (an OCI layout is read; a registry is asked).

    A registry is asked with skopeo (on GitHub's runners and in Debian; it reads the same
    registries.conf and login as buildah), else ``docker manifest inspect``, else buildah
    (newer buildah inspects a remote manifest; 1.28 cannot). Only the registry's "no such
    manifest" means no: an unreachable registry, a refused login or a TLS error is an error
    that names itself, never a reason to rebuild.
    """
    if ref.startswith("oci:"):
        path, _, tag = ref[4:].rpartition(":")
        return tag in _layout_tags(Path(path))
    import shutil

    from loopline.core.proc import first_line, run

    if shutil.which("skopeo"):
        cmd = ["skopeo", "inspect", "--raw", f"docker://{ref}"]
    elif shutil.which("docker"):
        cmd = ["docker", "manifest", "inspect", ref]
    elif shutil.which("buildah"):
        cmd = ["buildah", "manifest", "inspect", f"docker://{ref}"]
    else:
        raise LooplineError(f"cannot ask the registry for {ref}: none of skopeo, docker or "
                            "buildah is installed (Debian: apt-get install skopeo)")
    res = run(cmd, what=cmd[0], check=False)
    if res.returncode == 0:
        return True
    err = (res.stderr or "") + (res.stdout or "")
    if _NOT_FOUND.search(err):
        return False
    raise LooplineError(f"{cmd[0]} could not ask the registry for {ref}: {first_line(err)}")


def describe(params: Any, root: Path, ref: str) -> dict[str, Any]:
    """The version ``ref`` (a version or stage) names, its image references and whether the
    registry has its image."""
    from loopline.registry.tags import open_registry

    v = open_registry(root).resolve(ref)
    sha = (v.meta.get("model") or {}).get("onnx_sha256") or ""
    out = refs(params.serve.image_registry, params.artifact, v.version, sha)
    return {"ref": ref, "version": v.version, "sha256": sha, **out, "exists": exists(out["image"])}


def push(local_image: str, targets: list[str], backend: str = "buildah") -> None:
    """Push a built local image to each target reference (buildah, or docker for registries)."""
    from loopline.core.proc import run

    for target in targets:
        if backend == "docker":
            if target.startswith("oci:"):
                raise LooplineError(f"{target}: a directory registry needs buildah, not docker")
            run(["docker", "tag", local_image, target], what="docker tag")
            run(["docker", "push", "--quiet", target], what="docker push")
            continue
        if target.startswith("oci:"):
            Path(target[4:].rpartition(":")[0]).parent.mkdir(parents=True, exist_ok=True)
        dest = target if target.startswith("oci:") else f"docker://{target}"
        run(["buildah", "push", "--quiet", local_image, dest], what="buildah push")
