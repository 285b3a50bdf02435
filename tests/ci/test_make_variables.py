"""CI variables go through the Makefile as data: a secret is never make code nor shell code, it
reaches the tool byte for byte, and an empty one (Forgejo's "unset") reaches it unset.

The real targets run, with stub tools in a throwaway venv (VENV=...) that record their argv and
environment, so what is checked is exactly what `mlops`/`dvc` would receive in a CI job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ci.gitrepo import REPO

# Each family of variables the Makefile forwards (and unexports when empty).
FAMILIES = {
    "MLOPS": "MLOPS_GIT_TOKEN",
    "AWS": "AWS_SECRET_ACCESS_KEY",
    "DVC": "DVC_STUDIO_TOKEN",
    "IMAGE": "IMAGE_REGISTRY_PASSWORD",
}
CANARY = "pwned"


def hostile(canary: Path) -> list[str]:
    """Values that break a Makefile or a shell line which expands them instead of passing them."""
    return [
        f"x$(shell touch {canary})",  # make code
        "$(pw)",  # a make variable reference that expands to nothing
        "$$",
        "a$b$$c${d}",
        f"`touch {canary}`",  # shell command substitution, both spellings
        f"$(touch {canary})",
        "it's \"quoted\" 'twice'",
        "two\nlines",
        "# not a comment",
        "ends with a backslash\\",
        "a,b) % ; | & < > unbalanced $(",
        " ",
    ]


def stub_venv(root: Path) -> Path:
    """A venv the Makefile accepts (python and uv succeed) whose mlops and dvc record their call."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "uv"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
    record = (
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['STUB_RECORD'], 'a') as out:\n"
        "    call = {'tool': os.path.basename(sys.argv[0]), 'argv': sys.argv[1:]}\n"
        "    out.write(json.dumps({**call, 'env': dict(os.environ)}) + '\\n')\n"
    )
    for name in ("mlops", "dvc"):
        (bin_dir / name).write_text(record)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return root


def make(tmp_path: Path, target: str, variables: dict[str, str]) -> list[dict[str, Any]]:
    """Run ``make target`` of the project's Makefile with only ``variables`` from CI; the calls
    the stub tools saw."""
    venv = tmp_path / "venv"
    if not venv.exists():
        stub_venv(venv)
    record = tmp_path / "calls.jsonl"
    record.unlink(missing_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STUB_RECORD": str(record), **variables}
    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), f"VENV={venv}", target],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = record.read_text().splitlines() if record.exists() else []
    return [json.loads(line) for line in calls]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_hostile_value_reaches_the_tool_byte_for_byte_and_runs_nothing(
    family: str, tmp_path: Path
) -> None:
    canary = tmp_path / CANARY
    values = {f"{FAMILIES[family]}_{i}": v for i, v in enumerate(hostile(canary))}
    empty = f"{FAMILIES[family]}_EMPTY"

    # `make comment` asks the pipeline's outcome, then posts (the stub's outcome is not
    # "success", so nothing is restored in between): two mlops calls, each with every value.
    calls = make(tmp_path, "comment", {**values, empty: ""})

    assert [c["tool"] for c in calls] == ["mlops", "mlops"]
    assert [c["argv"][0] for c in calls] == ["comment", "comment"]
    assert calls[0]["argv"][-1] == "--outcome"
    assert not canary.exists(), "a variable's value ran as code"
    for call in calls:
        got = {k: v for k, v in call["env"].items() if k.startswith(FAMILIES[family])}
        assert got == values  # every byte, and the empty one is unset rather than ""


def test_the_dvc_remote_and_its_endpoint_reach_dvc_as_one_argument_each(tmp_path: Path) -> None:
    canary = tmp_path / CANARY
    url, endpoint = (f"s3://b/{v}" for v in hostile(canary)[:2])
    url = f'{url}";touch {canary};"'  # closes a quote around it, if a recipe put one there

    calls = make(tmp_path, "ci-remote", {"DVC_REMOTE_URL": url, "AWS_ENDPOINT_URL": endpoint})

    assert [c["argv"] for c in calls] == [
        ["remote", "add", "--local", "--force", "--default", "ci", url],
        ["remote", "modify", "--local", "ci", "endpointurl", endpoint],
    ]
    assert not canary.exists()
    # Forgejo's unset remote: nothing configured, the jobs run on the embedded default
    assert make(tmp_path, "ci-remote", {"DVC_REMOTE_URL": "", "AWS_ENDPOINT_URL": ""}) == []


def test_the_bump_reads_the_image_record_it_is_given_or_the_default(tmp_path: Path) -> None:
    canary = tmp_path / CANARY
    record = f"reports/$(shell touch {canary}) `touch {canary}`.json"

    (given,) = make(tmp_path, "bump", {"IMAGE_RECORD": record})
    (empty,) = make(tmp_path, "bump", {"IMAGE_RECORD": ""})  # Forgejo's unset variable

    assert given["argv"][-2:] == ["--image-file", record]
    assert empty["argv"][-2:] == ["--image-file", "reports/image.json"]
    assert not canary.exists()
