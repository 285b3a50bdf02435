"""``mlops image push`` to a real registry (distribution, with a login) records the digest the
registry serves for the tag, and ``mlops image sbom`` describes what is in the image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.conftest import REPO
from tests.image.conftest import IMAGE_PATH, BuiltImage, mlops
from tests.support.oci_registry import OciRegistry

# The first test here may build the image from nothing (a fresh machine under load: minutes).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def test_push_records_the_digest_the_registry_reports(
    pushed: dict[str, Any], built_image: BuiltImage, oci_registry: OciRegistry
) -> None:
    assert pushed["name"] == built_image.name
    assert pushed["tag"] == built_image.tag == pushed["commit"]
    served = oci_registry.manifest_digest(IMAGE_PATH, built_image.tag)
    print(f"\n[image] registry digest {served}")
    assert pushed["digest"] == served
    assert pushed["reference"] == f"{built_image.name}@{served}"
    assert built_image.tag in oci_registry.tags(IMAGE_PATH)
    # What the overlay pins is pullable by digest.
    assert oci_registry.manifest_digest(IMAGE_PATH, served) == served


def test_show_prints_the_record_for_the_deploy_bump(
    pushed: dict[str, Any], image_env: dict[str, str]
) -> None:
    result = mlops("image", "show", "--record", pushed["record_path"], env=image_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == pushed["digest"]


def test_a_wrong_registry_password_is_one_line_and_exit_3(
    built_image: BuiltImage, image_env: dict[str, str], tmp_path: Path
) -> None:
    record = tmp_path / "image.json"
    env = {**image_env, "IMAGE_REGISTRY_PASSWORD": "wrong", "IMAGE_RECORD": str(record)}
    result = mlops("image", "push", env=env)
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: buildah login to 127\.0\.0\.1:\d+ failed \(exit \d+\): see above", last
    )
    assert "Traceback" not in result.stderr
    assert not record.exists()


def test_sbom_lists_the_packages_in_the_image(
    pushed: dict[str, Any], image_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "sbom.cdx.json"
    env = {**image_env, "IMAGE_RECORD": pushed["record_path"]}
    result = mlops("image", "sbom", "--output", str(out), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, str(error)[:500]
    bom = json.loads(text)
    found = {_norm(c["name"]): c["version"] for c in bom["components"]}
    locked = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "service/requirements.lock").read_text(), re.M
        )
    )
    locked = {_norm(name): version for name, version in locked.items()}
    # The image holds exactly the lock: no installer left (the Dockerfile removes pip).
    assert found == locked
    subject = bom["metadata"]["component"]
    assert subject["type"] == "container"
    assert subject["version"] == pushed["tag"]
    assert pushed["digest"] in subject["purl"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
