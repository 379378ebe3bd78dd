# codelab-<role>-base for role api, web, landing or sites: the services base with the
# role's application images baked in, pulled by digest. Built by `imager build
# api|web|landing|sites|services`; base_image is the id of the newest
# codelab-services-base snapshot with the current fingerprint, and the payload holds
# only what the build bakes (baked-images.json, images.list, the service manifest) and the
# registry login, which bake-images.sh removes as soon as the pulls are done.

variable "role" {
  type        = string
  description = "The role whose images are baked: api, web, landing or sites."
  validation {
    condition     = contains(["api", "web", "landing", "sites"], var.role)
    error_message = "The role must be api, web, landing or sites."
  }
}

variable "base_fingerprint" {
  type        = string
  description = "Fingerprint of the services base snapshot the image builds on."
  default     = ""
}

build {
  source "source.digitalocean.base" {
    name          = "service"
    snapshot_name = "codelab-${var.role}-base-${local.snapshot_time}"
  }

  # The payload folder holds the registry login: only root may read it.
  provisioner "shell" {
    inline = ["install -d -m 0700 ${local.payload_dest}"]
  }

  provisioner "file" {
    source      = "${var.payload_dir}/"
    destination = local.payload_dest
  }

  provisioner "shell" {
    environment_vars = concat(local.build_env, [
      "CODELAB_IMAGE=${var.role}-base",
      "CODELAB_ROLE=${var.role}",
      "CODELAB_BASE_FINGERPRINT=${var.base_fingerprint}",
    ])
    scripts = ["${var.scripts_dir}/bake-images.sh"]
  }

  # The image manifest, now with the baked images, comes back to the imager.
  provisioner "file" {
    direction   = "download"
    source      = "/etc/codelab/image.json"
    destination = var.manifest_out
  }

  provisioner "shell" {
    environment_vars = concat(local.build_env, ["CODELAB_IMAGE=${var.role}-base"])
    scripts = [
      "${var.scripts_dir}/cleanup.sh",
      "${var.scripts_dir}/hygiene-gate.sh",
    ]
  }
}
