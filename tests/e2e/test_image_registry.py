"""Images in a real registry: the distribution registry (Debian's docker-registry) on
127.0.0.1, reached by buildah and skopeo as an insecure (plain HTTP) registry through
the standard containers registries.conf, as a team's own registry would be configured.

A tiny image (``buildah from scratch`` + one file) stands in for the Bento's image, so this
runs in seconds: what is under test is loopline's side: the references of a version (by
version and by model sha256), the push of both, and ``loopline image`` finding the version's
image in the registry without building it, or saying how to build it when it is not there.
`make test` installs buildah and docker-registry with apt-get; without them this skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopline.core.errors import LooplineError
from loopline.serving import image as images
from tests.helpers.commands import loopline, sh
from tests.helpers.server import free_port

REGISTRY = shutil.which("docker-registry")
pytestmark = pytest.mark.skipif(
    REGISTRY is None or not shutil.which("buildah") or not shutil.which("skopeo")
    or not os.access("/etc/containers", os.W_OK),
    reason="needs root, buildah, skopeo and docker-registry (`make test` installs them)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1 (its storage a temp dir); yields ``host:port``."""
    tmp = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = tmp / "config.yml"
    config.write_text(f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {tmp / 'data'}}}
  delete: {{enabled: true}}
http: {{addr: "127.0.0.1:{port}"}}
""")
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {proc.stderr.read()!r}")
            time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def insecure(registry: str) -> Iterator[None]:
    """A registries.conf drop-in marking the test registry (its own port on 127.0.0.1)
    insecure, read by buildah and skopeo alike (skopeo 1.9 ignores
    CONTAINERS_REGISTRIES_CONF); removed afterwards."""
    port = registry.rsplit(":", 1)[1]
    drop_in = Path(f"/etc/containers/registries.conf.d/90-loopline-test-{port}.conf")
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    yield
    drop_in.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-file image in buildah's local storage."""
    tmp = tmp_path_factory.mktemp("image")
    (tmp / "hello.txt").write_text("hello from a test image\n")
    name = f"localhost/loopline-registry-test:{int(time.time())}"
    ctr = sh("buildah", "from", "scratch", cwd=tmp).stdout.strip()
    try:
        sh("buildah", "copy", ctr, str(tmp / "hello.txt"), "/hello.txt", cwd=tmp)
        sh("buildah", "commit", "--quiet", ctr, name, cwd=tmp)
    finally:
        sh("buildah", "rm", ctr, cwd=tmp, check=False)
    yield name
    sh("buildah", "rmi", "-f", name, cwd=tmp, check=False)


def _tags(registry: str, repo: str) -> list[str]:
    res = httpx.get(f"http://{registry}/v2/{repo}/tags/list", timeout=5)
    return sorted(res.json().get("tags") or []) if res.status_code == 200 else []


def test_a_version_is_pushed_by_version_and_by_model_sha(registry: str, insecure: None,
                                                         small_image: str) -> None:
    sha = "ab" * 32
    out = images.refs(f"{registry}/team", "credit-risk", "v1.2.0", sha)
    assert out["image"] == f"{registry}/team/credit-risk:v1.2.0"
    assert out["by_sha"] == f"{registry}/team/credit-risk:sha256-{sha}"
    assert not images.exists(out["image"])
    images.push(small_image, [out["image"], out["by_sha"]])
    assert _tags(registry, "team/credit-risk") == sorted(["v1.2.0", f"sha256-{sha}"])
    assert images.exists(out["image"]) and images.exists(out["by_sha"])
    assert not images.exists(f"{registry}/team/credit-risk:v9.9.9")
    with pytest.raises(LooplineError, match="could not ask the registry"):  # not a "no"
        images.exists(f"127.0.0.1:{free_port()}/team/credit-risk:v1.2.0")


def test_loopline_image_finds_the_registered_versions_image_without_building(
        built_copy: Path, registry: str, insecure: None, small_image: str) -> None:
    from loopline.registry.tags import open_registry

    root = built_copy
    loopline("params", f"serve.image_registry={registry}/acme", cwd=root)
    sh("git", "commit", "-qam", "image registry", cwd=root)
    loopline("register", cwd=root)
    missing = loopline("image", "v0.1.0", cwd=root, check=False)
    assert missing.returncode == 1, missing.stdout
    assert f"is not in {registry}/acme" in missing.stderr and "--build" in missing.stderr

    v = open_registry(root).resolve("v0.1.0")
    artifact = v.tag.split("@")[0]
    want = images.refs(f"{registry}/acme", artifact, "v0.1.0", v.meta["model"]["onnx_sha256"])
    images.push(small_image, [want["image"], want["by_sha"]])  # as `--build` would push it
    found = json.loads(loopline("image", "v0.1.0", "--json", cwd=root).stdout)
    assert (found["image"], found["by_sha"]) == (want["image"], want["by_sha"])
    assert found["exists"] and not found["built"]  # found, not rebuilt
