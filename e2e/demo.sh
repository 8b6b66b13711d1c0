#!/usr/bin/env bash
# `make demo`: starts the local control plane and Prometheus, installs the sluice CRDs and
# the sample Rollouts, and says what to look at. The plane stays up until `make down`.
set -euo pipefail
cd "$(dirname "$0")/.."
plane=e2e/controlplane/plane.sh

"$plane" up
eval "$("$plane" env)"

echo
echo "== installing the sluice CRDs (server-side apply)"
kubectl apply --server-side --field-manager=sluice-demo -f crds/yaml/
kubectl wait --for=condition=Established --timeout=60s crd/rollouts.sluice.dev crd/analysistemplates.sluice.dev \
    crd/clusteranalysistemplates.sluice.dev crd/analysisruns.sluice.dev

echo
echo "== applying the sample Rollouts"
kubectl apply --server-side --field-manager=sluice-demo -f examples/canary-rollout.yaml -f examples/blue-green-rollout.yaml

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
echo "== the Rollouts, with sluice's printer columns"
kubectl get rollouts
echo
cat <<MSG
The local control plane is up. Things to look at:

  eval "\$($plane env)"
      kubectl now talks to the local plane (and is the plane's own v1.37 kubectl)
  kubectl get nodes                                   fake kwok nodes, Ready
  kubectl get ro                                      Strategy, Phase, Step, Weight, ...
  kubectl explain rollout.spec.strategy.canary.steps  the API docs
  kubectl scale rollout/web --replicas=8              the scale subresource
  Prometheus: $SLUICE_PROMETHEUS_URL

The controller that walks these Rollouts through their steps, and the dashboard, arrive
with the next issues; the Rollouts above wait for it (Phase stays empty until then).

Stop everything with: make down
MSG
