"""CycloneDX SBOM of the Python packages really inside the built image.

buildah opens a working container on the image and lists the installed distributions with the
image's own interpreter (chroot isolation: no daemon, nothing started; the image has no pip),
and ``cyclonedx-py``
(the CycloneDX project's own tool) turns that list into the SBOM. The lock file would say what
was asked for; this says what is there. The image itself becomes the BOM's main component.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from machinery.image.builder import Builder, ImageBuildError, read_record
from machinery.image.target import ImageTarget

VENV_PYTHON = "/opt/venv/bin/python"  # where service/Dockerfile puts the service's packages
# ``pip freeze`` without pip: every distribution on the image venv's path, as NAME==VERSION.
FREEZE = (
    "import importlib.metadata as m\n"
    "print('\\n'.join(sorted({f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()})))"
)


def installed_packages(target: ImageTarget, builder: Builder) -> str:
    """What is installed in the image's venv, in requirements format."""
    base = builder.base()
    made = subprocess.run(
        base + ["from", "--pull=never", "--quiet", target.reference],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        raise ImageBuildError(
            f"image {target.reference} not in local storage: run `make image` first "
            f"({made.stderr.strip().splitlines()[-1] if made.stderr.strip() else 'buildah from'})"
        )
    container = made.stdout.strip()
    try:
        frozen = subprocess.run(
            base + ["run", "--isolation", "chroot", container, "--"] + [VENV_PYTHON, "-c", FREEZE],
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(base + ["rm", container], capture_output=True)
    if frozen.returncode != 0:
        raise ImageBuildError(
            f"listing the image's packages failed: {frozen.stderr.strip()[-300:]}"
        )
    return frozen.stdout


def write_sbom(target: ImageTarget, builder: Builder, output: Path, record: Path) -> int:
    """Write the SBOM to ``output``; returns how many packages it lists."""
    requirements = installed_packages(target, builder)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "cyclonedx_py", "requirements", "-"]
        # Validated once below, after the image is added as the main component.
        + ["--of", "JSON", "--sv", "1.6", "--no-validate", "-o", str(output)],
        input=requirements,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ImageBuildError(f"cyclonedx-py failed: {result.stderr.strip()[-300:]}")
    bom = json.loads(output.read_text())
    bom.setdefault("metadata", {})["component"] = _image_component(target, record)
    text = json.dumps(bom, indent=2) + "\n"
    _validate(text)
    output.write_text(text)
    return len(bom.get("components", []))


def _validate(text: str) -> None:
    """Check the final document against the CycloneDX 1.6 JSON schema (bundled, offline)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        message = getattr(getattr(error, "data", None), "message", str(error))
        raise ImageBuildError(f"the SBOM is not valid CycloneDX 1.6: {str(message)[:300]}")


def _image_component(target: ImageTarget, record: Path) -> dict[str, Any]:
    """The image as the BOM's subject; with its registry digest once ``push`` recorded it."""
    component: dict[str, Any] = {
        "type": "container",
        "bom-ref": target.reference,
        "name": target.name,
        "version": target.tag,
        "properties": [{"name": "org.opencontainers.image.revision", "value": target.commit}],
    }
    if record.is_file():
        pushed = read_record(record)
        if pushed["name"] == target.name and pushed["tag"] == target.tag:
            repo = target.name.rsplit("/", 1)[-1]
            # purl-spec's oci type: name@digest, the registry path as repository_url.
            component["purl"] = f"pkg:oci/{repo}@{pushed['digest']}?repository_url={target.name}"
            component["hashes"] = [
                {"alg": "SHA-256", "content": pushed["digest"].removeprefix("sha256:")}
            ]
    return component
