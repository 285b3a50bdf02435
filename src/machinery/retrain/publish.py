"""The last job of a retrain run: publish the model to ``staging`` only, with its reason.

``mlops retrain publish`` (``make retrain-publish``), after the pipeline job:

1. The reason comes from ``MLOPS_RETRAIN_REASON``, ``_ALERT``, ``_VALUES``, ``_SERVING_TAG``
   (trigger variables on GitLab, workflow inputs on Forgejo); no reason: not a retrain run.
2. The model DVC produced is compared with the one ``staging`` serves: the same bytes (no new
   data reached the pipeline, so DVC restored the same model) publish nothing.
3. Otherwise a new experiment tag ``retrain-<YYYYMMDD>-<HHMMSS>-<sha7>`` (this run's time in
   UTC: a retrain of the same commit on new data is a different model, so it cannot reuse the
   commit's ``exp-`` tag, whose bytes are write-once) goes on HEAD as an annotated git tag whose
   message is the reason, and is pushed; the registry publishes the model under it and moves
   ``staging`` (moved by ``retrain: <alert>``). Never ``prod``: a person promotes
   (``mlops deploy promote``).
4. The reason and the outcome go to the job log, ``reports/retrain.md`` (an artifact) and, on
   Forgejo/GitHub runners, the step summary (``$GITHUB_STEP_SUMMARY``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from machinery.ci.git import git, out, push_target, skip_ci_push_options
from machinery.errors import UserError
from machinery.modelcard import ModelCard
from machinery.registry.errors import AliasNotFound
from machinery.registry.names import check_name
from machinery.registry.registry import Registry, metrics_from_file

PREFIX = "retrain-"
ALIAS = "staging"  # the only alias a retrain ever moves


@dataclass(frozen=True)
class Reason:
    text: str
    alert: str
    values: str
    serving_tag: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Reason:
        text = env.get("MLOPS_RETRAIN_REASON", "").strip()
        if not text:
            raise UserError(
                "MLOPS_RETRAIN_REASON is empty: this is not a retrain run (the alert receiver "
                "sets it; by hand: MLOPS_RETRAIN_REASON='why' make retrain-publish)"
            )
        return cls(
            text=text,
            alert=env.get("MLOPS_RETRAIN_ALERT", "").strip() or "manual",
            values=env.get("MLOPS_RETRAIN_VALUES", "").strip(),
            serving_tag=env.get("MLOPS_RETRAIN_SERVING_TAG", "").strip(),
        )


@dataclass(frozen=True)
class Outcome:
    published: bool
    tag: str
    previous: str | None
    sha256: str


def retrain_tag(commit: str, now: datetime) -> str:
    return check_name(f"{PREFIX}{now.astimezone(timezone.utc):%Y%m%d-%H%M%S}-{commit[:7]}")


def tag_message(reason: Reason, tag: str) -> str:
    lines = [f"retrain {tag}: {reason.alert}", "", reason.text]
    if reason.serving_tag:
        lines.append(f"serving before: {reason.serving_tag}")
    if reason.values:
        lines.append(f"values: {reason.values}")
    return "\n".join(lines) + "\n"


def publish(
    reason: Reason,
    registry: Registry,
    *,
    model_dir: Path = Path("models"),
    metrics: Path = Path("eval/metrics.json"),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    now: datetime | None = None,
) -> Outcome:
    env = dict(os.environ if env is None else env)
    card_path = model_dir / "model_card.json"
    if not card_path.is_file():
        raise UserError(f"{card_path}: not found (the pipeline job produces it: make restore)")
    card = ModelCard.model_validate_json(card_path.read_text())
    try:
        current = registry.alias(ALIAS)
    except AliasNotFound:
        current = None
    if current is not None and registry.meta(current.tag).sha256 == card.onnx_sha256:
        return Outcome(False, current.tag, current.tag, card.onnx_sha256)
    commit = out("rev-parse", "HEAD", cwd=cwd)
    tag = retrain_tag(commit, now or datetime.now(timezone.utc))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as message:
        message.write(tag_message(reason, tag))
    try:
        git("tag", "-a", tag, "-F", message.name, "HEAD", cwd=cwd)
    finally:
        os.unlink(message.name)
    target, push_env = push_target(env)
    options = skip_ci_push_options(target, push_env, cwd)
    git("push", "--quiet", *options, target, f"refs/tags/{tag}", cwd=cwd, env=push_env)
    registry.publish(tag, model_dir, metrics=metrics_from_file(metrics), commit=commit)
    registry.move_alias(ALIAS, tag, by=f"retrain: {reason.alert}")
    return Outcome(True, tag, current.tag if current else None, card.onnx_sha256)


def summary(reason: Reason, outcome: Outcome) -> str:
    """Markdown for the job log, ``reports/retrain.md`` and the step summary."""
    lines = ["## Retrain", "", f"**Why:** {reason.text}", f"**Alert:** `{reason.alert}`"]
    if reason.serving_tag:
        lines.append(f"**Serving when it fired:** `{reason.serving_tag}`")
    if reason.values:
        try:
            shown = json.dumps(json.loads(reason.values), indent=1)
        except ValueError:
            shown = reason.values
        lines += ["", "```json", shown, "```"]
    lines.append("")
    if outcome.published:
        was = f" (was `{outcome.previous}`)" if outcome.previous else ""
        lines.append(
            f"Published `{outcome.tag}` and moved `{ALIAS}` to it{was}. `prod` is unchanged: "
            "promote by hand with `mlops deploy promote` once staging looks right."
        )
    else:
        lines.append(
            f"No new model: the pipeline produced the bytes `{ALIAS}` already serves "
            f"(`{outcome.tag}`, sha256 {outcome.sha256[:12]}…), so nothing was published. "
            "New labelled data must reach the data stage for a retrain to change the model."
        )
    return "\n".join(lines) + "\n"


def write_summary(text: str, report: Path, env: Mapping[str, str]) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    step_summary = env.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as fh:
            fh.write(text)
