#!/usr/bin/env bash
# Checks that a sluice-controller binary takes every flag the Helm chart passes: renders
# the chart's Deployment with every option on, then
#   1. finds each flag among those `BIN --help` lists;
#   2. when the local control plane runs (SLUICE_E2E_KUBECONFIG set, as `plane.sh env`
#      sets it), starts BIN with exactly those arguments (addresses moved to free loopback
#      ports, $(POD_NAMESPACE) expanded as the kubelet would) and waits for it to start.
# Usage: e2e/chart-flags.sh BIN
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: e2e/chart-flags.sh BIN}
# shellcheck source=e2e/controlplane/lib.sh
. e2e/controlplane/lib.sh
helm="$HELM_BIN/helm"

mapfile -t args < <("$helm" template sluice charts/sluice \
    --set watchNamespace=default,instanceId=flags-check,dashboard.enabled=true \
    --set dashboard.readOnly=true,dashboard.secureCookie=true \
    --set controller.concurrency=4,controller.qps=50,controller.burst=100 \
    --show-only templates/deployment.yaml |
    sed -n '/^ *args:$/,/^ *env:$/p' | sed -n 's/^ *- //p')
[[ ${#args[@]} -gt 0 ]] || { echo "chart-flags: no args rendered" >&2; exit 1; }

known=$("$bin" --help | grep -o -- '--[a-z][a-z-]*' | sort -u)
missing=()
for arg in "${args[@]}"; do
    flag=${arg%%=*}
    grep -qx -- "$flag" <<<"$known" || missing+=("$flag")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "chart-flags: $bin does not know these flags the chart passes: ${missing[*]}" >&2
    exit 1
fi
echo "chart-flags: $bin --help lists all ${#args[@]} arguments the chart passes"

if [[ -z ${SLUICE_E2E_KUBECONFIG:-} ]]; then
    echo "chart-flags: no local control plane (SLUICE_E2E_KUBECONFIG unset); start not tried"
    exit 0
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run=()
for arg in "${args[@]}"; do
    arg=${arg//\$(POD_NAMESPACE)/default}
    [[ $arg == *=0.0.0.0:* ]] && arg="${arg%%=*}=127.0.0.1:$(free_port)"
    run+=("$arg")
done
log=$(mktemp)
POD_NAMESPACE=default "$bin" --kubeconfig "$SLUICE_E2E_KUBECONFIG" "${run[@]}" >"$log" 2>&1 &
pid=$!
# Stopped and waited for (SIGKILL after 10 s), so nothing of it outlives the check.
# shellcheck disable=SC2317  # run by the EXIT trap
stop() {
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$log"
}
trap stop EXIT
for _ in $(seq 100); do
    if grep -q "sluice controller starting" "$log"; then
        sleep 2
        if kill -0 "$pid" 2>/dev/null; then
            echo "chart-flags: started with the chart's arguments: ${run[*]}"
            exit 0
        fi
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
echo "chart-flags: $bin did not start with the chart's arguments:" >&2
cat "$log" >&2
exit 1
