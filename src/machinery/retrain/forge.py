"""Start one pipeline run on the forge.

- GitLab: the pipeline trigger API, ``POST /api/v4/projects/:id/trigger/pipeline`` with the
  trigger token, the ref and ``variables`` (python-gitlab's ``Project.trigger_pipeline``); the
  pipeline then has ``CI_PIPELINE_SOURCE == "trigger"``.
- Forgejo: ``POST /api/v1/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches`` with
  ``{"ref", "inputs"}`` and ``Authorization: token …`` (answers 204; the workflow needs
  ``on: workflow_dispatch`` with those inputs).

A 5xx, a timeout or no connection is worth another try (``ForgeError.retryable``); a 4xx (bad
token, unknown project, workflow or input) is not: trying again cannot fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx

from machinery.retrain.alerts import RetrainRequest
from machinery.retrain.settings import RetrainSettings


class ForgeError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Started:
    """What the forge said about the run it started (Forgejo says nothing: 204)."""

    forge: str
    pipeline_id: int | None = None
    web_url: str = ""

    def describe(self) -> str:
        if self.pipeline_id is None:
            return f"{self.forge} workflow dispatched"
        return f"{self.forge} pipeline {self.pipeline_id}" + (
            f" ({self.web_url})" if self.web_url else ""
        )


class Trigger(Protocol):
    forge: str

    def start(self, request: RetrainRequest) -> Started: ...


def _status_error(forge: str, status: int, detail: str) -> ForgeError:
    return ForgeError(f"{forge} answered {status}: {detail[:200]}", retryable=status >= 500)


class GitLabTrigger:
    forge = "gitlab"

    def __init__(self, url: str, project: str, ref: str, token: str, timeout: float) -> None:
        import gitlab

        # No retries inside python-gitlab: the receiver counts and logs its own.
        self._gl = gitlab.Gitlab(url, timeout=timeout, retry_transient_errors=False)
        self._project = self._gl.projects.get(project, lazy=True)
        self._ref = ref
        self._token = token

    def start(self, request: RetrainRequest) -> Started:
        import gitlab
        import requests

        try:
            pipeline = self._project.trigger_pipeline(
                self._ref, self._token, variables=request.variables()
            )
        except gitlab.exceptions.GitlabError as exc:
            code = exc.response_code or 0
            if code == 0:
                raise ForgeError(f"gitlab: {exc.error_message}", retryable=True) from None
            raise _status_error("gitlab", code, str(exc.error_message)) from None
        except requests.RequestException as exc:
            raise ForgeError(f"gitlab unreachable: {type(exc).__name__}", retryable=True) from None
        attrs = pipeline.attributes
        return Started("gitlab", int(attrs.get("id", 0)), str(attrs.get("web_url", "")))


class ForgejoTrigger:
    forge = "forgejo"

    def __init__(
        self, url: str, repo: str, workflow: str, ref: str, token: str, timeout: float
    ) -> None:
        owner, name = repo.split("/", 1)
        self._url = (
            f"{url}/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
            f"/actions/workflows/{quote(workflow, safe='')}/dispatches"
        )
        self._ref = ref
        self._headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        self._timeout = timeout

    def start(self, request: RetrainRequest) -> Started:
        body = {"ref": self._ref, "inputs": request.inputs()}
        try:
            answer = httpx.post(self._url, json=body, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ForgeError(f"forgejo unreachable: {type(exc).__name__}", retryable=True) from None
        if answer.status_code not in (200, 201, 204):
            raise _status_error("forgejo", answer.status_code, answer.text)
        return Started("forgejo")


def make_trigger(settings: RetrainSettings) -> Trigger:
    token = settings.forge_secret()
    timeout = settings.forge_timeout_seconds
    if settings.forge == "gitlab":
        return GitLabTrigger(settings.forge_url, settings.project, settings.ref, token, timeout)
    return ForgejoTrigger(
        settings.forge_url, settings.project, settings.workflow, settings.ref, token, timeout
    )
