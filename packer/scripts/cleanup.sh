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

if command -v apt-get >/dev/null 2>&1; then
	apt-get -y -q clean || true
fi
log "done"
