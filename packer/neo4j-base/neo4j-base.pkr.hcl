# codelab-neo4j-base: the Neo4j droplet (base + backup and monitoring tools).
# Built by `imager build neo4j`; shared variables live in packer/common.

source "digitalocean" "neo4j-base" {
  api_url       = var.api_url
  image         = var.base_image
  region        = var.region
  size          = var.size
  ssh_username  = "root"
  droplet_name  = "packer-${var.build_id}"
  snapshot_name = "codelab-neo4j-base-${local.snapshot_time}"
  tags          = ["codelab-imager", "codelab-build:${var.build_id}"]
  # The droplet that builds the image gets no codelab user_data: the agent is not run.
}

build {
  sources = ["source.digitalocean.neo4j-base"]

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
      "${var.scripts_dir}/install-base.sh",
      "${var.scripts_dir}/install-neo4j.sh",
      "${var.scripts_dir}/cleanup.sh",
      "${var.scripts_dir}/hygiene-gate.sh",
    ]
  }
}
