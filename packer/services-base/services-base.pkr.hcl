# codelab-services-base: app droplets (api, web, landing, sites).
# Built by `imager build app`; the source and shared variables live in packer/common.

build {
  source "source.digitalocean.base" {
    name          = "services-base"
    snapshot_name = "codelab-services-base-${local.snapshot_time}"
  }

  # The file provisioner uploads a folder only into one that exists.
  provisioner "shell" {
    inline = ["mkdir -p ${local.payload_dest}"]
  }

  provisioner "file" {
    source      = "${var.payload_dir}/"
    destination = local.payload_dest
  }

  provisioner "shell" {
    environment_vars = concat(local.build_env, ["CODELAB_IMAGE=services-base"])
    scripts = [
      "${var.scripts_dir}/install-docker.sh",
      "${var.scripts_dir}/install-base.sh",
    ]
  }

  # The image manifest (versions apt resolved included) comes back to the imager, which
  # tags the snapshot with it.
  provisioner "file" {
    direction   = "download"
    source      = "/etc/codelab/image.json"
    destination = var.manifest_out
  }

  provisioner "shell" {
    environment_vars = concat(local.build_env, ["CODELAB_IMAGE=services-base"])
    scripts = [
      "${var.scripts_dir}/cleanup.sh",
      "${var.scripts_dir}/hygiene-gate.sh",
    ]
  }
}
