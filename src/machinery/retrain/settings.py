"""The receiver's settings: one pydantic-settings class, env prefix ``MLOPS_RETRAIN_``.

Secrets come from files (a mounted Secret) or, for a local run, from the env: ``*_TOKEN_FILE``
wins over ``*_TOKEN``. docs/retraining.md lists every setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from machinery.errors import UserError

ENV_PREFIX = "MLOPS_RETRAIN_"
# The alerts of monitoring/rules that mean "the model no longer fits the world": drift over its
# threshold, and live accuracy (from /feedback) below the model card's.
DEFAULT_ALERTS = ("LiveAccuracyBelowCard", "InferenceDriftOverThreshold")


class RetrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    forge: Literal["gitlab", "forgejo"]
    # https://gitlab.example.com or https://forgejo.example.org (no /api/... suffix).
    forge_url: str
    # GitLab: the project's numeric id or its path (group/project); Forgejo: owner/repo.
    project: str
    ref: str = "main"
    # Forgejo only: the workflow file under .forgejo/workflows/ that has `workflow_dispatch`.
    workflow: str = "retrain.yml"
    # GitLab: a pipeline trigger token; Forgejo: an API token with write:repository.
    forge_token: SecretStr | None = None
    forge_token_file: Path | None = None
    # What Alertmanager presents: `Authorization: Bearer <token>`, or Basic <webhook_user>:<token>.
    webhook_token: SecretStr | None = None
    webhook_token_file: Path | None = None
    webhook_user: str = "alertmanager"
    alerts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_ALERTS))
    cooldown_seconds: float = Field(default=6 * 3600, ge=0)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # A forge 5xx or an unreachable forge: this many more attempts, waiting backoff, 2x, 4x ...
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0)
    forge_timeout_seconds: float = Field(default=10.0, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=1, le=65535)

    @field_validator("alerts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("forge_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secrets_given(self) -> RetrainSettings:
        for name in ("forge_token", "webhook_token"):
            if getattr(self, name) is None and getattr(self, f"{name}_file") is None:
                env = f"{ENV_PREFIX}{name.upper()}"
                raise ValueError(f"set {env}_FILE (a mounted Secret) or {env}")
        if self.forge == "forgejo" and self.project.count("/") != 1:
            raise ValueError(f"project {self.project!r}: Forgejo wants owner/repo")
        return self

    def _secret(self, name: str) -> str:
        path: Path | None = getattr(self, f"{name}_file")
        if path is not None:
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise UserError(f"{ENV_PREFIX}{name.upper()}_FILE: {exc}") from None
            if not value:
                raise UserError(f"{ENV_PREFIX}{name.upper()}_FILE: {path} is empty")
            return value
        secret: SecretStr | None = getattr(self, name)
        assert secret is not None  # checked by _secrets_given
        return secret.get_secret_value()

    def forge_secret(self) -> str:
        return self._secret("forge_token")

    def webhook_secret(self) -> str:
        return self._secret("webhook_token")


def load_settings() -> RetrainSettings:
    """The settings from the environment; a mistake is one line (``UserError``)."""
    try:
        return RetrainSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        name = f"{ENV_PREFIX}{where.upper()}" if where else "settings"
        raise UserError(f"{name}: {first['msg']}") from None
