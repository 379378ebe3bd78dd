#!/usr/bin/env bash
# Builds the Packer that CI and the tests share, from the Go modules pinned in
# tools/packer (Packer v1.9.4, the last MPL release) and
# tools/packer-plugin-digitalocean (the DigitalOcean plugin v1.4.1), into BIN
# (default $CODELAB_CACHE/bin), and installs the plugin where Packer 1.9's
# `required_plugins` looks for it: a folder next to the packer binary (Packer
# searches its executable's folder, then the config dir's plugins/), named
# after the plugin's source address, holding
#   packer-plugin-digitalocean_v1.4.1_x5.0_linux_amd64 and its _SHA256SUM.
# Nothing is downloaded but Go modules, each checked against go.sum.
# Idempotent: a stamp of go.mod+go.sum decides whether a binary is current.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CODELAB_CACHE:-$HOME/.cache/codelab}/bin}
mkdir -p "$bin"

# Keep in step with packer/plugins/plugins.pkr.hcl and .github/workflows/images.yml.
packer_version=1.9.4
plugin_version=1.4.1
plugin_source=github.com/digitalocean/digitalocean
plugin_protocol=x5.0

log() { printf '==> %s\n' "$*"; }

build() { # out module-dir package ldflags
  local out=$1 dir=$2 pkg=$3 ldflags=$4 stamp
  stamp=$(cat "$repo/$dir/go.mod" "$repo/$dir/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "$(basename "$out") current ($out)"
    return
  fi
  log "building $(basename "$out") from $dir (10+ minutes on 2 cores the first time)"
  mkdir -p "$(dirname "$out")"
  (cd "$repo/$dir" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out.new" "$pkg")
  mv "$out.new" "$out"
  echo "$stamp" >"$out.stamp"
}

build "$bin/packer" tools/packer github.com/hashicorp/packer ""
dir=$bin/$plugin_source
plugin=$dir/packer-plugin-digitalocean_v${plugin_version}_${plugin_protocol}_linux_amd64
# Only the versioned name: an unversioned packer-plugin-* next to packer would be loaded
# as a manual install, around required_plugins. The module's version.go says
# VersionPrerelease "dev"; a release build clears it.
build "$plugin" tools/packer-plugin-digitalocean github.com/digitalocean/packer-plugin-digitalocean \
  "-X github.com/digitalocean/packer-plugin-digitalocean/version.VersionPrerelease="

got=$("$bin/packer" version | head -1)
[ "$got" = "Packer v$packer_version" ] || { echo "built packer says '$got', want Packer v$packer_version" >&2; exit 1; }

sha256sum "$plugin" | cut -d' ' -f1 >"${plugin}_SHA256SUM"
desc=$("$plugin" describe)
case "$desc" in
  *"\"version\":\"$plugin_version\""*) ;;
  *) echo "the DigitalOcean plugin describes itself as $desc, want version $plugin_version" >&2; exit 1 ;;
esac
log "packer $packer_version + DigitalOcean plugin $plugin_version ready ($bin)"
