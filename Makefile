# Every CI job (GitLab and Forgejo alike) calls one of these targets, so the forges cannot drift.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup run test test-unit lint format lock system-deps bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

setup: $(STAMP) ## create .venv from the hashed lock (idempotent)

run: setup ## run the whole example pipeline on embedded defaults
	$(BIN)/dvc repro
	@$(BIN)/mlops where

test: setup system-deps ## run every test; integration tests are required
	$(BIN)/pytest

test-unit: setup ## only the tests that need no external server
	$(BIN)/pytest -m "not integration"

lint: setup ## black --check, flake8, mypy --strict on src/ and service/
	$(BIN)/black --check src service tests bench
	$(BIN)/flake8 src service tests bench
	$(BIN)/mypy

format: setup ## apply black
	$(BIN)/black src service tests bench

lock: ## re-pin requirements after editing pyproject.toml or service/requirements.in
	uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock
	uv pip compile -q service/requirements.in --python-version 3.11 --generate-hashes -o service/requirements.lock

system-deps: ## install the servers the integration tests use (apt, as root; no-op when present)
	@bash .ci/install-system

clean: ## remove pipeline outputs (not the venv)
	rm -rf data models eval reports .local

# --- area targets (service, registry, slurm) go below this line ---

# --- service ---
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000
# `make serve` publishes and moves an alias: only in this registry, never an exported MLOPS_REGISTRY_URL.
SERVE_REGISTRY ?= .local/registry

.PHONY: serve bench-service
serve: setup ## serve the model the pipeline just trained (local registry, alias dev, auth on)
	$(BIN)/python -m service.dev --host $(SERVE_HOST) --port $(SERVE_PORT) --registry $(SERVE_REGISTRY)

bench-service: setup ## /predict throughput: service (auth on/off) vs a hand-written FastAPI app
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

bench-offload: setup system-deps ## offload overhead of the train stage on a local Slurm (cold and warm)
	$(BIN)/python bench/offload.py
