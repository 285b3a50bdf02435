"""Every setting of the service: one pydantic-settings class, one env prefix (``MLOPS_``).

The README's settings table lists exactly these fields; a test keeps the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MLOPS_"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Which model: the registry, the alias this deployment follows, or a pinned tag.
    registry_url: str = Field(
        ".local/registry", description="Registry: a local directory or s3://bucket/prefix."
    )
    model_alias: str = Field(
        "dev", pattern=TAG_PATTERN, description="Alias this deployment serves and swaps move."
    )
    model_tag: str | None = Field(
        None, description="Pin a tag instead of following the alias; swaps are then refused (409)."
    )
    alias_poll_seconds: float = Field(
        10.0, ge=0.0, description="How often replicas re-read the alias (0 = never)."
    )
    model_cache_dir: Path = Field(
        Path("/tmp/mlops-model-cache"), description="Writable dir for downloads (emptyDir in k8s)."
    )
    max_model_bytes: int = Field(
        1_000_000_000,
        gt=0,
        description="Largest model.onnx a swap downloads (refused with 422 before any byte is"
        " written); keep it below the model cache's size (its emptyDir sizeLimit in k8s), so a"
        " big model is refused instead of getting the pod evicted.",
    )
    first_load_wait_seconds: float = Field(
        5.0,
        ge=0.0,
        description="Start-up waits this long for the first model, then serves /health/live"
        " while the download goes on (ready stays 503 until it is loaded).",
    )
    swapped_by: str = Field(
        "service", description="Name recorded in the alias history when this service swaps."
    )

    # Inputs.
    max_upload_bytes: int = Field(
        2_000_000, gt=0, description="Largest request body; larger is refused (413) while reading."
    )
    max_batch_rows: int = Field(1024, gt=0, description="Most rows in one JSON /predict.")
    # --- Input limits (issue 8: hostile images, headers, bodies) ---------------------------
    max_image_pixels: int | None = Field(
        None,
        gt=0,
        description="Largest width×height decoded (413 above); unset = from the model card:"
        " 256 × its width × height, at least 1,000,000 and at most 16,000,000.",
    )
    inline_decode_max_pixels: int = Field(
        65_536,
        ge=0,
        description="Images up to this many pixels (from the header) decode on the event loop;"
        " bigger ones in a low-priority decoder process.",
    )
    decode_pixel_budget: int = Field(
        16_000_000,
        gt=0,
        description="Pixels of big images being decoded at once; over it 503 + Retry-After.",
    )
    decode_processes: int = Field(
        2, gt=0, description="Decoder processes for big images (started on first use)."
    )
    decode_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness added to the decoder processes: higher leaves more CPU to normal"
        " requests while big images decode, and makes those decodes slower under load.",
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        description="Largest request line + headers (431 above), enforced by the server.",
    )
    # ---------------------------------------------------------------------------------------
    inline_inference_max_rows: int = Field(
        8,
        ge=0,
        description="Batches up to this many rows run on the event loop, bigger in a thread.",
    )
    onnx_threads: int = Field(1, ge=0, description="ONNX Runtime intra-op threads (0 = ORT).")
    max_feedback_items: int = Field(
        1000, gt=0, description="Most {model_tag, predicted, actual} items in one /feedback."
    )

    # Access.
    auth_enabled: bool = Field(True, description="false only for local use: no token checks.")
    predict_token_sha256: str = Field(
        "", description="Comma-separated sha256 hex digests of tokens with scope predict."
    )
    admin_token_sha256: str = Field(
        "", description="Comma-separated sha256 hex digests of tokens with scopes admin+predict."
    )
    feedback_token_sha256: str = Field(
        "", description="Comma-separated sha256 hex digests of tokens with scope feedback."
    )
    token_file: Path | None = Field(
        None, description="Mounted secret: lines '<scope>[,<scope>] <sha256 hex>'."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Comma-separated proxy addresses whose X-Forwarded-For/-Proto are"
        " trusted ('*' = any client: only behind a proxy that strips them).",
    )
    oidc_jwks_url: str | None = Field(None, description="JWKS URL; enables OIDC bearer JWTs.")
    oidc_issuer: str | None = Field(None, description="Required 'iss' of OIDC tokens.")
    oidc_audience: str | None = Field(None, description="Required 'aud' of OIDC tokens.")
    oidc_scope_claim: str = Field(
        "scope", description="Claim holding scopes (space-separated string or list)."
    )
    oidc_algorithms: str = Field("RS256", description="Comma-separated accepted JWT algorithms.")
    oidc_jwks_ttl_seconds: float = Field(300.0, gt=0, description="How long JWKS keys are cached.")
    oidc_leeway_seconds: float = Field(30.0, ge=0, description="Clock skew allowed on exp/nbf.")

    # Observability.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="Python log level of the service's loggers."
    )

    @field_validator("model_tag")
    @classmethod
    def _tag_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(TAG_PATTERN, value):
            raise ValueError(f"not a valid tag name: {value!r}")
        return value

    @property
    def pinned(self) -> bool:
        return self.model_tag is not None
