# The one place for pinned versions, checksums and keys of everything baked into the
# images. Packer reads this file as a variable file (-var-file); the imager reads it with
# the same HCL parser (imager/versions), and `imager validate` rejects an unknown or
# repeated variable, an empty or malformed version, checksum or fingerprint, naming the
# line. `imager build all --plan` prints every artifact with its source and verification.
#
# To bump a version: change it here (with its checksum or key where it has one), run
# `imager validate all`, `imager build all --plan` and `imager build all`.

# Consul, from HashiCorp's releases. sha256 of consul_1.17.1_linux_amd64.zip as published
# in consul_1.17.1_SHA256SUMS (taken from a public package formula: the vendor file is not
# reachable from the dev sandbox; a wrong value fails the build closed).
consul_version = "1.17.1"
consul_sha256  = "388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c0214"

# consul-template, from HashiCorp's releases: sha256 of
# consul-template_0.34.0_linux_amd64.zip (same source and caveat as Consul's).
consul_template_version = "0.34.0"
consul_template_sha256  = "c7a5817547d6545f8c5ce2dfea62c821ddd324dd9a3414519ebaba2aeeff59a0"

# doctl is built by the imager from its Go module, pinned with its go.sum in
# tools/doctl/go.mod (the Go checksum database vouches for the module); this version must
# be the one tools/doctl/go.mod requires.
doctl_version = "1.104.0"

# Docker Engine, containerd and the Compose plugin come from Docker's signed apt
# repository. The build droplet fetches <docker_apt_url>/gpg and stops, before any package
# is installed, unless the repository's InRelease is signed by the key with this
# fingerprint (Docker's published Debian key, 9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF
# CD88); apt then checks every package against the signed index. A version is the apt
# version, or "latest": the image manifest (/etc/codelab/image.json), the snapshot's tags
# and `imager list-images` record what apt installed. The Engine must be 25 or later (API
# 1.44): it runs the roles' health checks with start_interval, so the first check comes a
# second after the start instead of a whole interval later.
docker_apt_url                = "https://download.docker.com/linux/debian"
docker_apt_key_fingerprint    = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
docker_ce_version             = "5:27.3.1-1~debian.12~bookworm"
containerd_version            = "1.7.22-1"
docker_compose_plugin_version = "2.29.7-1~debian.12~bookworm"

# Regions the snapshots are transferred to (the fleet's regions); the first is where the
# build droplet runs. `imager build --regions` overrides it.
snapshot_regions = ["nyc3", "fra1"]
