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
	# Credential helper state: docker-credential-pass's store, the secretservice/ecr/gcr
	# helpers' files, and any login a build left in a DOCKER_CONFIG of its own.
	exists "$home/.password-store" "credential helper state"
	for f in "$home"/.docker/*.json "$home"/.docker/.token_seed* "$home"/.ecr "$home"/.config/gcloud/docker_credential_gcr_config.json; do
		[ "$f" = "$home/.docker/config.json" ] || exists "$f" "credential helper state"
	done
done
exists /etc/codelab/registry-auth "registry credentials"
each_cfg() { # any Docker client config with credentials outside a home (a build's DOCKER_CONFIG)
	find / -xdev \( -path /proc -o -path /sys -o -path /var/lib/docker -o -path /usr \) -prune -o \
		-type f -name config.json -path '*docker*' -print 2>/dev/null | xargs -r grep -l '"auth' 2>/dev/null | sort
}
exists /var/lib/cloud/instance "cloud-init instance state"
not_empty /var/lib/cloud/instances "cloud-init instance state"
not_empty /var/lib/cloud/data "cloud-init instance state"
not_empty /var/lib/cloud/sem "cloud-init instance state"
exists /var/lib/codelab "codelab-agent state"
exists "$PAYLOAD" "uploaded payload"
for f in /etc/machine-id /var/lib/dbus/machine-id; do
	if [ -s "$f" ]; then fail "machine-id: $f is not empty"; fi
done
exists /etc/codelab/registry-token "registry token"
not_empty /root/.config/doctl "doctl credentials"
for home in /root /home/*; do
	for f in "$home/.ssh/known_hosts" "$home/.ssh/known_hosts.old"; do exists "$f" "known_hosts"; done
done
exists /etc/ssh/ssh_known_hosts "known_hosts"
exists /var/lib/docker/engine-id "Docker engine id"
exists /var/lib/systemd/random-seed "systemd random seed"

each() { # what; reads one path a line on stdin (a redirect, not a pipe: fail must run in
	# this shell) and names the first 20
	local what="$1" n=0 p
	while IFS= read -r p; do
		n=$((n + 1))
		if [ "$n" -le 20 ]; then fail "$what: $p"; fi
	done
	if [ "$n" -gt 20 ]; then fail "$what: $((n - 20)) more"; fi
}
# Logs: any journal file, and any other log with content (auth.log, dpkg.log, apt's, ...).
each "journal file" < <(find /var/log/journal -type f 2>/dev/null | sort)
each "log with content" < <(find /var/log -path /var/log/journal -prune -o -type f -size +0 -print 2>/dev/null | sort)
# apt's own lock file and empty partial/ folder are not data.
each "apt lists" < <(find /var/lib/apt/lists -mindepth 1 ! -path /var/lib/apt/lists/lock ! -path /var/lib/apt/lists/partial 2>/dev/null | sort)
# Temporary files. Not this script itself (Packer's shell provisioner uploads it to /tmp),
# nor the PrivateTmp folders of running services (systemd removes them when they stop).
self="$(readlink -f "${BASH_SOURCE[0]}")"
temporary() {
	local p
	find /tmp /var/tmp -mindepth 1 -maxdepth 1 ! -name 'systemd-private-*' 2>/dev/null | sort |
		while IFS= read -r p; do [ "$(readlink -f "$p")" = "$self" ] || echo "$p"; done
}
each "temporary file" < <(temporary)
each "registry credentials (Docker client config with auths)" < <(each_cfg)

if [ "${#failures[@]}" -gt 0 ]; then
	echo "hygiene gate: FAILED, ${#failures[@]} problem(s):" >&2
	for f in "${failures[@]}"; do echo "hygiene gate:   $f" >&2; done
	exit 1
fi
echo "hygiene gate: ok (no Consul state, SSH host keys, authorized_keys, known_hosts, cloud-init state, agent state, history, tokens, registry credentials, credential helper state, machine-id, random seed, Docker engine id, logs, apt lists or temporary files)"
