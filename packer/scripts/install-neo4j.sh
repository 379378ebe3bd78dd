#!/usr/bin/env bash
# Adds what the Neo4j droplet needs on top of install-base.sh. Backups are run by
# codelab-agent (dump, checksum, upload to Spaces): the image gives them a staging folder
# and zstd; monitoring gets the Prometheus node exporter (scraped over the VPC) and jq for
# the operators. Debian packages only, verified by apt. Neo4j runs in Docker (roles/neo4j).
#   CODELAB_SKIP_APT=1   test-only: skip the apt installs (no network in the container test)
set -euo pipefail
log() { echo "install-neo4j: $*"; }
die() { echo "install-neo4j: ERROR: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

if [ "${CODELAB_SKIP_APT:-0}" = 1 ]; then
	log "CODELAB_SKIP_APT=1: not installing backup/monitoring packages (test mode)"
else
	apt-get -y -q install --no-install-recommends jq zstd prometheus-node-exporter
	systemctl enable prometheus-node-exporter.service
fi

log "installing the backup timer and the monitor"
PAYLOAD=${CODELAB_PAYLOAD:-/tmp/codelab-payload}
for u in codelab-backup.service codelab-backup.timer codelab-monitor.service; do
	[ -f "$PAYLOAD/systemd/$u" ] || die "systemd unit $u is missing from the payload (systemd/ in the repo)"
	install -m 0644 "$PAYLOAD/systemd/$u" "/etc/systemd/system/$u"
done
# The timer fires the daily backup; the monitor waits (ConditionPathExists) for the
# settings consul-template renders, and the agent starts it on first boot.
systemctl enable codelab-backup.timer codelab-monitor.service

log "creating Neo4j directories"
install -d -m 0755 /opt/neo4j /opt/neo4j/data /opt/neo4j/logs /opt/neo4j/import /opt/neo4j/plugins
install -d -m 0700 /var/backups/neo4j
log "done"
