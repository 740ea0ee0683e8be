"""Image references of a version in serve.image_registry, and what an OCI layout holds
(serving/image.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopline.core.errors import LooplineError
from loopline.serving import image

SHA = "ab" * 32


def test_refs_by_version_and_by_model_sha256() -> None:
    assert image.refs("oci:/srv/images", "m", "v0.3.0", SHA) == {
        "image": "oci:/srv/images/m:v0.3.0",
        "by_sha": f"oci:/srv/images/m:sha256-{SHA}",
    }
    assert image.refs("/srv/images/", "m", "v1.0.0", SHA)["image"] == "oci:/srv/images/m:v1.0.0"
    assert image.refs("registry.example.com/team/", "m", "v1.0.0", SHA) == {
        "image": "registry.example.com/team/m:v1.0.0",
        "by_sha": f"registry.example.com/team/m:sha256-{SHA}",
    }


def test_no_registry_or_no_sha_is_one_clear_error() -> None:
    with pytest.raises(LooplineError, match="serve.image_registry"):
        image.refs(None, "m", "v0.1.0", SHA)
    with pytest.raises(LooplineError, match="no model sha256"):
        image.refs("oci:/x", "m", "v0.1.0", "")


def test_exists_reads_the_tags_of_an_oci_layout(tmp_path: Path) -> None:
    layout = tmp_path / "m"
    assert not image.exists(f"oci:{layout}:v0.1.0")  # no layout yet
    layout.mkdir()
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {"digest": "sha256:" + "0" * 64, "annotations": {image.REF_NAME: "v0.1.0"}},
                    {"digest": "sha256:" + "1" * 64},
                ],
            }
        )
    )
    assert image.exists(f"oci:{layout}:v0.1.0")
    assert not image.exists(f"oci:{layout}:v0.2.0")
    (layout / "index.json").write_text("{not json")
    with pytest.raises(LooplineError, match="not an OCI index"):
        image.exists(f"oci:{layout}:v0.1.0")
