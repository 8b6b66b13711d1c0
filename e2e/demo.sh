#!/usr/bin/env bash
# `make demo`: starts the local control plane and Prometheus, installs the CRDs, starts the
# sluice controller with its dashboard, walks a sample canary (routed through a Gateway
# API HTTPRoute) through its steps, printing each one, then previews and promotes a
# blue-green Rollout. Everything stays up until `make down`.
#
#   demo.sh                  the demo
#   demo.sh stop-controller  stop the controller the demo started (used by `make down`)
#
# SLUICE_DASHBOARD_PORT (default 3100) is where the dashboard listens, on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
. e2e/controlplane/lib.sh
plane=e2e/controlplane/plane.sh
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
pid_file="$SLUICE_STATE/controller.pid"
controller_log="$SLUICE_STATE/logs/controller.log"
dashboard_port="${SLUICE_DASHBOARD_PORT:-3100}"

stop_controller() {
    if [ -f "$pid_file" ]; then
        kill "$(cat "$pid_file")" 2>/dev/null || true
        rm -f "$pid_file"
    fi
}
if [ "${1:-}" = stop-controller ]; then
    stop_controller
    exit 0
fi

"$plane" up
eval "$("$plane" env)"

echo
echo "== installing the sluice CRDs (server-side apply)"
kubectl apply --server-side --field-manager=sluice-demo -f crds/yaml/ >/dev/null
# kubectl wait fails at once (rather than waiting) on a CRD whose status has no
# conditions yet, which is how a CRD looks for a moment after it is created.
for attempt in $(seq 20); do
    kubectl wait --for=condition=Established --timeout=60s crd/rollouts.sluice.dev crd/analysistemplates.sluice.dev \
        crd/clusteranalysistemplates.sluice.dev crd/analysisruns.sluice.dev >/dev/null 2>&1 && break
    [ "$attempt" -lt 20 ] || { echo "demo: the sluice CRDs were not established" >&2; exit 1; }
    sleep 0.5
done

echo "== starting the sluice controller and its dashboard (log: $controller_log)"
stop_controller
mkdir -p "$(dirname "$controller_log")"
nohup "$bin_dir/sluice-controller" --kubeconfig "$KUBECONFIG" \
    --dashboard-addr "127.0.0.1:$dashboard_port" >"$controller_log" 2>&1 &
echo $! >"$pid_file"
for _ in $(seq 100); do
    grep -q "dashboard listening" "$controller_log" 2>/dev/null && break
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "demo: the controller exited; see $controller_log" >&2
        tail -5 "$controller_log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "== a ServiceAccount to sign in to the dashboard with: demo-operator (view and act on rollouts)"
kubectl apply --server-side --field-manager=sluice-demo -f - >/dev/null <<'YAML'
apiVersion: v1
kind: ServiceAccount
metadata: { name: demo-operator, namespace: default }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: sluice-demo-rollout-operator }
rules:
  - apiGroups: [sluice.dev]
    resources: [rollouts]
    verbs: [get, list, watch, patch]
  - apiGroups: [sluice.dev]
    resources: [rollouts/status]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: sluice-demo-rollout-operator }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sluice-demo-rollout-operator }
subjects:
  - { kind: ServiceAccount, name: demo-operator, namespace: default }
YAML

echo "== applying the sample Rollouts (canary, replica ratio: web; canary, Gateway API: shop; blue-green: store)"
# A demo run again starts from scratch: the samples of the last run are at v2, and their
# Services' selectors belong to the controller now.
kubectl delete --ignore-not-found --wait -f examples/canary-rollout.yaml \
    -f examples/canary-gateway-rollout.yaml -f examples/blue-green-rollout.yaml >/dev/null
kubectl apply --server-side --field-manager=sluice-demo -f examples/canary-rollout.yaml \
    -f examples/canary-gateway-rollout.yaml -f examples/blue-green-rollout.yaml >/dev/null
kubectl wait --for=condition=Ready --timeout=60s rollout/web rollout/shop rollout/store
kubectl get rollouts

route_weights() {
    kubectl get httproute shop -o jsonpath='{range .spec.rules[0].backendRefs[*]}{.name}={.weight} {end}'
}
replica_sets() {
    kubectl get rs -l app=shop -o jsonpath='{range .items[*]}{.metadata.labels.sluice\.dev/pod-template-hash}:{.status.availableReplicas}/{.spec.replicas} {end}'
}

echo
echo "== a new version of shop: walking the canary through its steps"
kubectl patch rollout shop --type=merge \
    -p '{"spec":{"template":{"metadata":{"annotations":{"version":"v2"}}}}}' >/dev/null
last=""
deadline=$((SECONDS + 180))
while [ "$SECONDS" -lt "$deadline" ]; do
    line=$(kubectl get rollout shop -o jsonpath='{.status.phase} {.status.stepProgress} {.status.currentPodHash} {.status.stableRS}')
    read -r phase step current stable <<<"$line"
    state="$phase $step"
    if [ "$state" != "$last" ]; then
        printf '  step %-5s %-11s route: %-30s pods (hash:available/desired): %s\n' \
            "$step" "$phase" "$(route_weights)" "$(replica_sets)"
        last=$state
    fi
    if [ "$phase" = Paused ] && [ "$step" = "4/6" ]; then
        echo "  -> an indefinite pause waits for a human: kubectl sluice promote shop"
        "$bin_dir/kubectl-sluice" promote shop --kubeconfig "$KUBECONFIG" -n default | sed 's/^/     /'
        sleep 1
    fi
    if [ "$phase" = Healthy ] && [ "$current" = "$stable" ] && [ "$step" = "6/6" ] && [ -n "$current" ]; then
        printf '  done: revision %s is stable; route: %s\n' "$current" "$(route_weights)"
        break
    fi
    sleep 0.5
done
[ "$phase" = Healthy ] || { echo "demo: the canary did not finish; see $controller_log" >&2; exit 1; }

echo
echo "== a new version of store: blue-green preview, promotion and switch"
selectors() {
    printf 'active -> %s, preview -> %s' \
        "$(kubectl get svc store-active -o jsonpath='{.spec.selector.sluice\.dev/pod-template-hash}')" \
        "$(kubectl get svc store-preview -o jsonpath='{.spec.selector.sluice\.dev/pod-template-hash}')"
}
store_sets() {
    kubectl get rs -l app=store -o jsonpath='{range .items[*]}{.metadata.labels.sluice\.dev/pod-template-hash}:{.status.availableReplicas}/{.spec.replicas} {end}'
}
kubectl patch rollout store --type=merge \
    -p '{"spec":{"template":{"metadata":{"annotations":{"version":"v2"}}}}}' >/dev/null
kubectl wait --for=condition=Paused --timeout=60s rollout/store >/dev/null
printf '  %-8s %s; pods (hash:available/desired): %s\n' preview "$(selectors)" "$(store_sets)"
echo "  -> autoPromotionEnabled is false: the preview waits for a human: kubectl sluice promote store"
"$bin_dir/kubectl-sluice" promote store --kubeconfig "$KUBECONFIG" -n default | sed 's/^/     /'
kubectl wait --for=condition=Ready --timeout=60s rollout/store >/dev/null
printf '  %-8s %s; pods (hash:available/desired): %s\n' switched "$(selectors)" "$(store_sets)"
echo "  the previous revision stays up for scaleDownDelaySeconds (30 s), ready for a switch back"

echo
echo "== an invalid Rollout is refused at admission by the CRD's CEL rules:"
if kubectl apply --server-side --field-manager=sluice-demo -f - 2>&1 <<'YAML'; then
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: broken
spec:
  selector: { matchLabels: { app: broken } }
  template:
    metadata: { labels: { app: broken } }
    spec: { containers: [{ name: app, image: registry.k8s.io/pause:3.10 }] }
  strategy:
    canary:
      steps:
        - setWeight: 120
YAML
    echo "demo: the invalid Rollout was accepted; the CEL rules are not installed" >&2
    exit 1
fi

echo
kubectl get rollouts
cat <<MSG

The local control plane, Prometheus and the sluice controller are running. Try:

  eval "\$($plane env)"
      kubectl now talks to the local plane (and is the plane's own v1.37 kubectl)
  export PATH="$(cd "$bin_dir" && pwd):\$PATH"
      kubectl finds the kubectl-sluice plugin: kubectl sluice promote / abort / analyze
  kubectl get ro                                      Strategy, Phase, Step, Weight, ...
  kubectl patch ro web --type=merge -p '{"spec":{"template":{"metadata":{"annotations":{"version":"v2"}}}}}'
                                                      start a replica-ratio canary
  kubectl sluice promote web                          past its indefinite pause
  kubectl patch ro store --type=merge -p '{"spec":{"template":{"metadata":{"annotations":{"version":"v3"}}}}}'
                                                      a blue-green preview of store
  kubectl sluice status store                         its stage, active and preview
  kubectl sluice status web
  kubectl get events --field-selector involvedObject.name=web
  kubectl explain rollout.spec.strategy.canary.steps  the API docs
  Controller log: $controller_log
  Prometheus:     $SLUICE_PROMETHEUS_URL

The dashboard: http://127.0.0.1:$dashboard_port/
  Sign in with a token of the demo-operator ServiceAccount (it may view and act on rollouts):
    kubectl create token demo-operator -n default
  (after the eval above; or: $K8S_BIN/kubectl --kubeconfig $KUBECONFIG create token demo-operator -n default)

Stop everything with: make down
MSG
