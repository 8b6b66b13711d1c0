#!/usr/bin/env bash
# Builds Argo Rollouts' controller (the peer the scale benchmark compares sluice with) from
# its Go module, once, into a version-keyed cache outside the repository, and prints the
# folder holding the binary and Argo's CRDs.
#
#   build-argo.sh            build when missing; print $SLUICE_CACHE/bin/argo-rollouts-<v>
#   build-argo.sh --check    exit 0 when cached, 1 otherwise
#
# Like k8s.io/kubernetes, github.com/argoproj/argo-rollouts pins its dependencies with a
# `replace` block that `go install ...@v` ignores, so a wrapper module requires the release
# and copies every replace directive from the release's own go.mod. v1.9.3 declares go
# 1.26.10; GOTOOLCHAIN fetches that toolchain through the module proxy when the local go
# is older.
set -euo pipefail
# shellcheck source=../controlplane/lib.sh
. "$(dirname "$0")/../controlplane/lib.sh"

V=$ARGO_ROLLOUTS_VERSION
OUT="$BIN_CACHE/argo-rollouts-$V"
if [ "${1:-}" = "--check" ]; then
    [ -x "$OUT/rollouts-controller" ] && [ -f "$OUT/crds/rollout-crd.yaml" ]
    exit
fi
if [ -x "$OUT/rollouts-controller" ] && [ -f "$OUT/crds/rollout-crd.yaml" ]; then
    echo "$OUT"
    exit 0
fi
command -v go >/dev/null || die "go is not installed; it is needed to build Argo Rollouts"

export GOTOOLCHAIN="${ARGO_GOTOOLCHAIN:-$GOTOOLCHAIN_FOR_ARGO}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

work="$SLUICE_CACHE/build/argo-rollouts-$V"
rm -rf "$work" && mkdir -p "$work/out/crds"
json=$(go mod download -json "github.com/argoproj/argo-rollouts@$V")
upstream_mod=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
upstream_dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$upstream_mod" ] || die "could not download github.com/argoproj/argo-rollouts@$V"
{
    echo "module sluice.dev/e2e/argo-rollouts-build"
    echo
    grep -m1 '^go ' "$upstream_mod"
    echo
    echo "require github.com/argoproj/argo-rollouts $V"
    echo
    # Every replace directive, block or single line, exactly as upstream has it.
    awk '/^replace \($/ { inblock = 1 } inblock { print } inblock && /^\)$/ { inblock = 0; next }
         !inblock && /^replace [^(]/ { print }' "$upstream_mod"
    echo
    echo "tool github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
} >"$work/go.mod"
(
    cd "$work"
    go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
    log "building argo-rollouts rollouts-controller $V (GOTOOLCHAIN=$GOTOOLCHAIN)"
    start=$SECONDS
    go build -trimpath \
        -ldflags "-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${V#v} -X github.com/argoproj/argo-rollouts/utils/version.gitTag=$V" \
        -o out/rollouts-controller github.com/argoproj/argo-rollouts/cmd/rollouts-controller
    log "built rollouts-controller in $((SECONDS - start))s"
)
cp "$upstream_dir"/manifests/crds/*-crd.yaml "$work/out/crds/"
chmod -R u+w "$work/out"
rm -rf "$OUT" && mv "$work/out" "$OUT" && rm -rf "$work"
echo "$OUT"
