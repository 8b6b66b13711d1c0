#!/usr/bin/env bash
# Runs the end-to-end test crate against the local control plane. Starts the plane when it
# is not running and then always stops it again, failure or not; a plane that was already
# running (a developer's `make up`) is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
plane=e2e/controlplane/plane.sh

# The tests run a private copy of the controller: the cargo target directory is shared
# (by other checkouts too), and a build elsewhere must not swap the binary mid-run.
bin_dir=$(mktemp -d)
if "$plane" status >/dev/null 2>&1; then
    echo "e2e: reusing the running control plane"
    trap 'rm -rf "$bin_dir"' EXIT
else
    trap 'rm -rf "$bin_dir"; "$plane" down' EXIT
    "$plane" up
fi
# KUBECONFIG, SLUICE_E2E_KUBECONFIG, and the plane's own kubectl first on PATH.
eval "$("$plane" env)"
# The tests start real controller processes (and kill them, to test restarts); the
# binaries sluice-controller and kubectl-sluice are in the `sluice` package (cmd/).
cargo build -p sluice --bins
# (kubectl-sluice beside it: the replay test runs the plugin.)
cp "${CARGO_TARGET_DIR:-target}/debug/sluice-controller" "${CARGO_TARGET_DIR:-target}/debug/kubectl-sluice" "$bin_dir/"
SLUICE_CONTROLLER_BIN="$bin_dir/sluice-controller"
export SLUICE_CONTROLLER_BIN
# SLUICE_E2E_TESTS picks test files (e.g. "--test canary --test bluegreen"); the
# arguments are filters for the test binaries.
# shellcheck disable=SC2086
cargo test -p sluice-e2e ${SLUICE_E2E_TESTS:-} -- "$@"
