# The DigitalOcean builder, pinned. `make deps` (scripts/packer.sh) builds it from its Go
# module and installs it where Packer's required_plugins finds it; CI does the same. The
# imager stages this file with every template.
packer {
  required_version = "= 1.9.4"
  required_plugins {
    digitalocean = {
      version = "= 1.4.1"
      source  = "github.com/digitalocean/digitalocean"
    }
  }
}
