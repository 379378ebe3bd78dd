#!/usr/bin/env bash
# Installs everything every codelab image needs from the payload the imager uploaded
# (verified artifacts, codelab-agent, systemd units, role files), after install-docker.sh
# installed Docker from its signed apt repository. Nothing is downloaded here except
# Debian packages through apt, whose archive signatures apt verifies.
#
# Environment (set by the Packer template):
#   CODELAB_PAYLOAD              payload folder (default /tmp/codelab-payload)
#   CODELAB_IMAGE                image family, e.g. services-base
#   CODELAB_AGENT_VERSION, CODELAB_GIT_SHA, CODELAB_FINGERPRINT, *_VERSION,
#   CODELAB_LOCAL_ARTIFACTS     recorded in /etc/codelab/image.env and image.json
# Test-only switches (never set by the templates; the container test has no network):
#   CODELAB_SKIP_APT=1              skip apt-get update/upgrade
#   CODELAB_SKIP_DOCKER_INSTALL=1   Docker was not installed (install-docker.sh skipped)
set -euo pipefail

log() { echo "install-base: $*"; }
die() { echo "install-base: ERROR: $*" >&2; exit 1; }

PAYLOAD="${CODELAB_PAYLOAD:-/tmp/codelab-payload}"
ROLES_DIR="${CODELAB_ROLES_DIR:-/usr/share/codelab/roles}"
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || die "must run as root"
[ -d "$PAYLOAD" ] || die "payload folder $PAYLOAD is missing (the file provisioner did not run?)"

systemd_running() { [ -d /run/systemd/system ]; }

log "verifying payload checksums"
[ -f "$PAYLOAD/SHA256SUMS" ] || die "$PAYLOAD/SHA256SUMS is missing"
(cd "$PAYLOAD" && sha256sum --quiet --strict -c SHA256SUMS) || die "payload checksum mismatch"

for b in consul consul-template doctl codelab-agent; do
	[ -f "$PAYLOAD/bin/$b" ] || die "payload has no bin/$b"
done

if [ "${CODELAB_SKIP_APT:-0}" = 1 ]; then
	log "CODELAB_SKIP_APT=1: not running apt-get update/upgrade (test mode)"
else
	log "apt-get update + upgrade"
	apt-get update -q
	apt-get -y -q -o Dpkg::Options::=--force-confold upgrade
	# iptables: codelab-agent firewall keeps containers from the metadata service.
	apt-get -y -q install --no-install-recommends ca-certificates iptables
fi
command -v iptables >/dev/null && command -v ip6tables >/dev/null ||
	die "iptables/ip6tables missing (codelab-firewall.service needs them)"

log "installing binaries"
install -m 0755 "$PAYLOAD/bin/consul" /usr/local/bin/consul
install -m 0755 "$PAYLOAD/bin/consul-template" /usr/local/bin/consul-template
install -m 0755 "$PAYLOAD/bin/doctl" /usr/local/bin/doctl
install -m 0755 "$PAYLOAD/bin/codelab-agent" /usr/local/bin/codelab-agent
# docker-compose-plugin (Docker's apt repository) ships the plugin; the old command name
# keeps working for operators.
if [ -x /usr/libexec/docker/cli-plugins/docker-compose ]; then
	ln -sf /usr/libexec/docker/cli-plugins/docker-compose /usr/local/bin/docker-compose
fi
for b in consul consul-template doctl codelab-agent; do
	"/usr/local/bin/$b" --version >/dev/null 2>&1 || "/usr/local/bin/$b" version >/dev/null 2>&1 ||
		die "/usr/local/bin/$b does not run"
done

# Consul is a static binary (no package creates its user): it runs as the system user and
# group consul (systemd/consul.service), owns its data folder and reads /etc/consul.d, whose
# files codelab-agent writes owned by consul.
log "creating the consul user"
if ! getent group consul >/dev/null; then
	groupadd --system consul
fi
if ! getent passwd consul >/dev/null; then
	useradd --system --gid consul --home-dir /opt/consul --no-create-home --shell /usr/sbin/nologin \
		--comment "Consul agent" consul
fi

log "creating directories"
install -d -m 0750 -o root -g consul /etc/consul.d
install -d -m 0750 -o consul -g consul /opt/consul
install -d -m 0755 /etc/consul-template /root/docker /etc/codelab
install -d -m 0700 /root/.config /root/.config/doctl

log "installing role files into $ROLES_DIR"
rm -rf "$ROLES_DIR"
install -d -m 0755 "$ROLES_DIR"
if [ -d "$PAYLOAD/roles" ]; then
	cp -a "$PAYLOAD/roles/." "$ROLES_DIR/"
	chown -R root:root "$ROLES_DIR"
fi

log "installing systemd units"
shopt -s nullglob
units=()
for u in "$PAYLOAD"/systemd/*.service "$PAYLOAD"/systemd/*.timer; do
	# The neo4j role's backup and monitor units are install-neo4j.sh's.
	case "$(basename "$u")" in codelab-backup.* | codelab-monitor.*) continue ;; esac
	units+=("$u")
done
shopt -u nullglob
for u in "${units[@]}"; do
	install -m 0644 "$u" "/etc/systemd/system/$(basename "$u")"
done
for required in codelab-agent.service consul.service consul-template.service codelab-ssh-hostkeys.service codelab-fleet.service codelab-fleet.timer codelab-firewall.service; do
	[ -f "/etc/systemd/system/$required" ] || die "systemd unit $required is missing from the payload (systemd/ in the repo)"
done

if systemd_running; then
	systemctl daemon-reload
fi
# consul and consul-template are enabled here but started by codelab-agent at boot, once
# their configuration is rendered. docker is enabled and started. codelab-firewall is
# RequiredBy docker.service: enabling it makes every start of dockerd wait for its rules.
# Every timer is enabled: codelab-fleet.timer keeps the droplet's fleet record in Consul
# fresh after the boot.
systemctl enable codelab-agent.service codelab-firewall.service consul.service consul-template.service codelab-ssh-hostkeys.service
for u in "${units[@]}"; do
	case "$(basename "$u")" in *.timer) systemctl enable "$(basename "$u")" ;; esac
done
if [ "${CODELAB_SKIP_DOCKER_INSTALL:-0}" != 1 ]; then
	systemctl enable docker.service
	if systemd_running; then
		systemctl start docker.service
		docker version >/dev/null || die "docker does not answer after start"
		docker compose version >/dev/null || die "docker compose plugin does not run"
	fi
fi

log "configuring cloud-init (hostname, SSH keys and networking; user_data belongs to codelab-agent)"
install -d -m 0755 /etc/cloud/cloud.cfg.d
cat >/etc/cloud/cloud.cfg.d/99-codelab.cfg <<'CFG'
# codelab: user_data is codelab-agent's one-line format, not cloud-config. cloud-init
# must not consume it (that would leave it degraded); it still sets the hostname, installs
# the SSH keys from the metadata, regenerates SSH host keys and configures networking.
# allow_userdata is ignored by cloud-init releases that predate it.
allow_userdata: false
ssh_deletekeys: true
ssh_genkeytypes: [rsa, ecdsa, ed25519]
preserve_hostname: false
CFG

log "recording image release"
cat >/etc/codelab/image.env <<ENV
CODELAB_IMAGE=${CODELAB_IMAGE:-unknown}
CODELAB_AGENT_VERSION=${CODELAB_AGENT_VERSION:-unknown}
CODELAB_GIT_SHA=${CODELAB_GIT_SHA:-unknown}
CODELAB_FINGERPRINT=${CODELAB_FINGERPRINT:-}
CONSUL_VERSION=${CONSUL_VERSION:-}
CONSUL_TEMPLATE_VERSION=${CONSUL_TEMPLATE_VERSION:-}
DOCTL_VERSION=${DOCTL_VERSION:-}
CODELAB_LOCAL_ARTIFACTS=${CODELAB_LOCAL_ARTIFACTS:-0}
ENV
chmod 0644 /etc/codelab/image.env

# The manifest: what the image is and the package versions apt installed (with "latest"
# in the versions file, this is where the resolved versions are recorded). The imager
# downloads it and tags the snapshot with the package versions.
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"; }
pkgs=""
for p in docker-ce docker-ce-cli containerd.io docker-compose-plugin; do
	v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
	[ -n "$v" ] || continue
	pkgs="$pkgs${pkgs:+,}$(json_str "$p"):$(json_str "$v")"
done
local_build=false
[ "${CODELAB_LOCAL_ARTIFACTS:-0}" = 1 ] && local_build=true
cat >/etc/codelab/image.json <<JSON
{"image":$(json_str "${CODELAB_IMAGE:-unknown}"),"agentVersion":$(json_str "${CODELAB_AGENT_VERSION:-unknown}"),"gitSha":$(json_str "${CODELAB_GIT_SHA:-unknown}"),"fingerprint":$(json_str "${CODELAB_FINGERPRINT:-}"),"localArtifacts":$local_build,"consul":$(json_str "${CONSUL_VERSION:-}"),"consulTemplate":$(json_str "${CONSUL_TEMPLATE_VERSION:-}"),"doctl":$(json_str "${DOCTL_VERSION:-}"),"packages":{$pkgs}}
JSON
chmod 0644 /etc/codelab/image.json
# The snapshot's name, which `codelab-agent status` shows as the droplet's image (the
# metadata service does not say which image a droplet came from).
if [ -n "${CODELAB_IMAGE:-}" ] && [ -n "${CODELAB_SNAPSHOT_TIME:-}" ]; then
	echo "codelab-${CODELAB_IMAGE}-${CODELAB_SNAPSHOT_TIME}" >/etc/codelab/image
else
	echo "codelab-${CODELAB_IMAGE:-unknown}" >/etc/codelab/image
fi
chmod 0644 /etc/codelab/image
log "done"
