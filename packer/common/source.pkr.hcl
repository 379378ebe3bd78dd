# The one DigitalOcean source both images build from. Each image's build block names it
# (`source "source.digitalocean.base" { name = ...; snapshot_name = ... }`) and sets
# only what differs.
source "digitalocean" "base" {
  api_url          = var.api_url
  image            = var.base_image
  region           = var.region
  snapshot_regions = var.snapshot_regions
  size             = var.size
  ssh_username     = "root"
  droplet_name     = "packer-${var.build_id}"
  tags             = ["codelab-imager", "codelab-build:${var.build_id}"]
  # The droplet that builds the image gets no codelab user_data: the agent is not run.
}
