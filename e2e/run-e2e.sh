#!/usr/bin/env bash
# Runs the end-to-end test crate against the local control plane. Starts the plane when it
# is not running and then always stops it again, failure or not; a plane that was already
# running (a developer's `make up`) is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
plane=e2e/controlplane/plane.sh

if "$plane" status >/dev/null 2>&1; then
    echo "e2e: reusing the running control plane"
else
    trap '"$plane" down' EXIT
    "$plane" up
fi
# KUBECONFIG, SLUICE_E2E_KUBECONFIG, and the plane's own kubectl first on PATH.
eval "$("$plane" env)"
# The tests start real controller processes (and kill them, to test restarts); the
# binaries sluice-controller and kubectl-sluice are in the `sluice` package (cmd/).
cargo build -p sluice --bins
SLUICE_CONTROLLER_BIN="${CARGO_TARGET_DIR:-target}/debug/sluice-controller"
export SLUICE_CONTROLLER_BIN
cargo test -p sluice-e2e -- "$@"
