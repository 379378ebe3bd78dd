#!/usr/bin/env bash
# Bakes a role's application images into a service image (codelab-<role>-base), on a
# droplet made from the services base. The imager resolved every image to its
# repository digest before the droplet existed; this script pulls each by digest, tags
# it as the role's compose file names it, checks the digest Docker recorded, installs
# /etc/codelab/baked-images.json (the agent's pull-images step reads it) and records the
# images in /etc/codelab/image.json.
#
# Payload ($CODELAB_PAYLOAD, written by the imager):
#   baked-images.json    installed as /etc/codelab/baked-images.json (0644)
#   images.list          one "<ref> <digest>" a line
#   service.json         the manifest's "service" object
#   docker/config.json   the registry login (no credentials for an anonymous pull):
#                        used through DOCKER_CONFIG, removed on exit, never on a command line
set -euo pipefail

log() { echo "bake-images: $*"; }
die() { echo "bake-images: ERROR: $*" >&2; exit 1; }

PAYLOAD="${CODELAB_PAYLOAD:-/tmp/codelab-payload}"
ETC="${CODELAB_ETC:-/etc/codelab}"

[ "$(id -u)" = 0 ] || die "must run as root"
for f in baked-images.json images.list service.json docker/config.json; do
	[ -f "$PAYLOAD/$f" ] || die "payload has no $f (the file provisioner did not run?)"
done
[ -f "$ETC/image.json" ] || die "$ETC/image.json is missing: the droplet is not from a services base"

if [ -d /run/systemd/system ]; then
	# The build droplet booted from the services base, so codelab-agent started, failed on
	# the build's empty user_data and is retried by systemd: stop it (and what it starts)
	# so nothing writes droplet state while the image is made; cleanup.sh removes what it
	# wrote. Docker must be up for the pulls.
	systemctl stop codelab-agent.service consul-template.service consul.service 2>/dev/null || true
	systemctl start docker.service || die "docker.service does not start"
fi

export DOCKER_CONFIG="$PAYLOAD/docker"
chmod 0700 "$DOCKER_CONFIG"
chmod 0600 "$DOCKER_CONFIG/config.json"
trap 'rm -rf "$DOCKER_CONFIG"' EXIT

pull() { # ref@digest, with retries
	local i
	for i in 1 2 3; do
		if docker pull -q "$1" >/dev/null; then return 0; fi
		log "pull of $1 failed (attempt $i of 3)"
		sleep $((i * 2))
	done
	return 1
}

n=0
while read -r ref digest rest; do
	[ -n "$ref" ] || continue
	[ -z "$rest" ] || die "images.list: unexpected \"$rest\" after $ref $digest"
	case "$digest" in
	sha256:*) ;;
	*) die "images.list: $ref has no sha256 digest (\"$digest\")" ;;
	esac
	case "${ref##*/}" in
	*:*) ;;
	*) die "images.list: $ref has no tag" ;;
	esac
	repo="${ref%:*}"
	log "pulling $repo@$digest (as $ref)"
	pull "$repo@$digest" || die "could not pull $repo@$digest"
	docker tag "$repo@$digest" "$ref"
	docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | grep -qxF "$repo@$digest" ||
		die "$ref: Docker does not record digest $digest for it"
	n=$((n + 1))
done <"$PAYLOAD/images.list"
[ "$n" -gt 0 ] || die "images.list names no image"

# The login is no longer needed: gone before anything else is written.
rm -rf "$DOCKER_CONFIG"
trap - EXIT

install -m 0644 "$PAYLOAD/baked-images.json" "$ETC/baked-images.json"

# image.json is one JSON object (install-base.sh writes it on one line): the service
# object goes in as its last member.
body="$(cat "$ETC/image.json")"
body="${body%"${body##*[![:space:]]}"}"
[ "${body: -1}" = "}" ] || die "$ETC/image.json does not end with }"
printf '%s,"service":%s}\n' "${body%\}}" "$(cat "$PAYLOAD/service.json")" >"$ETC/image.json.new"
chmod 0644 "$ETC/image.json.new"
mv "$ETC/image.json.new" "$ETC/image.json"

if [ -n "${CODELAB_IMAGE:-}" ] && [ -n "${CODELAB_SNAPSHOT_TIME:-}" ]; then
	echo "codelab-${CODELAB_IMAGE}-${CODELAB_SNAPSHOT_TIME}" >"$ETC/image"
	chmod 0644 "$ETC/image"
fi
log "baked $n image(s) for role ${CODELAB_ROLE:-?}; $ETC/baked-images.json written"
