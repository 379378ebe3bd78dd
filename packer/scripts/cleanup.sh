#!/usr/bin/env bash
# Removes everything that must not be baked into a snapshot. hygiene-gate.sh checks the
# result and fails the build if anything remains.
set -euo pipefail
log() { echo "cleanup: $*"; }
PAYLOAD="${CODELAB_PAYLOAD:-/tmp/codelab-payload}"
export DEBIAN_FRONTEND=noninteractive

log "removing the payload"
rm -rf "$PAYLOAD"

log "removing Consul data and node-id"
find /opt/consul -mindepth 1 -delete 2>/dev/null || true
find /etc/consul.d -mindepth 1 -delete 2>/dev/null || true

log "removing codelab-agent state"
rm -rf /var/lib/codelab

log "removing SSH host keys and authorized_keys (including Packer's temporary key)"
rm -f /etc/ssh/ssh_host_*
rm -f /root/.ssh/authorized_keys /root/.ssh/authorized_keys2
for home in /home/*; do
	[ -d "$home/.ssh" ] && rm -f "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"
done

log "removing cloud-init instance state"
if command -v cloud-init >/dev/null 2>&1; then
	cloud-init clean --logs
fi
rm -rf /var/lib/cloud/instance /var/lib/cloud/instances /var/lib/cloud/data /var/lib/cloud/sem

log "removing shell history"
unset HISTFILE
rm -f /root/.bash_history /root/.lesshst /root/.*_history /root/.docker/config.json
for home in /home/*; do
	rm -f "$home/.bash_history" "$home"/.*_history
done

log "resetting machine-id (regenerated at first boot)"
if [ -e /etc/machine-id ]; then
	: >/etc/machine-id
fi
rm -f /var/lib/dbus/machine-id

log "removing tokens and credentials (registry token and logins, credential helper state, doctl config)"
rm -f /etc/codelab/registry-token
rm -rf /etc/codelab/registry-auth
for home in /root /home/*; do
	rm -rf "$home/.docker/config.json" "$home/.docker/.token_seed" "$home/.docker/.token_seed.lock" "$home/.password-store"
done
find /root/.config/doctl -mindepth 1 -delete 2>/dev/null || true

log "removing known_hosts"
rm -f /root/.ssh/known_hosts /root/.ssh/known_hosts.old /etc/ssh/ssh_known_hosts
for home in /home/*; do
	rm -f "$home/.ssh/known_hosts" "$home/.ssh/known_hosts.old"
done

log "removing the Docker engine id and the systemd random seed (both regenerated at first boot)"
rm -f /var/lib/docker/engine-id /var/lib/systemd/random-seed

if command -v apt-get >/dev/null 2>&1; then
	apt-get -y -q clean || true
fi
log "removing apt lists"
find /var/lib/apt/lists -mindepth 1 ! -path /var/lib/apt/lists/lock ! -path /var/lib/apt/lists/partial -delete 2>/dev/null || true

log "removing temporary files"
# Not the running script (Packer's shell provisioner uploads it to /tmp), nor the PrivateTmp
# folders of running services.
self="$(readlink -f "${BASH_SOURCE[0]}")"
find /tmp /var/tmp -mindepth 1 -maxdepth 1 ! -name 'systemd-private-*' -print0 2>/dev/null |
	while IFS= read -r -d '' p; do
		[ "$(readlink -f "$p")" = "$self" ] || rm -rf -- "$p"
	done

log "removing logs: journal files, rotated logs, and the content of every other log"
if command -v journalctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	journalctl --rotate >/dev/null 2>&1 || true
fi
find /var/log/journal -mindepth 1 -delete 2>/dev/null || true
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete 2>/dev/null || true
find /var/log -type f -size +0 -exec truncate -s 0 {} + 2>/dev/null || true
log "done"
