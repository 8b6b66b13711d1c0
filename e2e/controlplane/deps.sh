#!/usr/bin/env bash
# Installs the Debian packages the local control plane and the tests need, when missing.
# Idempotent and quiet when everything is there already.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# command -> Debian package
declare -A wanted=(
    [prometheus]=prometheus
    [openssl]=openssl
    [curl]=curl
    [ss]=iproute2
    # The dashboard's browser end-to-end test drives Debian's headless Chromium.
    [chromium]=chromium
    [chromedriver]=chromium-driver
    # make lint checks the scripts.
    [shellcheck]=shellcheck
)
missing=()
for cmd in "${!wanted[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps the packages' own services (Debian starts prometheus on install) from
# starting: the plane runs its own Prometheus on its own port and state directory.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
fi
trap '[ -n "$created_policy" ] && $sudo rm -f "$policy"' EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# On a systemd host the unit would still start at the next boot and take port 9090.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
log "installed ${missing[*]}"
