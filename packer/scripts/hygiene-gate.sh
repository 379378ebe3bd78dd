#!/usr/bin/env bash
# The hygiene gate: the last provisioner before the snapshot. Fails (exit 1, listing every
# offender) if anything that belongs to one droplet would be baked into the image.
set -uo pipefail
PAYLOAD="${CODELAB_PAYLOAD:-/tmp/codelab-payload}"
failures=()
fail() { failures+=("$1"); }

not_empty() { # dir, what
	if [ -d "$1" ] && [ -n "$(find "$1" -mindepth 1 -print -quit 2>/dev/null)" ]; then
		fail "$2: $1 is not empty ($(find "$1" -mindepth 1 -maxdepth 1 | head -5 | tr '\n' ' '))"
	fi
}
exists() { # path, what
	if [ -e "$1" ] || [ -L "$1" ]; then fail "$2: $1"; fi
}

not_empty /opt/consul "Consul data or node-id"
not_empty /etc/consul.d "Consul configuration (rendered at boot)"
for f in /etc/ssh/ssh_host_*; do exists "$f" "SSH host key"; done
for home in /root /home/*; do
	exists "$home/.ssh/authorized_keys" "authorized_keys (Packer's temporary key)"
	exists "$home/.ssh/authorized_keys2" "authorized_keys2"
	for h in "$home"/.*_history "$home/.lesshst"; do exists "$h" "shell history"; done
	exists "$home/.docker/config.json" "registry credentials"
done
exists /var/lib/cloud/instance "cloud-init instance state"
not_empty /var/lib/cloud/instances "cloud-init instance state"
not_empty /var/lib/cloud/data "cloud-init instance state"
not_empty /var/lib/cloud/sem "cloud-init instance state"
exists /var/lib/codelab "codelab-agent state"
exists "$PAYLOAD" "uploaded payload"
if [ -s /etc/machine-id ]; then fail "machine-id: /etc/machine-id is not empty"; fi

if [ "${#failures[@]}" -gt 0 ]; then
	echo "hygiene gate: FAILED, ${#failures[@]} problem(s):" >&2
	for f in "${failures[@]}"; do echo "hygiene gate:   $f" >&2; done
	exit 1
fi
echo "hygiene gate: ok (no Consul state, SSH host keys, authorized_keys, cloud-init state, agent state or history)"
