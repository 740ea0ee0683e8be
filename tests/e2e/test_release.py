"""release.yml through `loopline ci release` (nektos/act on a clean clone): a change of the
prod assignment deploys the image already built for the version prod now names, through the
deploy hook; other tags do nothing; without a hook the run is "built, not deployed" and its
deploy job is skipped, not passed.

The image registry is a directory of OCI layouts (serve.image_registry: oci:DIR) in which
the images of both versions are already listed, as main.yml leaves them; the hook is a
script that records its arguments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loopline.serving.image import REF_NAME
from tests.helpers import BIN
from tests.helpers.commands import loopline, sh
from tests.helpers.instance import default_text, shadow_default
from tests.helpers.reference import bare_origin, commit, reference_repo

ARTIFACT = "credit-risk"


def fake_registry(images: Path, tags: list[str]) -> None:
    """An OCI image layout listing ``tags`` (what `buildah push oci:DIR:TAG` leaves)."""
    layout = images / ARTIFACT
    layout.mkdir(parents=True, exist_ok=True)
    manifests = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{i:064x}",
            "size": 1,
            "annotations": {REF_NAME: tag},
        }
        for i, tag in enumerate(tags)
    ]
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two registered versions, both promoted to prod, v0.2.0 in staging, their images built."""
    tmp = tmp_path_factory.mktemp("release")
    images = tmp / "images"
    up = reference_repo(tmp / "upstream")
    shadow_default(
        up,
        "serve/default.yaml",
        default_text("serve/default.yaml").replace(
            "image_registry: null", f"image_registry: oci:{images}"
        ),
    )
    loopline("params", cwd=up)
    loopline("run", cwd=up)
    commit(up, "first model, and an image registry")
    loopline("register", cwd=up)
    search = up / "conf" / "search" / "random.yaml"
    search.write_text(search.read_text().replace("n_iter: 3", "n_iter: 2"))
    loopline("params", cwd=up)
    loopline("run", cwd=up)
    commit(up, "second model")
    loopline("register", cwd=up)
    loopline("promote", "v0.1.0", "--to", "prod", cwd=up)
    loopline("promote", "v0.2.0", "--to", "prod", cwd=up)
    loopline("promote", "v0.2.0", "--to", "staging", cwd=up)
    fake_registry(images, ["v0.1.0", "v0.2.0"])
    origin = bare_origin(up, tmp / "origin.git")
    sh("git", "push", "-q", "origin", "--tags", cwd=up)
    return {"root": up, "origin": origin, "images": images, "tmp": tmp}


def hook(tmp: Path) -> tuple[Path, Path]:
    record = tmp / "deployed.txt"
    script = tmp / "hook.sh"
    script.write_text(f'#!/usr/bin/env bash\necho "$1 $2" >> {record}\n')
    return script, record


def release(root: Path, tag: str, *, deleted: bool, **env: str) -> dict:
    args = ["ci", "release", "--tag", tag, "--json"] + (["--deleted"] if deleted else [])
    full = {k: v for k, v in os.environ.items() if k != "LOOPLINE_DEPLOY_HOOK"}
    res = sh(
        str(BIN / "loopline"),
        *args,
        cwd=root,
        env={**full, "UV_OFFLINE": "1", **env},
        check=False,
        timeout=900,
    )
    assert res.stdout.strip(), res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def delete_tag(root: Path, tag: str) -> None:
    sh("git", "push", "-q", "origin", "--delete", tag, cwd=root)
    sh("git", "tag", "-d", tag, cwd=root)


def test_a_deleted_prod_tag_deploys_the_image_built_for_the_previous_version(
    released: dict, tmp_path: Path
) -> None:
    root = released["root"]
    script, record = hook(tmp_path)
    delete_tag(root, f"{ARTIFACT}#prod#2")
    assert loopline("which", "prod", cwd=root).stdout.startswith("v0.1.0")
    doc = release(root, f"{ARTIFACT}#prod#2", deleted=True, LOOPLINE_DEPLOY_HOOK=str(script))
    assert doc["event"] == "delete" and doc["status"] == "passed", doc
    assert doc["jobs"] == {"image": "passed", "deploy": "passed"}
    assert record.read_text().split() == [f"oci:{released['images']}/{ARTIFACT}:v0.1.0", "v0.1.0"]
    assert sorted(p.name for p in (released["images"] / ARTIFACT).iterdir()) == [
        "index.json",
        "oci-layout",
    ]  # deployed what was there: nothing was built

    delete_tag(root, f"{ARTIFACT}#staging#1")  # not a prod tag: nothing runs
    doc = release(root, f"{ARTIFACT}#staging#1", deleted=True, LOOPLINE_DEPLOY_HOOK=str(script))
    assert doc["status"] == "skipped" and set(doc["jobs"].values()) == {"skipped"}
    assert len(record.read_text().splitlines()) == 1


def test_without_a_hook_the_release_is_built_not_deployed_and_skipped(released: dict) -> None:
    doc = release(released["root"], f"{ARTIFACT}#prod#1", deleted=False)
    assert doc["event"] == "push"
    assert doc["jobs"] == {"image": "passed", "deploy": "skipped"} and doc["status"] == "skipped"
    assert any("not deployed" in n for n in doc["notices"]), doc["notices"]


def test_the_example_hook_runs_the_deploy_command_with_image_and_version(
    released: dict, tmp_path: Path
) -> None:
    out = tmp_path / "example.txt"
    doc = release(
        released["root"],
        f"{ARTIFACT}#prod#1",
        deleted=False,
        LOOPLINE_DEPLOY_HOOK="scripts/deploy.sh",
        DEPLOY_COMMAND=f'echo "$IMAGE $VERSION" > {out}',
    )
    assert doc["status"] == "passed", doc
    assert out.read_text().split()[1] in ("v0.1.0", "v0.2.0")
    assert out.read_text().split()[0].startswith(f"oci:{released['images']}/{ARTIFACT}:v0.")
