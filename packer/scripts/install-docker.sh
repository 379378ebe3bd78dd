#!/usr/bin/env bash
# Installs Docker Engine, containerd and the Compose plugin from Docker's signed apt
# repository, verified by a chain that starts in packer/versions.pkrvars.hcl:
#   1. fetch <DOCKER_APT_URL>/gpg (the repository key) and dists/<suite>/InRelease;
#   2. gpgv checks InRelease against that key, and the key that made the signature must
#      have the pinned fingerprint, or the build stops here, before any package is
#      installed or any apt source is added;
#   3. apt uses only that key for the repository (signed-by); after apt-get update the
#      InRelease apt stored is checked again the same way;
#   4. every pinned version must be in the repository (or the build stops naming the
#      package); apt installs exactly those versions, each checked against the index.
# This is the first script the templates run: nothing else is installed before it.
#
# Environment (set by the Packer template from the versions file):
#   DOCKER_APT_URL, DOCKER_APT_KEY_FINGERPRINT, DOCKER_CE_VERSION (docker-ce and
#   docker-ce-cli), CONTAINERD_VERSION, DOCKER_COMPOSE_PLUGIN_VERSION: an apt version or
#   "latest" (the image manifest records what apt installed).
# Test-only switches (never set by the templates):
#   CODELAB_SKIP_APT=1              update only the Docker source (no Debian mirror)
#   CODELAB_SKIP_DOCKER_INSTALL=1   do nothing
set -euo pipefail

log() { echo "install-docker: $*"; }
die() { echo "install-docker: ERROR: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || die "must run as root"
if [ "${CODELAB_SKIP_DOCKER_INSTALL:-0}" = 1 ]; then
	log "CODELAB_SKIP_DOCKER_INSTALL=1: not installing Docker Engine (test mode)"
	exit 0
fi
for v in DOCKER_APT_URL DOCKER_APT_KEY_FINGERPRINT DOCKER_CE_VERSION CONTAINERD_VERSION DOCKER_COMPOSE_PLUGIN_VERSION; do
	[ -n "${!v:-}" ] || die "$v is not set (packer/versions.pkrvars.hcl through the template)"
done
want=$(echo "$DOCKER_APT_KEY_FINGERPRINT" | tr -d ' ' | tr a-f A-F)
[[ "$want" =~ ^[0-9A-F]{40}$ ]] || die "DOCKER_APT_KEY_FINGERPRINT '$DOCKER_APT_KEY_FINGERPRINT' is not 40 hex digits"
url=${DOCKER_APT_URL%/}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# dearmor turns an armored OpenPGP block into binary packets (gpgv reads binary
# keyrings; gnupg itself is not needed on the droplet).
dearmor() {
	if head -c 40 "$1" | grep -q -- '-----BEGIN PGP'; then
		sed -e '1,/^$/d' -e '/^=/,$d' -e '/^-----END/,$d' "$1" | base64 -d
	else
		cat "$1"
	fi
}

# signer prints the primary-key fingerprint of the key whose signature on $2 is valid
# in keyring $1 (gpgv's VALIDSIG status line), or fails.
signer() {
	local status
	status=$(gpgv --status-fd 1 --keyring "$1" "$2" 2>"$work/gpgv.err") ||
		die "$3: no valid signature by the fetched key: $(tr '\n' ' ' <"$work/gpgv.err")"
	awk '$1 == "[GNUPG:]" && $2 == "VALIDSIG" { print $NF; exit }' <<<"$status"
}

log "fetching the repository key $url/gpg and dists/$suite/InRelease"
curl -fsSL --retry 3 "$url/gpg" -o "$work/key.asc" || die "could not fetch the repository key $url/gpg"
curl -fsSL --retry 3 "$url/dists/$suite/InRelease" -o "$work/InRelease" || die "could not fetch $url/dists/$suite/InRelease"
dearmor "$work/key.asc" >"$work/key.gpg" || die "the repository key $url/gpg is not an OpenPGP key"
got=$(signer "$work/key.gpg" "$work/InRelease" "$url/dists/$suite/InRelease")
if [ "$got" != "$want" ]; then
	die "the Docker apt repository $url is signed by key $got, not the pinned $want (docker_apt_key_fingerprint); refusing it, nothing installed"
fi
log "repository key fingerprint $got matches the pin"

install -d -m 0755 /etc/apt/keyrings
install -m 0644 "$work/key.gpg" /etc/apt/keyrings/codelab-docker.gpg
echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/codelab-docker.gpg] $url $suite stable" >/etc/apt/sources.list.d/codelab-docker.list

if [ "${CODELAB_SKIP_APT:-0}" = 1 ]; then
	log "CODELAB_SKIP_APT=1: updating only the Docker source (test mode)"
	apt-get update -q -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/codelab-docker.list \
		-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
else
	apt-get update -q
fi
# The index apt will install from was signed by the pinned key too.
stored=/var/lib/apt/lists/$(echo "${url#*://}" | sed 's#/#_#g')_dists_${suite}_InRelease
[ -f "$stored" ] || die "apt stored no InRelease for $url ($stored)"
got=$(signer /etc/apt/keyrings/codelab-docker.gpg "$stored" "$stored")
[ "$got" = "$want" ] || die "apt's copy of $url InRelease is signed by $got, not the pinned $want"

# pkgspec name version: name=version, after checking the repository has it.
pkgspec() {
	local name=$1 version=$2 available
	available=$(apt-cache madison "$name" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
	[ -n "$available" ] || die "package $name is not in the Docker apt repository $url"
	if [ "$version" = latest ]; then
		echo "$name"
		return
	fi
	grep -qxF -- "$version" <<<"$available" ||
		die "package $name version $version (pinned) is not in the Docker apt repository $url; it has: $(echo $available)"
	echo "$name=$version"
}
specs=()
for pair in "docker-ce $DOCKER_CE_VERSION" "docker-ce-cli $DOCKER_CE_VERSION" \
	"containerd.io $CONTAINERD_VERSION" "docker-compose-plugin $DOCKER_COMPOSE_PLUGIN_VERSION"; do
	# shellcheck disable=SC2086 # name and version, split on purpose
	spec=$(pkgspec $pair) || exit 1
	specs+=("$spec")
done
log "installing ${specs[*]}"
apt-get -y -q install --no-install-recommends "${specs[@]}"
for p in docker-ce docker-ce-cli containerd.io docker-compose-plugin; do
	log "installed $p $(dpkg-query -W -f='${Version}' "$p")"
done
