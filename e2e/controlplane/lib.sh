# Shared settings for the local control plane scripts. Sourced, not executed.
# shellcheck shell=bash
# The settings below are read by the scripts that source this file.
# shellcheck disable=SC2034

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
. "$E2E_DIR/versions.env"

# Everything slow to build lives outside the repository, keyed by version, so a fresh
# clone reuses it and a version bump rebuilds only what changed.
SLUICE_CACHE="${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
BIN_CACHE="$SLUICE_CACHE/bin"
K8S_BIN="$BIN_CACHE/kubernetes-$KUBERNETES_VERSION"
ETCD_BIN="$BIN_CACHE/etcd-$ETCD_VERSION"
KWOK_BIN="$BIN_CACHE/kwok-$KWOK_VERSION"
HELM_BIN="$BIN_CACHE/helm-$HELM_VERSION"
GATEWAY_API_DIR="$SLUICE_CACHE/gateway-api-$GATEWAY_API_VERSION"
ISTIO_API_DIR="$SLUICE_CACHE/istio-api-$ISTIO_API_VERSION"
# Built from this repository's e2e/gitops-health, so keyed by its sources too: an edit of
# the tool rebuilds it, an unchanged tool is reused by every checkout.
GITOPS_HEALTH_SRC="$E2E_DIR/gitops-health"
GITOPS_HEALTH_KEY=$(cat "$GITOPS_HEALTH_SRC/go.mod" "$GITOPS_HEALTH_SRC/go.sum" "$GITOPS_HEALTH_SRC"/*.go 2>/dev/null | sha256sum | cut -c1-12)
GITOPS_HEALTH_BIN="$BIN_CACHE/gitops-health-$CLI_UTILS_VERSION-$GOPHER_LUA_VERSION-$GITOPS_HEALTH_KEY"

# Runtime state of the running plane (PKI, logs, etcd data, kubeconfig). Outside the repo
# so that `git clean` never races a running apiserver.
SLUICE_STATE="${SLUICE_STATE:-$SLUICE_CACHE/state}"
CLUSTER_NAME="${SLUICE_CLUSTER:-sluice}"

log() { printf '%s [controlplane] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
