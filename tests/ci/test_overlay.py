"""The overlay edit: only ``newName`` and ``digest`` of the ``inference`` entry change."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from machinery.deploy.overlay import ImageRef, read_image, set_image
from machinery.errors import UserError
from tests.ci.gitrepo import REPO

MLOPS = str(Path(sys.executable).parent / "mlops")
DIGEST = "sha256:" + "ab" * 32
REF = ImageRef.parse(f"127.0.0.1:5000/group/project/inference:1a2b3c@{DIGEST}")


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    dest = tmp_path / "k8s"
    shutil.copytree(REPO / "k8s", dest)
    return dest / "overlays" / "staging" / "kustomization.yaml"


def test_bump_changes_exactly_the_two_fields_and_keeps_comments(overlay: Path) -> None:
    before = overlay.read_text()
    assert set_image(overlay, REF) is True
    after = overlay.read_text()
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == sorted(
        [
            *[f"-{ln}" for ln in before.splitlines() if "newName:" in ln or "digest:" in ln],
            "+    newName: 127.0.0.1:5000/group/project/inference",
            f"+    digest: {DIGEST}",
        ]
    )
    comments = [ln for ln in before.splitlines() if ln.strip().startswith("#")]
    assert comments and all(c in after.splitlines() for c in comments)
    assert read_image(overlay) == REF


def test_pinning_the_pinned_image_leaves_the_file_alone(overlay: Path) -> None:
    set_image(overlay, REF)
    pinned = overlay.read_bytes()
    assert set_image(overlay, REF) is False
    assert overlay.read_bytes() == pinned


def test_a_hand_set_new_tag_is_dropped(overlay: Path) -> None:
    text = overlay.read_text().replace("    digest:", "    newTag: latest\n    digest:", 1)
    overlay.write_text(text)
    set_image(overlay, REF)
    assert "newTag" not in overlay.read_text()


def test_image_references_must_pin_a_digest() -> None:
    for bad in ("127.0.0.1:5000/x/inference:latest", "x@sha256:1234", "UPPER/x@" + DIGEST):
        with pytest.raises(UserError):
            ImageRef.parse(bad)


def test_cli_without_the_inference_entry_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "k8s/overlays/staging/kustomization.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("images:\n  - name: other\n    newName: x/y\n")
    done = subprocess.run(
        [MLOPS, "deploy", "bump", "--no-push", "--image", str(REF), "--commit", "c0ffee"],
        cwd=tmp_path,
        env={**os.environ, "IMAGE_NAME": REF.name},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "'inference'" in done.stderr
    assert "Traceback" not in done.stderr
