"""``mlops registry ...`` as users and CI call it: tables, --json, one-line errors."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from machinery.cli import app
from machinery.registry import Registry
from machinery.registry.when import parse_when
from tests.registry.helpers import Trained
from tests.support.s3 import use_s3_env
from tests.support.s3 import S3Server


@pytest.fixture
def mlops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(tmp_path / "registry"))
    for name in ("GITLAB_USER_LOGIN", "GITHUB_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("USER", "tester")
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, ["registry", *args])


def metrics_file(tmp_path: Path, trained: Trained) -> str:
    path = tmp_path / f"metrics-{id(trained)}.json"
    path.write_text(json.dumps(trained.metrics))
    return str(path)


def publish(runner: CliRunner, tmp_path: Path, trained: Trained, tag: str) -> Result:
    return run(
        runner,
        "publish",
        "--tag",
        tag,
        "--model-dir",
        str(trained.model_dir),
        "--metrics",
        metrics_file(tmp_path, trained),
    )


def assert_one_line_error(result: Result, *fragments: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_publish_list_show(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    a, b = trained
    first = publish(mlops, tmp_path, a, "v1")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"published v1 to {tmp_path / 'registry'} (sha256 ")
    assert publish(mlops, tmp_path, b, "v2").exit_code == 0
    assert run(mlops, "alias", "move", "prod", "v1").exit_code == 0

    listing = run(mlops, "list")
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()
    header = ["TAG", "ALIASES", "CREATED", "COMMIT", "TASK", "ESTIMATOR", "METRICS"]
    assert lines[0].split() == header
    assert lines[1].startswith("v2 ") and "classification  tree" in lines[1]
    assert lines[2].split()[:2] == ["v1", "prod"] and "accuracy=0.95" in lines[2]

    as_json = json.loads(run(mlops, "list", "--json").stdout)
    assert [(m["tag"], m["aliases"]) for m in as_json] == [("v2", []), ("v1", ["prod"])]
    assert as_json[1]["metrics"] == a.metrics

    shown = run(mlops, "show", "v1")
    assert shown.exit_code == 0
    assert "metric accuracy" in shown.stdout and "logreg" in shown.stdout
    shown_json = json.loads(run(mlops, "show", "v1", "--json").stdout)
    assert shown_json["tag"] == "v1" and shown_json["card"]["estimator"] == "logreg"


def test_publish_is_idempotent_and_refuses_other_bytes(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    a, b = trained
    assert publish(mlops, tmp_path, a, "v1").exit_code == 0
    assert publish(mlops, tmp_path, a, "v1").exit_code == 0
    refused = publish(mlops, tmp_path, b, "v1")
    assert_one_line_error(refused, "tag v1 already holds a different model", "immutable")


def test_alias_move_show_history_and_served_at(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    a, b = trained
    publish(mlops, tmp_path, a, "v1")
    publish(mlops, tmp_path, b, "v2")
    moved = run(mlops, "alias", "move", "prod", "v1", "--by", "alice")
    assert moved.exit_code == 0 and moved.stdout.startswith("prod → v1 (moved ")
    assert "by alice" in moved.stdout
    second = json.loads(run(mlops, "alias", "move", "prod", "v2", "--json").stdout)
    assert second["moved_by"] == "tester" and second["previous_tag"] == "v1"

    shown = run(mlops, "alias", "show", "prod")
    assert shown.stdout.startswith("prod → v2") and "was v1" in shown.stdout

    history = run(mlops, "alias", "history", "prod")
    rows = [line.split() for line in history.stdout.splitlines()]
    assert rows[0] == ["MOVED", "AT", "BY", "FROM", "TO"]
    assert [row[-3:] for row in rows[1:]] == [["alice", "-", "v1"], ["tester", "v1", "v2"]]
    records = json.loads(run(mlops, "alias", "history", "prod", "--json").stdout)
    assert [r["tag"] for r in records] == ["v1", "v2"]

    first_at = datetime.fromisoformat(records[0]["moved_at"])
    second_at = datetime.fromisoformat(records[1]["moved_at"])
    between = (first_at + (second_at - first_at) / 2).isoformat()
    answer = run(mlops, "served-at", "prod", between)
    assert answer.exit_code == 0 and answer.stdout.startswith("prod → v1 at ")
    now = json.loads(run(mlops, "served-at", "prod", "now", "--json").stdout)
    assert now["tag"] == "v2"
    earlier = (first_at - timedelta(hours=1)).isoformat()
    assert_one_line_error(run(mlops, "served-at", "prod", earlier), "pointed at no tag")
    assert json.loads(run(mlops, "served-at", "prod", earlier, "--json").stdout)["tag"] is None


def test_publish_can_move_an_alias_in_the_same_step(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    result = run(
        mlops, "publish", "--tag", "v1", "--model-dir", str(a.model_dir),
        "--metrics", metrics_file(tmp_path, a), "--move-alias", "staging", "--by", "ci",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("staging → v1 (moved ")
    assert json.loads(run(mlops, "alias", "show", "staging", "--json").stdout)["moved_by"] == "ci"


def test_ci_identity_is_the_default_mover(
    mlops: CliRunner,
    tmp_path: Path,
    trained: tuple[Trained, Trained],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(mlops, tmp_path, trained[0], "v1")
    monkeypatch.setenv("GITLAB_USER_LOGIN", "gitlab-bot")
    moved = json.loads(run(mlops, "alias", "move", "staging", "v1", "--json").stdout)
    assert moved["moved_by"] == "gitlab-bot"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["show", "v9"], ["tag v9 is not published"]),
        (["show", "../etc"], ["'../etc' is not a valid tag name"]),
        (["alias", "show", "prod"], ["alias prod does not exist"]),
        (["alias", "move", "prod", "v9"], ["tag v9 is not published"]),
        (["alias", "history", "prod"], ["alias prod has never been moved"]),
        (["served-at", "prod", "now"], ["alias prod does not exist"]),
        (["served-at", "prod", "teatime"], ["cannot read the time 'teatime'"]),
        (["list", "--registry", "ftp://host/x"], ["unsupported scheme 'ftp'"]),
        (["list", "--registry", "s3:///x"], ["names no bucket"]),
    ],
)
def test_user_errors_are_one_line(
    mlops: CliRunner, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    (tmp_path / "registry").mkdir()
    assert_one_line_error(run(mlops, *args), *fragments)


@pytest.mark.parametrize("args", [["list"], ["show", "v1"], ["alias", "show", "prod"]])
def test_a_missing_registry_is_unavailable_not_empty(mlops: CliRunner, args: list[str]) -> None:
    assert_one_line_error(run(mlops, *args), "registry", "does not exist", code=3)


def test_publish_errors_are_one_line(
    mlops: CliRunner,
    tmp_path: Path,
    trained: tuple[Trained, Trained],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = trained
    monkeypatch.chdir(tmp_path)  # not a git repository
    no_tag = run(mlops, "publish", "--model-dir", str(a.model_dir))
    assert_one_line_error(no_tag, "HEAD has no git tag: pass --tag TAG")
    no_metrics = run(mlops, "publish", "--tag", "v1", "--model-dir", str(a.model_dir))
    assert_one_line_error(no_metrics, "eval/metrics.json: metrics file not found")
    no_model = run(
        mlops, "publish", "--tag", "v1", "--model-dir", str(tmp_path / "nothing"),
        "--metrics", metrics_file(tmp_path, a),
    )  # fmt: skip
    assert_one_line_error(no_model, "model card not found")
    bad_tag = publish(mlops, tmp_path, a, "v1/../../x")
    assert_one_line_error(bad_tag, "is not a valid tag name")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_publish_defaults_to_the_git_tag_on_head(
    mlops: CliRunner,
    tmp_path: Path,
    trained: tuple[Trained, Trained],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = trained
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "train")
    monkeypatch.chdir(repo)
    untagged = run(mlops, "publish", "--model-dir", str(a.model_dir))
    assert_one_line_error(untagged, "HEAD has no git tag")

    _git(repo, "tag", "-a", "exp-2026-11-23", "-m", "experiment")
    published = run(
        mlops, "publish", "--model-dir", str(a.model_dir),
        "--metrics", metrics_file(tmp_path, a), "--json",
    )  # fmt: skip
    assert published.exit_code == 0, published.output
    meta = json.loads(published.stdout)
    assert meta["tag"] == "exp-2026-11-23"
    assert meta["commit"] == _git(repo, "rev-parse", "HEAD")


@pytest.mark.integration
def test_the_cli_against_s3(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[Trained, Trained],
) -> None:
    use_s3_env(monkeypatch, s3_server, tmp_path)
    monkeypatch.setenv("MLOPS_REGISTRY_URL", f"s3://{s3_bucket}/registry")
    runner = CliRunner()
    a, _ = trained
    assert publish(runner, tmp_path, a, "v1").exit_code == 0
    assert run(runner, "alias", "move", "prod", "v1", "--by", "ci").exit_code == 0
    assert json.loads(run(runner, "list", "--json").stdout)[0]["aliases"] == ["prod"]
    assert Registry.from_url(f"s3://{s3_bucket}/registry").alias("prod").moved_by == "ci"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    refused = run(runner, "list")
    assert_one_line_error(refused, "refused the credentials (SignatureDoesNotMatch)", code=3)


def test_when_reads_what_people_type() -> None:
    now = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc).astimezone()
    assert parse_when("yesterday 14:03", now=now) == datetime(2026, 11, 22, 14, 3).astimezone()
    assert parse_when("14:03:30", now=now).time().isoformat() == "14:03:30"
    assert parse_when("2026-11-22T14:03Z") == datetime(2026, 11, 22, 14, 3, tzinfo=timezone.utc)
    assert parse_when("2026-11-22 14:03+01:00").utcoffset() == timedelta(hours=1)
    assert parse_when("2026-11-22T14:03").tzinfo is not None
    assert parse_when("now", now=now) == now


def test_a_model_from_uncommitted_changes_says_so_in_publish_and_list(
    mlops: CliRunner, tmp_path: Path, trained: tuple[Trained, Trained], copy_of: Any
) -> None:
    """The 12-character commit cut must keep ``+dirty``; publishing such a model warns."""
    model_dir = copy_of(trained[0].model_dir)
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["code_commit"] = "0123456789abcdef0123456789abcdef01234567+dirty"
    card_path.write_text(json.dumps(card))
    dirty = Trained(model_dir, trained[0].metrics)
    result = publish(mlops, tmp_path, dirty, "exp-dirty")
    assert result.exit_code == 0, result.output
    assert "warning: exp-dirty was trained from uncommitted changes" in result.stderr
    assert "0123456789ab+dirty" in result.stderr
    listing = run(mlops, "list")
    assert listing.exit_code == 0 and "+dirty" in listing.stdout
    clean = publish(mlops, tmp_path, trained[1], "exp-clean")
    assert clean.exit_code == 0 and "warning" not in clean.stderr
    row = next(line for line in run(mlops, "list").stdout.splitlines() if "exp-clean" in line)
    assert "+dirty" not in row
