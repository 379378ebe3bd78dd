# codelab-neo4j-base: the Neo4j droplet (base + backup and monitoring tools).
# Built by `imager build neo4j`; the source and shared variables live in packer/common.

build {
  source "source.digitalocean.base" {
    name          = "neo4j-base"
    snapshot_name = "codelab-neo4j-base-${local.snapshot_time}"
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
    environment_vars = concat(local.build_env, ["CODELAB_IMAGE=neo4j-base"])
    scripts = [
      "${var.scripts_dir}/install-docker.sh",
      "${var.scripts_dir}/install-base.sh",
      "${var.scripts_dir}/install-neo4j.sh",
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
    environment_vars = concat(local.build_env, ["CODELAB_IMAGE=neo4j-base"])
    scripts = [
      "${var.scripts_dir}/cleanup.sh",
      "${var.scripts_dir}/hygiene-gate.sh",
    ]
  }
}
