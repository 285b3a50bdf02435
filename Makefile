# Every CI job (GitLab and Forgejo alike) calls one of these targets, so the forges cannot drift.
SHELL := /bin/bash
PYTHON ?= python3
# A CI runner may keep the environment elsewhere (VENV=/path, e.g. cached between jobs).
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Named after the locks' content, not their mtime: a fresh CI checkout (new mtimes) reuses a
# cached venv of the same locks instead of re-syncing it.
LOCK_HASH := $(shell cat requirements-dev.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.synced-$(LOCK_HASH)

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup run example-image test test-unit test-random lint format lock system-deps bench clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@# Bytecode now, not at each start: CI images often set PYTHONDONTWRITEBYTECODE, and then
	@# every `mlops` call would compile typer and pydantic again (0.5 s instead of 0.2 s).
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

setup: $(STAMP) ## create .venv from the hashed lock (idempotent)

run: setup ## run the whole example pipeline on embedded defaults
	$(BIN)/dvc repro
	@$(BIN)/mlops where

EXAMPLE_IMAGE ?= .local/example.png
# The example's own picture writer; a tabular card gets a JSON request instead (mlops example-input).
EXAMPLE_WRITER ?= $(BIN)/python -m example.sample
example-image: setup ## an input to try the model with, after its card: a picture (.local/example.png) or a JSON request
	$(BIN)/mlops example-input --out "$(EXAMPLE_IMAGE)" --writer "$(EXAMPLE_WRITER)"

test: setup system-deps ## run every test; integration tests are required
	$(BIN)/pytest

test-unit: setup ## only the tests that need no external server
	$(BIN)/pytest -m "not integration"

# pytest-random-order shuffles modules and the tests within each (module fixtures stay one per
# module); it prints the seed, and SEED=n repeats that order. Plain `make test` keeps the order.
test-random: setup system-deps ## every test in a random order (SEED=n to repeat one)
	$(BIN)/pytest $(if $(SEED),--random-order-seed=$(SEED),--random-order)

lint: setup ## black --check and flake8 on the code, tests and benches; mypy --strict on src/, service/ and monitoring/
	$(BIN)/black --check src service tests bench monitoring
	$(BIN)/flake8 src service tests bench monitoring
	$(BIN)/mypy

format: setup ## apply black
	$(BIN)/black src service tests bench monitoring

lock: ## re-pin requirements after editing pyproject.toml or service/requirements.in
	uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock
	uv pip compile -q service/requirements.in --python-version 3.11 --generate-hashes -o service/requirements.lock

system-deps: ## install the servers the integration tests use (apt, as root; no-op when present)
	@bash .ci/install-system
	@bash .ci/install-gitlab-ci-local
	@bash .ci/install-k8s-tools
	@bash .ci/install-kserve-client

clean: ## remove pipeline outputs and .local (not the venv, not tracked files)
	git clean -fdXq -- data models eval reports
	rm -rf .local

# --- area targets (service, registry, slurm) go below this line ---

# --- service ---
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000
# `make serve` publishes and moves an alias: only in this registry, never an exported MLOPS_REGISTRY_URL.
SERVE_REGISTRY ?= .local/registry

.PHONY: serve bench-service
serve: setup ## serve the model the pipeline just trained (local registry, alias dev, auth on)
	$(BIN)/python -m service.dev --host $(SERVE_HOST) --port $(SERVE_PORT) --registry $(SERVE_REGISTRY)

bench-service: setup ## /predict and V2 throughput: service vs a hand-written FastAPI app and MLServer
	@bash bench/install-mlserver
	$(BIN)/python -m bench.service

# --- registry ---
REGISTRY_ALIAS ?= staging

.PHONY: publish
publish: setup ## publish models/ under TAG (default: the git tag on HEAD), move REGISTRY_ALIAS to it
	$(BIN)/mlops registry publish $(if $(TAG),--tag $(TAG)) --move-alias $(REGISTRY_ALIAS)

# --- slurm ---
CLUSTER_DIR ?= .local/cluster

.PHONY: cluster-up cluster-down bench-offload
cluster-up: setup system-deps ## start a local single-node Slurm + sshd login node (root); then: source .local/cluster/env
	$(BIN)/python -m machinery.slurm.localcluster up --dir $(CLUSTER_DIR)

cluster-down: setup ## stop the local Slurm cluster started by cluster-up
	$(BIN)/python -m machinery.slurm.localcluster down --dir $(CLUSTER_DIR)

bench-offload: setup system-deps ## offload overhead (our steps, queue wait apart) on a local Slurm, venv and charliecloud modes beside it, CLI start-up
	$(BIN)/python bench/offload.py

.PHONY: bench-sweep
bench-sweep: setup system-deps ## a 6-point sweep as one Slurm array vs six offloads vs six local runs (docs/sweeps.md)
	$(BIN)/python bench/sweep.py

# --- k8s and monitoring ---
.PHONY: dashboards k8s-render
dashboards: setup ## regenerate monitoring/envs/<env>/ (rules, PrometheusRule, dashboard) per overlay
	$(BIN)/python -m monitoring.generate

k8s-render: setup ## print the manifests Argo CD applies for ENV (staging or prod)
	$(BIN)/kubectl kustomize k8s/overlays/$(or $(ENV),staging)


# --- ci (the jobs of .gitlab-ci.yml and .forgejo/workflows call only these; docs/ci.md) ---
# DVC remote for CI: DVC_REMOTE_URL (s3://bucket/dvcstore) + AWS_* from CI variables, written to
# .dvc/config.local so nothing secret or forge-specific lands in the repository.
DVC_REMOTE_URL ?=
# Forgejo hands an unset variable to a job as an empty string: unexport those, so every tool
# sees them as unset (an empty MLOPS_SLURM_TRANSPORT or AWS_ENDPOINT_URL is an error, not a default).
# A value is a secret, never make code: $(value) reads it unexpanded ($($(v)) would run a
# `$(shell …)` inside a password and take `$(pw)` for empty), and `unexport $$(v)` expands only
# the name. Environment values reach the recipes byte for byte (make never re-expands them), so
# recipes read them from the shell ("$$X"), never as $(X).
$(foreach v,$(filter MLOPS_% AWS_% DVC_% IMAGE_%,$(.VARIABLES)),$(if $(value $(v)),,$(eval unexport $$(v))))
STAGING_ENV ?= staging

.PHONY: ci-remote pipeline restore publish-ci bump promote comment bench-ci
ci-remote: setup
	@if [ -n "$${DVC_REMOTE_URL:-}" ]; then \
	  $(BIN)/dvc remote add --local --force --default ci "$$DVC_REMOTE_URL" && \
	  if [ -n "$${AWS_ENDPOINT_URL:-}" ]; then \
	    $(BIN)/dvc remote modify --local ci endpointurl "$$AWS_ENDPOINT_URL"; fi; \
	fi

# The pipeline job's log, kept as an artifact even on failure: the comment job reads how it ended.
PIPELINE_LOG ?= reports/ci/pipeline.log
pipeline: ci-remote ## CI: dvc repro --pull (unchanged stages restored, not re-run), dvc push --run-cache; params.yaml's sweep: section, if any
	@mkdir -p $(dir $(PIPELINE_LOG))
	@# A retrain run (docs/retraining.md) first brings imported data (dvc import-url) up to date.
	@if [ -n "$${MLOPS_RETRAIN_REASON:-}" ]; then $(BIN)/mlops retrain update-imports; fi
	set -o pipefail; $(BIN)/dvc repro --pull 2>&1 | tee $(PIPELINE_LOG)
	$(BIN)/dvc push --run-cache
	@# --push: dvc exp push the points to the project's git remote (MLOPS_GIT_TOKEN), so the
	@# comment's `dvc exp pull`/`apply` works after this job's clone is gone (docs/sweeps.md).
	set -o pipefail; $(BIN)/mlops sweep --from-params --if-present --allow-failed-points --push 2>&1 \
	  | tee -a $(PIPELINE_LOG) || { echo "ERROR: the sweep: section's sweep failed (docs/sweeps.md)" \
	  | tee -a $(PIPELINE_LOG); exit 1; }

restore: ci-remote ## CI: restore the pipeline's outputs from the DVC remote's run-cache
	@if [ -n "$${MLOPS_RETRAIN_REASON:-}" ]; then $(BIN)/mlops retrain update-imports; fi
	$(BIN)/dvc repro --pull

publish-ci: setup ## CI on main: experiment tag on HEAD (reused, or created and pushed), then publish
	tag=$$($(BIN)/mlops ci tag --push --quiet) && $(MAKE) --no-print-directory publish TAG="$$tag"

bump: setup ## CI on main: pin the pushed image (IMAGE_RECORD) in k8s/overlays/staging, push
	$(BIN)/mlops deploy bump --env $(STAGING_ENV) --image-file "$${IMAGE_RECORD:-reports/image.json}"

promote: setup ## manual: alias prod → staging's tag and prod overlay → staging's image, one step
	$(BIN)/mlops deploy promote

# A retrain run (docs/retraining.md): the reason comes from MLOPS_RETRAIN_* (trigger variables
# on GitLab, workflow inputs on Forgejo); staging only, never prod.
.PHONY: retrain-publish
retrain-publish: setup ## CI retrain run: new retrain-* tag on HEAD, publish, move staging (with the alert's reason)
	$(BIN)/mlops retrain publish

# Restores the outputs only after a pipeline that passed: after a failure `dvc repro` would run
# the failed stage again (another cluster job); the comment then says what failed instead.
comment: setup ## CI on a merge/pull request: post or update the one sticky comment (also on failure)
	@if [ "$$($(BIN)/mlops comment --pipeline-log $(PIPELINE_LOG) --outcome)" = success ]; then \
	  $(MAKE) --no-print-directory restore; fi
	$(BIN)/mlops comment --pipeline-log $(PIPELINE_LOG)

# The `test` job: the fork's own tests/example/ plus the template's checks of the files a fork
# edits (dvc.yaml's deps, nothing outside the example imports it, both forges' CI files). No
# server (`integration`) and no `slow` test: those reproduce the whole pipeline, which the
# pipeline job does for real; `make test` runs them. JUnit for the MR widget and the comment;
# coverage by package name: Cobertura then names files from the project root (src/example/…),
# which is how GitLab matches them to the MR diff.
TEST_CI_PATHS ?= tests/example tests/pipeline/test_deps.py tests/fork/test_independence.py \
  tests/ci/test_workflows.py
JUNIT_XML ?= reports/tests/junit.xml
COVERAGE_XML ?= reports/tests/coverage.xml
.PHONY: test-ci
test-ci: setup ## CI: the fork's tests/example/ + the template's fork checks, no server (JUnit, coverage)
	$(BIN)/pytest -m "not integration and not slow" -p no:cacheprovider --junitxml=$(JUNIT_XML) \
	  --cov=example --cov-report=term --cov-report=xml:$(COVERAGE_XML) $(TEST_CI_PATHS)

# --- image ---
# CI variables (GitLab's CI_REGISTRY_* by default; IMAGE_* for Forgejo/Harbor): docs/image.md.
.PHONY: image sbom image-base bench-image
image: setup ## build service/Dockerfile (buildah), push NAME:COMMIT_SHA, write reports/image.json
	$(BIN)/mlops image build
	$(BIN)/mlops image push

sbom: setup ## CycloneDX SBOM of the built image's Python packages -> reports/sbom.cdx.json
	$(BIN)/mlops image sbom

image-base: ## no registry to pull from: make localhost/python:3.11-slim-bookworm from Debian (root)
	bash .ci/image/bootstrap-base --import

bench-image: setup system-deps ## image size, cold and warm build seconds (private storage, removed)
	$(BIN)/python bench/image.py


bench-ci: setup system-deps ## wall time of the MR pipeline, the no-op rerun and main on gitlab-ci-local
	$(BIN)/python bench/ci.py

# --- doctor and hooks (docs/doctor.md) ---
.PHONY: doctor bench-doctor hooks
doctor: setup ## check every CI variable against the real S3, Slurm, forge and registry
	$(BIN)/mlops doctor

bench-doctor: setup ## wall time of mlops doctor on a fully wrong configuration, per check
	$(BIN)/python bench/doctor.py

hooks: setup ## install the git hooks of .pre-commit-config.yaml (black, flake8, mypy, DVC)
	$(BIN)/pre-commit install --hook-type pre-commit --hook-type pre-push --hook-type post-checkout
