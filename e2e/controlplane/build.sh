#!/usr/bin/env bash
# Builds the upstream binaries of the local control plane from Go modules, once, into a
# version-keyed cache outside the repository. Each tool is built in a scratch folder and
# moved into place only when complete, so an interrupted build is simply redone.
#
#   build.sh            build whatever is missing
#   build.sh --check    exit 0 when everything is cached, 1 otherwise
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Build with the Go module proxy only; everything upstream publishes is there.
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

have_all() {
    local f
    for f in "$K8S_BIN/kube-apiserver" "$K8S_BIN/kube-controller-manager" \
        "$K8S_BIN/kube-scheduler" "$K8S_BIN/kubectl" "$ETCD_BIN/etcd" \
        "$KWOK_BIN/kwok" "$KWOK_BIN/kwokctl" "$HELM_BIN/helm" \
        "$GATEWAY_API_DIR/standard-install.yaml" "$ISTIO_API_DIR/crds.yaml" \
        "$GITOPS_HEALTH_BIN/sluice-gitops-health"; do
        [ -x "$f" ] || [ -f "$f" ] || return 1
    done
}

if [ "${1:-}" = "--check" ]; then
    have_all && exit 0 || exit 1
fi
command -v go >/dev/null || die "go is not installed; it is needed to build the control plane"

scratch_root="$SLUICE_CACHE/build"
mkdir -p "$BIN_CACHE" "$scratch_root"

# module_gomod MODULE@VERSION -> path of that release's go.mod in the module cache
module_gomod() {
    go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}
module_dir() {
    go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

timed() {
    local name=$1; shift
    local start=$SECONDS
    log "building $name"
    "$@"
    log "built $name in $((SECONDS - start))s"
}

# k8s.io/kubernetes replaces its ~31 staging modules with ./staging/..., which `go install`
# refuses. A wrapper module requires the release and points every staging module at the
# version published for it (v0.MINOR.PATCH); the list comes from the release's own go.mod.
build_kubernetes() {
    local v=$KUBERNETES_VERSION
    local staging_version="v0.${v#v1.}"
    local work="$scratch_root/kubernetes-$v"
    rm -rf "$work" && mkdir -p "$work/out"
    local upstream_mod
    upstream_mod=$(module_gomod "k8s.io/kubernetes@$v")
    [ -f "$upstream_mod" ] || die "could not download k8s.io/kubernetes@$v"
    local go_line
    go_line=$(grep -m1 '^go ' "$upstream_mod")
    {
        echo "module sluice.dev/e2e/kubernetes-build"
        echo
        echo "$go_line"
        echo
        echo "require k8s.io/kubernetes $v"
        echo
        echo "replace ("
        sed -n 's#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/.*#\1#p' "$upstream_mod" |
            sort -u | while read -r m; do echo "	$m => $m $staging_version"; done
        echo ")"
        echo
        echo "tool ("
        for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
            echo "	k8s.io/kubernetes/cmd/$c"
        done
        echo ")"
    } >"$work/go.mod"
    (
        cd "$work"
        # sample-* staging modules are not published and no binary needs them.
        go mod tidy -e >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
        local minor=${v#v1.}; minor=${minor%%.*}
        local ld="-s -w"
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ld="$ld -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
            ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
        done
        for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
            timed "$c $v" go build -trimpath -ldflags "$ld" -o "out/$c" "k8s.io/kubernetes/cmd/$c"
        done
    )
    rm -rf "$K8S_BIN" && mv "$work/out" "$K8S_BIN" && rm -rf "$work"
}

# etcd's server module also replaces its sibling modules with relative paths.
build_etcd() {
    local v=$ETCD_VERSION
    local work="$scratch_root/etcd-$v"
    rm -rf "$work" && mkdir -p "$work/out"
    local upstream_mod go_line
    upstream_mod=$(module_gomod "go.etcd.io/etcd/server/v3@$v")
    go_line=$(grep -m1 '^go ' "$upstream_mod")
    cat >"$work/go.mod" <<EOF
module sluice.dev/e2e/etcd-build

$go_line

require go.etcd.io/etcd/server/v3 $v

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $v
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $v
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $v
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $v
)

tool go.etcd.io/etcd/server/v3
EOF
    (
        cd "$work"
        go mod tidy >/dev/null 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
        timed "etcd $v" go build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3
    )
    rm -rf "$ETCD_BIN" && mv "$work/out" "$ETCD_BIN" && rm -rf "$work"
}

build_go_install() {
    local dest=$1; shift
    local work
    work="$scratch_root/$(basename "$dest")"
    rm -rf "$work" && mkdir -p "$work"
    local pkg
    for pkg in "$@"; do
        timed "$pkg" env GOBIN="$work" go install -trimpath -ldflags "-s -w" "$pkg"
    done
    rm -rf "$dest" && mv "$work" "$dest"
}

# The standard-channel Gateway API CRDs, taken from the published Go module so that no
# download outside the module proxy is needed.
fetch_gateway_api() {
    local dir
    dir=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
    [ -d "$dir/config/crd/standard" ] || die "gateway-api module has no config/crd/standard"
    local work="$scratch_root/gateway-api"
    rm -rf "$work" && mkdir -p "$work"
    local f
    for f in "$dir"/config/crd/standard/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        printf -- '---\n' >>"$work/standard-install.yaml"
        cat "$f" >>"$work/standard-install.yaml"
    done
    rm -rf "$GATEWAY_API_DIR" && mv "$work" "$GATEWAY_API_DIR"
}

# Istio's CRDs, as its istio.io/api Go module publishes them (no Istio control plane: the
# e2e's simulator plays the mesh, reading the VirtualServices and DestinationRules).
fetch_istio_api() {
    local dir
    dir=$(module_dir "istio.io/api@$ISTIO_API_VERSION")
    local crds="$dir/kubernetes/customresourcedefinitions.gen.yaml"
    [ -f "$crds" ] || die "istio.io/api module has no kubernetes/customresourcedefinitions.gen.yaml"
    local work="$scratch_root/istio-api"
    rm -rf "$work" && mkdir -p "$work"
    cp "$crds" "$work/crds.yaml"
    rm -rf "$ISTIO_API_DIR" && mv "$work" "$ISTIO_API_DIR"
}

# The e2e's GitOps health tool (kstatus and Argo CD's gopher-lua), from its own module in
# the repository with a committed go.sum.
build_gitops_health() {
    local dep v
    for dep in "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION" "github.com/yuin/gopher-lua $GOPHER_LUA_VERSION"; do
        v=${dep#* }
        grep -q "^[[:space:]]*${dep% *} $v\$" "$GITOPS_HEALTH_SRC/go.mod" ||
            die "e2e/gitops-health/go.mod does not require ${dep% *} $v (e2e/versions.env)"
    done
    local work="$scratch_root/gitops-health"
    rm -rf "$work" && mkdir -p "$work"
    (
        cd "$GITOPS_HEALTH_SRC"
        timed "sluice-gitops-health" go build -mod=readonly -trimpath -ldflags "-s -w" \
            -o "$work/sluice-gitops-health" .
    )
    rm -rf "$GITOPS_HEALTH_BIN" && mv "$work" "$GITOPS_HEALTH_BIN"
}

for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$K8S_BIN/$c" ] || { build_kubernetes; break; }
done
[ -x "$ETCD_BIN/etcd" ] || build_etcd
if [ ! -x "$KWOK_BIN/kwok" ] || [ ! -x "$KWOK_BIN/kwokctl" ]; then
    build_go_install "$KWOK_BIN" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
fi
[ -x "$HELM_BIN/helm" ] || build_go_install "$HELM_BIN" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
[ -f "$GATEWAY_API_DIR/standard-install.yaml" ] || fetch_gateway_api
[ -f "$ISTIO_API_DIR/crds.yaml" ] || fetch_istio_api
[ -x "$GITOPS_HEALTH_BIN/sluice-gitops-health" ] || build_gitops_health
have_all || die "some control-plane binaries are still missing under $BIN_CACHE"
log "all control-plane binaries are cached under $BIN_CACHE"
