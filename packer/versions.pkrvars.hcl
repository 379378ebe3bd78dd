# The one place for pinned versions and SHA-256 checksums of everything baked into the
# images. Packer reads this file as a variable file (-var-file) and the imager reads it to
# download, verify and upload the artifacts (imager/internal/artifacts). Format: one
# `name = "value"` per line, comments with '#'. The imager refuses to use an artifact whose
# checksum is empty.
#
# To bump a version: change it here, put the sha256 published by the vendor (or computed
# from the vendor's signed SHA256SUMS) next to it, run `imager fmt --check` and
# `imager build all`.

# Consul: https://releases.hashicorp.com/consul/1.17.1/consul_1.17.1_SHA256SUMS
consul_version = "1.17.1"
# sha256 of consul_1.17.1_linux_amd64.zip as published in HashiCorp's SHA256SUMS (taken from
# a public package formula; the vendor file itself is not reachable from the dev sandbox, and a
# wrong value fails the build closed).
consul_sha256 = "388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c0214"

# consul-template: https://releases.hashicorp.com/consul-template/0.34.0/consul-template_0.34.0_SHA256SUMS
consul_template_version = "0.34.0"
# sha256 of consul-template_0.34.0_linux_amd64.zip (same source and caveat as consul's).
consul_template_sha256 = "c7a5817547d6545f8c5ce2dfea62c821ddd324dd9a3414519ebaba2aeeff59a0"

# Docker Compose plugin: https://github.com/docker/compose/releases/download/v2.24.0/checksums.txt
compose_version = "2.24.0"
# TODO(pin): sha256 of docker-compose-linux-x86_64 (v2.24.0).
compose_sha256 = ""

# doctl: https://github.com/digitalocean/doctl/releases/download/v1.104.0/doctl-1.104.0-checksums.sha256
doctl_version = "1.104.0"
# TODO(pin): sha256 of doctl-1.104.0-linux-amd64.tar.gz.
doctl_sha256 = ""

# Docker Engine for Debian 12 (bookworm), from
# https://download.docker.com/linux/debian/dists/bookworm/pool/stable/amd64/
docker_ce_version = "24.0.7-1~debian.12~bookworm"
# TODO(pin): sha256 of docker-ce_24.0.7-1~debian.12~bookworm_amd64.deb.
docker_ce_sha256 = ""
# TODO(pin): sha256 of docker-ce-cli_24.0.7-1~debian.12~bookworm_amd64.deb.
docker_ce_cli_sha256 = ""
containerd_version   = "1.6.26-1"
# TODO(pin): sha256 of containerd.io_1.6.26-1_amd64.deb.
containerd_sha256 = ""
