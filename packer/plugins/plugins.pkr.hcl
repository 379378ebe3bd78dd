# Packer 1.7 and newer need the DigitalOcean plugin declared and installed with
# `packer init`. Packer 1.6 has the builder built in and rejects this block, so the imager
# stages this file only when the installed Packer is 1.7 or newer.
packer {
  required_plugins {
    digitalocean = {
      version = ">= 1.1.1"
      source  = "github.com/digitalocean/digitalocean"
    }
  }
}
