#!/usr/bin/env bash
# The scale benchmark (issue 11): one controller at a time against N Rollouts on the local
# plane, started with the apiserver audit log on, each controller on a client certificate
# of its own so that only its requests are counted (the harness acts as admin, which is
# never audited). Prints figures; it is not a test and not part of `make test`.
#
#   bench.sh scale     sluice alone                       (make bench-scale)
#   bench.sh compare   sluice, then Argo Rollouts, same plane, same workload, side by
#                      side with sluice/argo ratios      (make bench-compare)
#
# Settings (environment): N (200), REPLICAS (1), STEPS (setWeight=20,pause=5s,
# setWeight=50,pause=5s), IDLE (0: seconds of rest after the update, writes counted),
# SETTLE (40), BENCH_TIMEOUT (3600 s per wait), BENCH_OUT (e2e/artifacts/bench-<time>),
# BENCH_ARGS (extra arguments for the harness's `run`), and the plane's own SLUICE_*.
# The plane is started with SLUICE_AUDIT=1 unless one is already up with it; one this
# script started is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
plane=e2e/controlplane/plane.sh

mode=${1:-}
case "$mode" in
    scale | compare) ;;
    *) echo "usage: $0 scale|compare" >&2; exit 2 ;;
esac

N=${N:-200}
REPLICAS=${REPLICAS:-1}
STEPS=${STEPS:-setWeight=20,pause=5s,setWeight=50,pause=5s}
IDLE=${IDLE:-0}
SETTLE=${SETTLE:-40}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}
BENCH_OUT=${BENCH_OUT:-e2e/artifacts/bench-$(date -u +%Y%m%dT%H%M%SZ)}
target=${CARGO_TARGET_DIR:-target}

log() { printf '%s [bench] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BENCH_OUT"
# What is measured: the controller in release mode, the harness too (it shares 2 cores).
log "building sluice-controller and the harness (release)"
cargo build --release -p sluice --bin sluice-controller
cargo build --release -p sluice-e2e --bin bench-scale
# Private copies: a build elsewhere in the shared target must not swap them mid-run.
cp "$target/release/sluice-controller" "$target/release/bench-scale" "$BENCH_OUT/"
harness="$BENCH_OUT/bench-scale"
if [ "$mode" = compare ]; then
    argo_dir=$(e2e/bench/build-argo.sh)
fi

# kwok's fake nodes take 110 pods each; during an update a Rollout has up to two
# revisions' pods, and terminating ones linger briefly.
nodes_needed=$(((N * REPLICAS * 5 / 2 + 109) / 110 + 1))
[ "$nodes_needed" -ge 3 ] || nodes_needed=3
export SLUICE_AUDIT=1
if "$plane" status >/dev/null 2>&1; then
    log "reusing the running plane"
else
    [ "${SLUICE_NODES:-3}" -ge "$nodes_needed" ] || export SLUICE_NODES=$nodes_needed
    trap '"$plane" down' EXIT
    "$plane" up
fi
eval "$("$plane" env)"
ready=$(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ' || true)
if [ "$ready" -lt "$nodes_needed" ]; then
    log "error: $ready fake nodes hold $((ready * 110)) pods; N=$N needs $nodes_needed nodes:" \
        "'$plane down', then SLUICE_NODES=$nodes_needed"
    exit 1
fi
[ -n "${SLUICE_AUDIT_LOG:-}" ] ||
    { log "error: the running plane has no audit log; run '$plane down' first"; exit 1; }

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- controller cmd crds || commit="$commit+dirty"
{
    echo "commit: $commit"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)," \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "loadavg before: $(cat /proc/loadavg)"
    echo "N=$N REPLICAS=$REPLICAS STEPS=$STEPS IDLE=$IDLE SETTLE=$SETTLE"
} | tee "$BENCH_OUT/run.txt" >&2

# run_one CONTROLLER USER BIN CRDS: one measured run; figures in $BENCH_OUT/CONTROLLER.json.
run_one() {
    local controller=$1 user=$2 bin=$3 crds=$4 kc="$BENCH_OUT/$1.kubeconfig"
    "$plane" client-kubeconfig "$user" "$kc"
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
    "$harness" run --controller "$controller" --bin "$bin" --controller-kubeconfig "$kc" \
        --user "$user" --crds "$crds" --n "$N" --replicas "$REPLICAS" --steps "$STEPS" \
        --idle "$IDLE" --settle "$SETTLE" --timeout "$BENCH_TIMEOUT" --log-dir "$BENCH_OUT" \
        --label "$controller @ $commit" --out "$BENCH_OUT/$controller.json" ${BENCH_ARGS:-} \
        | tee "$BENCH_OUT/$controller.txt"
}

run_one sluice bench:sluice "$BENCH_OUT/sluice-controller" crds/yaml
if [ "$mode" = compare ]; then
    # The harness stopped sluice (and waited for it to exit) and deleted its namespace
    # with everything in it before returning; Argo gets a fresh namespace.
    run_one argo-rollouts bench:argo-rollouts "$argo_dir/rollouts-controller" "$argo_dir/crds"
    echo
    "$harness" compare "$BENCH_OUT/sluice.json" "$BENCH_OUT/argo-rollouts.json" |
        tee "$BENCH_OUT/compare.txt"
fi
echo "loadavg after: $(cat /proc/loadavg)" | tee -a "$BENCH_OUT/run.txt" >&2
log "figures and logs: $BENCH_OUT"
