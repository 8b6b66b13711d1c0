# sluice: the two commands are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Slow builds live outside the repository, keyed by version, so fresh clones reuse them.
SLUICE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sluice
RUST_VERSION := $(shell rustc --version 2>/dev/null | cut -d' ' -f2)
export SLUICE_CACHE
export CARGO_TARGET_DIR ?= $(SLUICE_CACHE)/cargo-target/rust-$(RUST_VERSION)
export CARGO_TERM_COLOR ?= never

PLANE := e2e/controlplane/plane.sh
HELM = $(shell . e2e/controlplane/lib.sh && echo "$$HELM_BIN/helm")
CRD_DIRS := crds/yaml

.PHONY: help test demo deps binaries build lint fmt crds crds-check unit e2e e2e-rbac release bench bench-scale bench-compare bench-argo up down status

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: deps binaries lint unit e2e ## Everything CI runs: install, build, lint, unit and end-to-end tests
	@echo "make test: all tiers passed"

demo: deps binaries build ## Start the plane, Prometheus and the controller; walk a sample canary through its steps
	e2e/demo.sh

deps: ## Install the Debian packages the plane and tests need (apt-get, when missing)
	e2e/controlplane/deps.sh

binaries: ## Build (or reuse from the cache) kube-apiserver, kcm, scheduler, kubectl, etcd, kwok, helm
	e2e/controlplane/build.sh

build: ## Build the workspace
	cargo build --workspace --all-targets

fmt: ## Format the code
	cargo fmt --all

lint: crds-check binaries ## cargo fmt --check, clippy with warnings as errors, CRD drift check, helm lint, shellcheck
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(HELM) lint --strict charts/sluice
	shellcheck -x -P SCRIPTDIR $$(find e2e -name '*.sh' | sort)

crds: ## Regenerate the CRD YAML (crds/yaml, the chart's templates/crds, docs/api.md) from the Rust types
	cargo run -q -p sluice-api --bin crdgen -- $(CRD_DIRS)

crds-check: ## Fail when the committed CRD YAML (or the chart's templates of it) differs from the Rust types
	cargo run -q -p sluice-api --bin crdgen -- --check $(CRD_DIRS)

unit: ## Unit and adapter tests (no cluster needed)
	cargo test --workspace --exclude sluice-e2e

e2e: ## End-to-end tests against the real local control plane (started and stopped here)
	e2e/run-e2e.sh

e2e-rbac: ## The canary, analysis and blue-green e2e suites with the controller running as the chart's ServiceAccount
	SLUICE_E2E_CONTROLLER_AS=chart SLUICE_E2E_TESTS="--test canary --test analysis --test bluegreen" e2e/run-e2e.sh

release: ## Build the release sluice-controller (the Dockerfile's build step); check it takes every flag the chart passes
	cargo build --release --locked -p sluice --bin sluice-controller
	e2e/chart-flags.sh "$(CARGO_TARGET_DIR)/release/sluice-controller"

bench: ## Decision-quality benchmarks: the judge vs a static threshold, then every method peeked at every interval (prints figures)
	cargo bench -p sluice-controller --bench decision_quality
	cargo bench -p sluice-controller --bench peeking

# Scale benchmark (issue 11): figures, not tests, and never part of `make test`.
# N, REPLICAS, STEPS, IDLE, SETTLE pass through to e2e/bench/bench.sh.
bench-scale: deps binaries ## Scale benchmark of sluice alone on the audited plane: N=200 REPLICAS=1 STEPS=... IDLE=0
	e2e/bench/bench.sh scale

bench-compare: deps binaries bench-argo ## The same workload for sluice, then Argo Rollouts, one plane; both rows and the ratios
	e2e/bench/bench.sh compare

bench-argo: ## Build (or reuse from the cache) Argo Rollouts' controller for bench-compare
	e2e/bench/build-argo.sh >/dev/null

up: deps binaries ## Start the local control plane and Prometheus
	$(PLANE) up

down: ## Stop the demo's controller, the local control plane and Prometheus
	e2e/demo.sh stop-controller
	$(PLANE) down

status: ## Show what of the local control plane runs
	$(PLANE) status
