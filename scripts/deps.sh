#!/usr/bin/env bash
# make deps: everything a fresh Debian 12 machine (as root) needs to build
# and test this project. Idempotent: a second run only checks.
#   - Debian packages (docker.io, docker-registry, debootstrap, apt-utils, gnupg, ...)
#   - a running dockerd (started here when none answers)
#   - Consul, consul-template and the Docker Compose plugin built from the
#     versions pinned in tools/*/go.mod into $CODELAB_CACHE/bin
#   - the local debian-12-x64 base image (debootstrap, imported into Docker)
#   - Packer 1.9.4 and its DigitalOcean plugin 1.4.1 from their Go modules
#     (scripts/packer.sh; Debian's packer 1.6.6 is not used)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CODELAB_CACHE:-$HOME/.cache/codelab}
bin=$cache/bin
mkdir -p "$bin"

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "make deps installs packages and starts dockerd: run it as root" >&2
  exit 1
fi

# --- Debian packages -------------------------------------------------------
# apt-utils (apt-ftparchive) and gnupg sign the local Docker apt repository the tests serve.
pkgs=(docker.io docker-registry debootstrap git make ca-certificates iproute2 iptables curl openssh-client apt-utils gnupg)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# --- dockerd -----------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/codelab-dockerd.log)"
  # The docker.io package cannot start its unit without systemd; start the
  # daemon directly and detach it from this shell.
  setsid nohup dockerd >/var/log/codelab-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not answer within 60s; see /var/log/codelab-dockerd.log" >&2; exit 1; }
else
  log "dockerd answers"
fi

# --- pinned test programs ----------------------------------------------------
# Each is its own module under tools/ (built with GOWORK=off: their
# dependency graphs must not be merged with ours). A stamp of go.mod+go.sum
# decides whether the cached binary is current.
build_tool() { # name module-dir package [ldflags]
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  local stamp
  stamp=$(cat "$repo/$dir/go.mod" "$repo/$dir/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "$name current ($bin/$name)"
    return
  fi
  log "building $name from $dir (a few minutes the first time)"
  (cd "$repo/$dir" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.new" "$pkg")
  mv "$bin/$name.new" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
}
build_tool consul tools/consul github.com/hashicorp/consul
build_tool consul-template tools/consul-template github.com/hashicorp/consul-template
build_tool versitygw tools/versitygw github.com/versity/versitygw/cmd/versitygw
build_tool doctl tools/doctl github.com/digitalocean/doctl/cmd/doctl \
  "-X github.com/digitalocean/doctl.Major=1 -X github.com/digitalocean/doctl.Minor=104 -X github.com/digitalocean/doctl.Patch=0 -X github.com/digitalocean/doctl.Label=release"
build_tool docker-compose tools/compose github.com/docker/compose/v2/cmd \
  "-X github.com/docker/compose/v2/internal.Version=v2.24.0"

# docker compose as a CLI plugin, for every docker client on the machine.
for d in /usr/local/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do
  mkdir -p "$d"
  ln -sf "$bin/docker-compose" "$d/docker-compose"
done
docker compose version >/dev/null || { echo "docker compose plugin does not run" >&2; exit 1; }

# --- debian-12-x64 base image ------------------------------------------------
image=codelab-local/debian-12-x64:latest
if ! docker image inspect "$image" >/dev/null 2>&1; then
  rootfs=$cache/rootfs/debian-12
  if [ ! -x "$rootfs/bin/systemd" ] && [ ! -e "$rootfs/lib/systemd/systemd" ]; then
    log "debootstrap Debian 12 into $rootfs (a few minutes the first time)"
    rm -rf "$rootfs.tmp"
    # The machine's own Debian mirror, from its apt sources (deb822 or one-line).
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2; exit}')
    [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }')
    [ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)" >&2; exit 1; }
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,openssh-server,ca-certificates,iproute2,iptables,curl,procps,sudo,less \
      bookworm "$rootfs.tmp" "$mirror" >/dev/null
    mv "$rootfs.tmp" "$rootfs"
  fi
  log "importing $image"
  tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
else
  log "$image present"
fi

# --- Packer ---------------------------------------------------------------------
bash "$repo/scripts/packer.sh" "$bin"

log "deps ready: programs in $bin"
