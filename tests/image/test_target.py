"""Where ``mlops image`` pushes, from the CI variables of each forge (no containers needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from machinery.errors import UserError
from machinery.image.builder import build_args, read_record
from machinery.image.target import ImageConfigError, target_from_env

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_gitlab_defaults() -> None:
    target = target_from_env(
        {
            "CI_REGISTRY_IMAGE": "registry.gitlab.example.com/Group/Project",
            "CI_REGISTRY_USER": "gitlab-ci-token",
            "CI_REGISTRY_PASSWORD": "job-secret",
            "CI_COMMIT_SHA": SHA,
        }
    )
    assert target.reference == f"registry.gitlab.example.com/group/project/inference:{SHA}"
    assert (target.user, target.password) == ("gitlab-ci-token", "job-secret")
    assert target.registry == "registry.gitlab.example.com"
    assert "job-secret" not in repr(target)


def test_forgejo_defaults_to_its_package_registry() -> None:
    target = target_from_env(
        {
            "GITHUB_SERVER_URL": "https://code.example.org",
            "GITHUB_REPOSITORY": "ML-Team/template",
            "GITHUB_SHA": SHA,
            "IMAGE_REGISTRY_USER": "bot",
            "IMAGE_REGISTRY_PASSWORD": "pat",
        },
        need_credentials=True,
    )
    assert target.name == "code.example.org/ml-team/template/inference"
    assert target.tag == SHA and target.user == "bot"


def test_explicit_name_wins_and_tag_can_be_set() -> None:
    target = target_from_env(
        {
            "IMAGE_NAME": "harbor.example.com/ml/inference",
            "CI_REGISTRY_IMAGE": "registry.gitlab.example.com/g/p",
            "IMAGE_TAG": "v1.2.0",
            "IMAGE_REGISTRY_INSECURE": "1",
        }
    )
    assert target.reference == "harbor.example.com/ml/inference:v1.2.0"
    assert target.tls_verify is False


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "set IMAGE_NAME"),
        ({"IMAGE_NAME": "no-host", "IMAGE_TAG": "x"}, "HOST/PATH"),
        ({"IMAGE_NAME": "r.example.com/a", "IMAGE_TAG": "bad tag"}, "set IMAGE_TAG"),
        (
            {"IMAGE_NAME": "r.example.com/a", "IMAGE_TAG": "t", "IMAGE_REGISTRY_USER": "u"},
            "set IMAGE_REGISTRY_PASSWORD",
        ),
    ],
)
def test_bad_variables_name_what_to_set(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ImageConfigError, match=needle):
        target_from_env(env, need_credentials=True)


def test_local_base_image_is_never_pulled(tmp_path: Path) -> None:
    target = target_from_env({"IMAGE_NAME": "r.example.com/a", "IMAGE_TAG": "t"})
    args = build_args(target, {"PYTHON_IMAGE": "localhost/py:3.11"}, tmp_path, tmp_path / "iid")
    assert "--pull=never" in args and "PYTHON_IMAGE=localhost/py:3.11" in args
    assert args[args.index("--format") + 1] == "docker"  # keeps HEALTHCHECK
    assert args[args.index("--isolation") + 1] == "chroot"
    upstream = build_args(target, {"PYTHON_IMAGE": "python:3.11-slim"}, tmp_path, tmp_path / "iid")
    assert "--pull=never" not in upstream


def test_read_record_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run `make image` first"):
        read_record(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(UserError, match="lacks digest, tag"):
        read_record(tmp_path / "bad.json")


def test_cli_without_registry_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "image", "push"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: no image registry")
