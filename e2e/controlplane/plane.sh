#!/usr/bin/env bash
# One entry point for the local control plane the e2e tests and the demo run against:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes whose
# pods go Running/Ready) started by `kwokctl --runtime binary` from the locally built
# binaries, plus a Prometheus that scrapes whatever the tests register. Everything listens
# on 127.0.0.1 and lives under $SLUICE_STATE.
#
#   plane.sh up       start (or confirm) a healthy plane; waits until it is usable
#   plane.sh down     stop everything and check nothing of ours is left listening
#   plane.sh status   one line per component; exit 1 unless all are running
#   plane.sh env      eval "$(plane.sh env)" -> KUBECONFIG, SLUICE_PROMETHEUS_URL, PATH
#   plane.sh restart-apiserver   stop kube-apiserver and start it again (a fault for tests)
#   plane.sh client-kubeconfig NAME FILE   write a kubeconfig with a client certificate of its
#                     own (CN=NAME, groups system:masters and sluice:bench) signed by the
#                     plane's CA, so the audit log tells that client's requests apart
#
# Settings (environment):
#   SLUICE_APISERVER_PORT   kube-apiserver port (default 32766)
#   SLUICE_PROMETHEUS_PORT  Prometheus port (default 9090)
#   SLUICE_NODES            number of fake nodes (default 3)
#   SLUICE_UP_TIMEOUT       seconds to wait for each readiness step (default 120)
#   SLUICE_PROMETHEUS_BIN   Prometheus binary (default: Debian's /usr/bin/prometheus)
#   SLUICE_AUDIT            1: kube-apiserver writes an audit log (Metadata level) of the
#                           requests of clients in group sluice:bench (client-kubeconfig)
#                           to $SLUICE_STATE/audit/audit.log; off by default (the
#                           benchmark needs it, the e2e suite does not)
#
# Scrape targets: drop Prometheus file_sd JSON files into $SLUICE_STATE/prometheus/targets/
# (e.g. [{"targets":["127.0.0.1:8080"],"labels":{"job":"sluice"}}]); they are picked up
# within a couple of seconds. A fresh `up` clears that directory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

APISERVER_PORT="${SLUICE_APISERVER_PORT:-32766}"
# The other components get the ports just below the apiserver's. Left to itself kwokctl
# picks free ports counting down from 32767 without excluding the apiserver port it was
# given, so etcd's peer port landed on 32766 and the apiserver could not bind.
ETCD_PORT=$((APISERVER_PORT - 1))
ETCD_PEER_PORT=$((APISERVER_PORT - 2))
KCM_PORT=$((APISERVER_PORT - 3))
SCHEDULER_PORT=$((APISERVER_PORT - 4))
KWOK_PORT=$((APISERVER_PORT - 5))
PROMETHEUS_PORT="${SLUICE_PROMETHEUS_PORT:-9090}"
NODES="${SLUICE_NODES:-3}"
UP_TIMEOUT="${SLUICE_UP_TIMEOUT:-120}"
PROMETHEUS_BIN="${SLUICE_PROMETHEUS_BIN:-/usr/bin/prometheus}"
AUDIT="${SLUICE_AUDIT:-0}"
AUDIT_DIR="$SLUICE_STATE/audit"
# Only clients in this group are audited: the benchmark's controllers get it, the
# harness (admin) and the plane's own components do not, so they are never counted.
AUDIT_GROUP="sluice:bench"

KUBECTL="$K8S_BIN/kubectl"
KWOKCTL="$KWOK_BIN/kwokctl"
# The e2e-only pod stages that make labelled Job pods succeed or fail.
JOB_STAGES="$(cd "$(dirname "$0")" && pwd)/kwok-job-stages.yaml"
KUBECONFIG_PATH="$SLUICE_STATE/kubeconfig"
PLANE_ENV="$SLUICE_STATE/plane.env"   # ports the running plane was started with
LOG_DIR="$SLUICE_STATE/logs"          # logs of this script's own helpers (kwokctl)
PROM_DIR="$SLUICE_STATE/prometheus"
PROM_PID="$PROM_DIR/prometheus.pid"
PROM_LOG="$PROM_DIR/prometheus.log"

# kwokctl keeps clusters under $KWOK_WORKDIR/clusters/<name>; pointing it into our state
# keeps ~/.kwok untouched and makes `down` + `rm -rf $SLUICE_STATE` a complete reset.
export KWOK_WORKDIR="$SLUICE_STATE/kwok"
WORKDIR="$KWOK_WORKDIR/clusters/$CLUSTER_NAME"
# kubectl (ours and the one kwokctl runs) caches discovery here instead of ~/.kube/cache.
KUBECACHE="$SLUICE_STATE/kube-cache"
export KUBECACHEDIR="$KUBECACHE"

# Component name as shown to users -> kwokctl's name (its pid and log files are named so).
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus"
kwok_name() { if [ "$1" = kwok ]; then echo kwok-controller; else echo "$1"; fi; }

pid_file() {
    if [ "$1" = prometheus ]; then echo "$PROM_PID"; else echo "$WORKDIR/pids/$(kwok_name "$1").pid"; fi
}
log_file() {
    if [ "$1" = prometheus ]; then echo "$PROM_LOG"; else echo "$WORKDIR/logs/$(kwok_name "$1").log"; fi
}

# alive PID: running and not a zombie. kwokctl never reaps the components it forks, so a
# component that dies while kwokctl still runs lingers as a zombie that `kill -0` accepts.
alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# is_ours PID: alive and started for this state directory (guards against reused pids).
is_ours() {
    alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$SLUICE_STATE/"
}

component_pid() {
    local f pid
    f=$(pid_file "$1")
    [ -f "$f" ] || return 1
    pid=$(tr -dc 0-9 <"$f")
    is_ours "$pid" || return 1
    echo "$pid"
}

# Listening TCP addresses of a pid, comma separated.
listen_addrs() {
    ss -Hltnp 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { print $4 }' | sort -u | paste -sd, -
}

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -1; }

# running KEY: a setting of the running plane, as recorded by `up`.
running() { sed -n "s/^$1=//p" "$PLANE_ENV" 2>/dev/null; }

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# kwokctl forks the components; fd 9 (our lock) must not leak into them or the lock would
# outlive this script.
kwokctl() { "$KWOKCTL" --name "$CLUSTER_NAME" "$@" 9>&-; }

# wait_until SECONDS CMD...: poll CMD every 0.5s.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# fail_component NAME REASON: name the component, show where its log is and how it ends,
# stop what was started (the files stay for inspection; the next `up` cleans them) and exit.
fail_component() {
    local name=$1 reason=$2 lf
    lf=$(log_file "$name")
    log "error: $name failed to start: $reason"
    log "error: $name log: $lf (last 20 lines follow)"
    if [ -s "$lf" ]; then
        tail -n 20 "$lf" | sed 's/^/    | /' >&2
    else
        echo "    | (log is empty or missing)" >&2
    fi
    # The usual cause on a shared machine; say who holds the port.
    local port
    port=$(grep -oE 'listen tcp [^ ]*:[0-9]+: bind: address already in use' "$lf" 2>/dev/null |
        tail -1 | sed -E 's/.*:([0-9]+): bind.*/\1/')
    if [ -n "$port" ]; then
        log "error: port $port is held by: $(port_owner "$port" || true)"
    fi
    stop_processes >/dev/null 2>&1 || true
    exit 1
}

# ---------------------------------------------------------------------------------------
# prerequisites

ensure_binaries() {
    "$(dirname "$0")/build.sh" --check && return 0
    log "control-plane binaries missing; building them (first run takes a while)"
    "$(dirname "$0")/build.sh"
}

ensure_prometheus() {
    [ -x "$PROMETHEUS_BIN" ] || "$(dirname "$0")/deps.sh"
    [ -x "$PROMETHEUS_BIN" ] || die "prometheus not found at $PROMETHEUS_BIN (set SLUICE_PROMETHEUS_BIN)"
}

# ---------------------------------------------------------------------------------------
# health

enough_nodes_ready() { [ "$(ready_nodes)" -ge "$NODES" ]; }

apiserver_ready() { [ "$(kc get --raw=/readyz --request-timeout=5s 2>/dev/null)" = ok ]; }

ready_nodes() {
    kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
        2>/dev/null | grep -c '^True$' || true
}

# The controller manager and scheduler only report healthy once they serve; without the
# controller manager no Deployment ever gets pods, so don't call the plane ready before.
component_healthy() {
    local pid addr
    pid=$(component_pid "$1") || return 1
    addr=$(listen_addrs "$pid" | cut -d, -f1)
    [ -n "$addr" ] && [ "$(curl -ksf --max-time 2 "https://$addr/healthz")" = ok ]
}

prometheus_ready() { curl -sf --max-time 2 "http://127.0.0.1:$1/-/ready" >/dev/null; }

healthy() {
    local c
    [ -f "$PLANE_ENV" ] || return 1
    for c in $COMPONENTS; do component_pid "$c" >/dev/null || return 1; done
    local running_api running_prom running_audit
    running_api=$(running APISERVER_PORT)
    running_prom=$(running PROMETHEUS_PORT)
    running_audit=$(running AUDIT)
    if [ "${running_audit:-0}" != "$AUDIT" ]; then
        die "the plane is up with SLUICE_AUDIT=${running_audit:-0};" \
            "run 'plane.sh down' before starting it with SLUICE_AUDIT=$AUDIT"
    fi
    if [ "$running_api" != "$APISERVER_PORT" ] || [ "$running_prom" != "$PROMETHEUS_PORT" ]; then
        die "the plane is up with apiserver port $running_api / prometheus port $running_prom;" \
            "run 'plane.sh down' before starting it on $APISERVER_PORT / $PROMETHEUS_PORT"
    fi
    apiserver_ready && prometheus_ready "$PROMETHEUS_PORT" && enough_nodes_ready
}

# ---------------------------------------------------------------------------------------
# start

write_kwokctl_config() {
    # The audited plane is the scale benchmark's. There kube-controller-manager's client,
    # at its default 20 requests/s (a pod create and its Event each), made ReplicaSets
    # reach their size at about 8 pods/s: at N=5,000 the plane, not the controller
    # measured, would set the pace for both controllers alike.
    local kcm_client=""
    [ "$AUDIT" = 1 ] && kcm_client='
      - key: kube-api-qps
        value: "400"
      - key: kube-api-burst
        value: "800"'
    # Every binary is a local path, so kwokctl only symlinks them into its workdir and
    # downloads nothing. bindAddress defaults to 0.0.0.0; the plane stays on loopback.
    cat >"$SLUICE_STATE/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: $KUBERNETES_VERSION
  bindAddress: 127.0.0.1
  kubeApiserverPort: $APISERVER_PORT
  etcdPort: $ETCD_PORT
  etcdPeerPort: $ETCD_PEER_PORT
  kubeControllerManagerPort: $KCM_PORT
  kubeSchedulerPort: $SCHEDULER_PORT
  kwokControllerPort: $KWOK_PORT
  kubeApiserverBinary: $K8S_BIN/kube-apiserver
  kubeControllerManagerBinary: $K8S_BIN/kube-controller-manager
  kubeSchedulerBinary: $K8S_BIN/kube-scheduler
  kubectlBinary: $K8S_BIN/kubectl
  etcdBinary: $ETCD_BIN/etcd
  kwokControllerBinary: $KWOK_BIN/kwok
  cacheDir: $KWOK_WORKDIR/cache
  quietPull: true
# One instance each, and nothing here restarts a process that exits: with leader election
# on, kube-controller-manager and kube-scheduler exit as soon as an apiserver outage
# outlasts their lease renewal (restart-apiserver), and the plane never heals.
componentsPatches:
  - name: kube-controller-manager
    extraArgs:
      - key: leader-elect
        value: "false"$kcm_client
  - name: kube-scheduler
    extraArgs:
      - key: leader-elect
        value: "false"
  # A second --config beside kwokctl's own (which holds the default stages): Job pods the
  # e2e tests label succeed or fail (see the file).
  - name: kwok-controller
    extraArgs:
      - key: config
        value: $JOB_STAGES
EOF
    [ "$AUDIT" = 1 ] || return 0
    mkdir -p "$AUDIT_DIR"
    # Metadata is the lowest level that records verb, resource, subresource, user, response
    # code and timestamps. RequestReceived is dropped: a request logs ResponseComplete, and
    # a watch also ResponseStarted when it opens.
    cat >"$AUDIT_DIR/policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
omitManagedFields: true
rules:
  - level: Metadata
    userGroups: ["$AUDIT_GROUP"]
  - level: None
EOF
    # Blocking mode (the default) never drops an event, which a count depends on; no
    # rotation, so one file holds the whole run.
    cat >>"$SLUICE_STATE/kwokctl.yaml" <<EOF
  - name: kube-apiserver
    extraArgs:
      - key: audit-policy-file
        value: $AUDIT_DIR/policy.yaml
      - key: audit-log-path
        value: $AUDIT_DIR/audit.log
      - key: audit-log-format
        value: json
      - key: audit-log-maxsize
        value: "0"
      - key: audit-log-mode
        value: blocking
EOF
}

start_kube() {
    write_kwokctl_config
    local klog="$LOG_DIR/kwokctl.log"
    # kubectl on PATH: kwokctl prefers it over downloading one for its readiness probe.
    # --kubeconfig= keeps it from adding a context to ~/.kube/config.
    # Run directly (not via the kwokctl function) so that $! is kwokctl itself and killing
    # it cannot leave it behind starting components after we cleaned up.
    PATH="$K8S_BIN:$PATH" "$KWOKCTL" --name "$CLUSTER_NAME" --config "$SLUICE_STATE/kwokctl.yaml" \
        create cluster --kubeconfig= --timeout "${UP_TIMEOUT}s" >"$klog" 2>&1 9>&- &
    local kpid=$! c pid
    # kwokctl itself would wait two minutes for an apiserver that already died; watch the
    # components instead and fail as soon as one of them exits.
    while kill -0 "$kpid" 2>/dev/null; do
        for c in prometheus etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
            [ -f "$(pid_file "$c")" ] || continue
            pid=$(tr -dc 0-9 <"$(pid_file "$c")")
            if ! alive "$pid"; then
                kill "$kpid" 2>/dev/null || true
                wait "$kpid" 2>/dev/null || true
                fail_component "$c" "process exited right after it was started"
            fi
        done
        sleep 0.3
    done
    if ! wait "$kpid"; then
        log "error: kwokctl create cluster failed; log: $klog (last 20 lines follow)"
        tail -n 20 "$klog" | sed 's/^/    | /' >&2
        stop_processes >/dev/null 2>&1 || true
        exit 1
    fi
    if grep -qi 'download' "$klog"; then
        log "warning: kwokctl mentions a download, see $klog"
    fi
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
        component_pid "$c" >/dev/null || fail_component "$c" "not running after kwokctl create"
    done
    # Flattened so the file stands alone (certificates inline) at a path that never moves.
    "$KUBECTL" --kubeconfig "$WORKDIR/kubeconfig.yaml" config view --raw --flatten \
        >"$KUBECONFIG_PATH.tmp"
    mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
    chmod 600 "$KUBECONFIG_PATH"

    wait_until "$UP_TIMEOUT" apiserver_ready ||
        fail_component kube-apiserver "/readyz not ok within ${UP_TIMEOUT}s"
    log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT ($((SECONDS - T0))s)"
}

start_prometheus() {
    mkdir -p "$PROM_DIR/targets"
    # Old samples and old test targets would only confuse a fresh plane.
    rm -rf "$PROM_DIR/data" "$PROM_DIR"/targets/*
    cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROMETHEUS_PORT"]
  # Tests register their endpoints by writing file_sd JSON here; a "job" label in the
  # file overrides the job name below.
  - job_name: file-sd
    file_sd_configs:
      - files: ["$PROM_DIR/targets/*.json"]
        refresh_interval: 1s
EOF
    # setsid + all fds redirected: the server must outlive this script and must not hold
    # the caller's pipes (or our lock on fd 9) open.
    setsid "$PROMETHEUS_BIN" \
        --config.file="$PROM_DIR/prometheus.yml" \
        --storage.tsdb.path="$PROM_DIR/data" \
        --storage.tsdb.retention.time=1d \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --web.enable-lifecycle \
        </dev/null >"$PROM_LOG" 2>&1 9>&- &
    echo $! >"$PROM_PID"
}

wait_prometheus() {
    local pid deadline=$((SECONDS + UP_TIMEOUT))
    pid=$(cat "$PROM_PID")
    until prometheus_ready "$PROMETHEUS_PORT"; do
        alive "$pid" || fail_component prometheus "process exited"
        [ "$SECONDS" -lt "$deadline" ] ||
            fail_component prometheus "/-/ready not ok within ${UP_TIMEOUT}s"
        sleep 0.3
    done
    log "prometheus ready on http://127.0.0.1:$PROMETHEUS_PORT ($((SECONDS - T0))s)"
}

start_nodes() {
    local out
    # Nodes carry kwok's fake-node annotation (kwokctl's default node template), so kwok
    # keeps them Ready and plays the default pod stages for pods scheduled onto them.
    out=$(kwokctl scale node --replicas "$NODES" 2>&1) ||
        { printf '%s\n' "$out" >&2; fail_component kwok "kwokctl scale node failed"; }
    wait_until "$UP_TIMEOUT" enough_nodes_ready ||
        fail_component kwok "$NODES nodes not Ready within ${UP_TIMEOUT}s"
    log "$NODES fake nodes Ready ($((SECONDS - T0))s)"
}

start_gateway_api() {
    local crds="$GATEWAY_API_DIR/standard-install.yaml" out names
    out=$(kc apply --server-side --force-conflicts -f "$crds" -o name 2>&1) ||
        { printf '%s\n' "$out" >&2; die "applying Gateway API CRDs from $crds failed"; }
    # The bundle also holds a ValidatingAdmissionPolicy (+binding), which has no
    # Established condition; wait for the CRDs only.
    names=$(printf '%s\n' "$out" | grep '^customresourcedefinition')
    # shellcheck disable=SC2086 # one argument per CRD
    out=$(kc wait --for=condition=Established --timeout="${UP_TIMEOUT}s" $names 2>&1) ||
        { printf '%s\n' "$out" >&2; fail_component kube-apiserver "Gateway API CRDs not Established"; }
    log "Gateway API $GATEWAY_API_VERSION CRDs established ($((SECONDS - T0))s)"
}

start_istio_api() {
    local crds="$ISTIO_API_DIR/crds.yaml" out names
    out=$(kc apply --server-side --force-conflicts -f "$crds" -o name 2>&1) ||
        { printf '%s\n' "$out" >&2; die "applying Istio CRDs from $crds failed"; }
    names=$(printf '%s\n' "$out" | grep '^customresourcedefinition')
    # shellcheck disable=SC2086 # one argument per CRD
    out=$(kc wait --for=condition=Established --timeout="${UP_TIMEOUT}s" $names 2>&1) ||
        { printf '%s\n' "$out" >&2; fail_component kube-apiserver "Istio CRDs not Established"; }
    log "Istio $ISTIO_API_VERSION CRDs established ($((SECONDS - T0))s)"
}

cmd_up() {
    T0=$SECONDS
    mkdir -p "$SLUICE_STATE" "$LOG_DIR"
    exec 9>"$SLUICE_STATE/.lock"
    flock 9
    ensure_binaries
    ensure_prometheus

    if healthy; then
        log "plane already up (kube-apiserver :$APISERVER_PORT, prometheus :$PROMETHEUS_PORT)"
        # A plane started before the Istio CRDs were part of it gets them now.
        kc get crd virtualservices.networking.istio.io >/dev/null 2>&1 || start_istio_api
        return 0
    fi
    if [ -d "$WORKDIR" ] || [ -f "$PROM_PID" ] || [ -f "$PLANE_ENV" ]; then
        log "found a stopped or half-started plane; cleaning it up first"
    fi
    teardown

    log "starting control plane (kwokctl $KWOK_VERSION, kubernetes $KUBERNETES_VERSION)"
    # Prometheus starts first and comes up while the apiserver does.
    start_prometheus
    start_kube
    wait_prometheus
    # Component health in parallel with the rest would save little; these are quick now.
    wait_until "$UP_TIMEOUT" component_healthy kube-controller-manager ||
        fail_component kube-controller-manager "/healthz not ok within ${UP_TIMEOUT}s"
    wait_until "$UP_TIMEOUT" component_healthy kube-scheduler ||
        fail_component kube-scheduler "/healthz not ok within ${UP_TIMEOUT}s"
    start_nodes
    start_gateway_api
    start_istio_api
    printf 'APISERVER_PORT=%s\nPROMETHEUS_PORT=%s\nNODES=%s\nAUDIT=%s\n' \
        "$APISERVER_PORT" "$PROMETHEUS_PORT" "$NODES" "$AUDIT" >"$PLANE_ENV"
    if [ "$AUDIT" = 1 ]; then log "audit log of group $AUDIT_GROUP: $AUDIT_DIR/audit.log"; fi
    log "plane up in $((SECONDS - T0))s; use: eval \"\$($0 env)\""
}

# ---------------------------------------------------------------------------------------
# stop

# Processes of ours even when their pid files are gone: our binaries, started for this
# state directory.
stray_pids() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case "$exe" in
            "$K8S_BIN"/* | "$ETCD_BIN"/* | "$KWOK_BIN"/* | "$PROMETHEUS_BIN") ;;
            *) continue ;;
        esac
        is_ours "${p#/proc/}" && echo "${p#/proc/}"
    done
}

# kill_wait SIGNAL SECONDS PID...: signal and wait for the pids to be gone.
kill_wait() {
    local sig=$1 secs=$2 p left; shift 2
    [ $# -gt 0 ] || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while :; do
        left=""
        for p in "$@"; do alive "$p" && left=1; done
        if [ -z "$left" ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
        sleep 0.2
    done
    [ -z "$left" ]
}

# Stops every process of the plane; returns non-zero if any remain. Keeps files.
stop_processes() {
    local c f pids=""
    for c in $COMPONENTS; do
        f=$(pid_file "$c")
        [ -f "$f" ] && pids="$pids $(tr -dc 0-9 <"$f")"
    done
    # Collected before anything is stopped: kwokctl deletes its pid files as it goes.
    local ours="" p
    for p in $pids $(stray_pids); do is_ours "$p" && ours="$ours $p"; done
    # Everything is disposable (a fresh start wipes etcd and Prometheus data), so a short
    # grace period only; a just-started apiserver can take >10s over a graceful exit.
    # shellcheck disable=SC2086 # one argument per pid
    kill_wait TERM 3 $ours || kill_wait KILL 5 $ours || true
    rm -f "$PROM_PID" "$PLANE_ENV"
    [ -d "$WORKDIR/pids" ] && rm -f "$WORKDIR"/pids/*.pid
    for p in $ours; do
        if alive "$p"; then log "error: pid $p did not exit"; return 1; fi
    done
    [ -z "$(stray_pids)" ]
}

# Stops the processes and removes the cluster (PKI, etcd data, component logs), so that
# the next start is a fresh one: kwokctl would otherwise resume the old configuration.
teardown() {
    stop_processes || die "could not stop all processes of the plane"
    if [ -d "$WORKDIR" ]; then
        # Its components are already down; this only removes the workdir the kwokctl way.
        # (`delete` rejects an empty --kubeconfig; ours is the only one it may edit.)
        if [ -x "$KWOKCTL" ]; then
            kwokctl delete cluster --kubeconfig "$KUBECONFIG_PATH" \
                >"$LOG_DIR/kwokctl-delete.log" 2>&1 || true
        fi
        rm -rf "$WORKDIR"
    fi
    rm -f "$KUBECONFIG_PATH"
    rm -rf "$AUDIT_DIR" "$SLUICE_STATE/clients"
}

cmd_down() {
    mkdir -p "$SLUICE_STATE" "$LOG_DIR"
    exec 9>"$SLUICE_STATE/.lock"
    flock 9
    teardown
    # Verify: nothing of ours may still listen anywhere.
    local left
    left=$(ss -Hltnp 2>/dev/null | while read -r line; do
        for p in $(printf '%s\n' "$line" | grep -o 'pid=[0-9]*' | cut -d= -f2); do
            is_ours "$p" && { printf '%s\n' "$line"; break; }
        done
    done || true)
    [ -z "$left" ] || die "still listening after down:"$'\n'"$left"
    log "plane down"
}

# ---------------------------------------------------------------------------------------
# faults

# Stops kube-apiserver (SIGTERM, as an upgrade or a crash-looping node would) and starts
# it again with the same binary, arguments and working directory, then waits for /readyz.
# etcd keeps the data, so clients see a dropped connection and a gap, nothing else.
cmd_restart_apiserver() {
    exec 9>"$SLUICE_STATE/.lock"
    flock 9
    local pid cwd log pidf
    pid=$(component_pid kube-apiserver) || die "kube-apiserver is not running"
    cwd=$(readlink "/proc/$pid/cwd")
    local -a argv
    mapfile -d '' -t argv <"/proc/$pid/cmdline"
    log=$(log_file kube-apiserver)
    pidf=$(pid_file kube-apiserver)
    T0=$SECONDS
    kill_wait TERM 15 "$pid" || kill_wait KILL 5 "$pid" || die "kube-apiserver pid $pid did not exit"
    log "kube-apiserver stopped"
    cd "$cwd"
    setsid "${argv[@]}" </dev/null >>"$log" 2>&1 9>&- &
    echo $! >"$pidf"
    wait_until "$UP_TIMEOUT" apiserver_ready ||
        fail_component kube-apiserver "/readyz not ok within ${UP_TIMEOUT}s after a restart"
    local c
    for c in etcd kube-controller-manager kube-scheduler kwok; do
        component_pid "$c" >/dev/null || fail_component "$c" "exited while kube-apiserver restarted"
    done
    log "kube-apiserver restarted and ready ($((SECONDS - T0))s)"
}

# ---------------------------------------------------------------------------------------
# clients

# Writes a kubeconfig for the running plane whose client certificate (CN=NAME, O=
# system:masters so it may do anything, O=sluice:bench so it is audited) is signed by the
# CA kwokctl generated. The key stays under $SLUICE_STATE/clients; `down` removes it.
cmd_client_kubeconfig() {
    local name=${1:-} out=${2:-}
    if [ -z "$name" ] || [ -z "$out" ]; then die "usage: plane.sh client-kubeconfig NAME FILE"; fi
    local pki="$WORKDIR/pki" api_port
    if [ ! -f "$pki/ca.crt" ] || [ ! -f "$pki/ca.key" ]; then
        die "no plane CA under $pki; is the plane up?"
    fi
    api_port=$(running APISERVER_PORT)
    [ -n "$api_port" ] || die "the plane is not up"
    local dir="$SLUICE_STATE/clients" base
    base="$dir/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_')"
    mkdir -p "$dir"
    (
        umask 077
        openssl req -new -newkey rsa:2048 -nodes -keyout "$base.key" -out "$base.csr" \
            -subj "/O=system:masters/O=$AUDIT_GROUP/CN=$name" 2>/dev/null
        # X.509 v3 with client-auth usage: rustls (the Rust clients) refuses v1 certificates.
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth" >"$base.ext"
        openssl x509 -req -in "$base.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
            -CAcreateserial -CAserial "$dir/ca.srl" -days 2 -extfile "$base.ext" \
            -out "$base.crt" 2>/dev/null
    ) || die "could not sign a client certificate for $name"
    local k=("$KUBECTL" config --kubeconfig "$out.tmp")
    "${k[@]}" set-cluster plane --server "https://127.0.0.1:$api_port" \
        --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
    "${k[@]}" set-credentials "$name" --client-certificate "$base.crt" \
        --client-key "$base.key" --embed-certs >/dev/null
    "${k[@]}" set-context plane --cluster plane --user "$name" >/dev/null
    "${k[@]}" use-context plane >/dev/null
    chmod 600 "$out.tmp" && mv "$out.tmp" "$out"
    log "kubeconfig for $name (groups system:masters, $AUDIT_GROUP): $out"
}

# ---------------------------------------------------------------------------------------
# status / env

cmd_status() {
    local c pid addrs all=0 api_port prom_port
    api_port=$APISERVER_PORT; prom_port=$PROMETHEUS_PORT
    if [ -f "$PLANE_ENV" ]; then
        api_port=$(running APISERVER_PORT)
        prom_port=$(running PROMETHEUS_PORT)
    fi
    for c in $COMPONENTS; do
        if pid=$(component_pid "$c"); then
            addrs=$(listen_addrs "$pid")
            printf '%-24s %-8s pid %-8s %s\n' "$c" running "$pid" "${addrs:--}"
        else
            local lf; lf=$(log_file "$c")
            [ -f "$lf" ] || lf=""
            printf '%-24s %-8s %-12s %s\n' "$c" stopped "" "${lf:+log: $lf}"
            all=1
        fi
    done
    if [ -f "$KUBECONFIG_PATH" ] && apiserver_ready; then
        local total
        total=$(kc get nodes --no-headers 2>/dev/null | wc -l)
        printf '%-24s %s total, %s Ready\n' nodes "$total" "$(ready_nodes)"
        printf '%-24s https://127.0.0.1:%s (kubeconfig %s)\n' apiserver "$api_port" "$KUBECONFIG_PATH"
    else
        printf '%-24s apiserver not reachable\n' nodes
        all=1
    fi
    if prometheus_ready "$prom_port"; then
        printf '%-24s http://127.0.0.1:%s\n' prometheus-url "$prom_port"
    fi
    return $all
}

cmd_env() {
    local prom_port=$PROMETHEUS_PORT
    [ -f "$PLANE_ENV" ] && prom_port=$(running PROMETHEUS_PORT)
    printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_PATH"
    # The e2e tests only ever use this variable, never a KUBECONFIG that may point elsewhere.
    printf 'export SLUICE_E2E_KUBECONFIG=%q\n' "$KUBECONFIG_PATH"
    printf 'export SLUICE_PROMETHEUS_URL=%q\n' "http://127.0.0.1:$prom_port"
    # Drop file_sd JSON files here to have Prometheus scrape a test's targets.
    printf 'export SLUICE_PROMETHEUS_TARGETS=%q\n' "$PROM_DIR/targets"
    # kubectl's discovery cache, kept under our state rather than in ~/.kube.
    printf 'export KUBECACHEDIR=%q\n' "$KUBECACHE"
    # The audit log, when the plane was started with SLUICE_AUDIT=1.
    if [ "$(running AUDIT)" = 1 ]; then printf 'export SLUICE_AUDIT_LOG=%q\n' "$AUDIT_DIR/audit.log"; fi
    # The matching kubectl first on PATH.
    # shellcheck disable=SC2016 # $PATH is for the caller's shell to expand
    printf 'export PATH=%q:"$PATH"\n' "$K8S_BIN"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    restart-apiserver) cmd_restart_apiserver ;;
    client-kubeconfig) shift; cmd_client_kubeconfig "$@" ;;
    *)
        echo "usage: $0 up|down|status|env|restart-apiserver|client-kubeconfig NAME FILE" >&2
        exit 2
        ;;
esac
