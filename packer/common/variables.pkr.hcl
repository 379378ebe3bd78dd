# Variables shared by every image. The imager stages this file next to the image's own
# template (packer/<image>/) and passes -var-file=packer/versions.pkrvars.hcl plus the
# build variables below.

# --- pinned versions (values in packer/versions.pkrvars.hcl) ---
variable "consul_version" {
  type = string
}
variable "consul_sha256" {
  type    = string
  default = ""
}
variable "consul_template_version" {
  type = string
}
variable "consul_template_sha256" {
  type    = string
  default = ""
}
variable "compose_version" {
  type = string
}
variable "compose_sha256" {
  type    = string
  default = ""
}
variable "doctl_version" {
  type = string
}
variable "doctl_sha256" {
  type    = string
  default = ""
}
variable "docker_ce_version" {
  type = string
}
variable "docker_ce_sha256" {
  type    = string
  default = ""
}
variable "docker_ce_cli_sha256" {
  type    = string
  default = ""
}
variable "containerd_version" {
  type = string
}
variable "containerd_sha256" {
  type    = string
  default = ""
}

# --- build variables (set by the imager) ---
variable "api_url" {
  type        = string
  description = "DigitalOcean API URL (the local DigitalOcean in tests)."
  default     = "https://api.digitalocean.com/"
}
variable "region" {
  type    = string
  default = "nyc3"
}
variable "size" {
  type    = string
  default = "s-2vcpu-4gb"
}
variable "base_image" {
  type    = string
  default = "debian-12-x64"
}
variable "payload_dir" {
  type        = string
  description = "Local folder the imager fills with verified artifacts, the agent, units and roles."
}
variable "scripts_dir" {
  type        = string
  description = "Absolute path of packer/scripts."
}
variable "snapshot_time" {
  type        = string
  description = "UTC build time as YYYY-MM-DD-HHMM; empty means now."
  default     = ""
}
variable "build_id" {
  type        = string
  description = "Tags the temporary droplet so the imager can find it if Packer leaves it behind."
  default     = "manual"
}
variable "agent_version" {
  type    = string
  default = "dev"
}
variable "git_sha" {
  type    = string
  default = "unknown"
}
variable "fingerprint" {
  type    = string
  default = ""
}

locals {
  snapshot_time = var.snapshot_time != "" ? var.snapshot_time : formatdate("YYYY-MM-DD-hhmm", timestamp())
  payload_dest  = "/tmp/codelab-payload"
  build_env = [
    "CODELAB_PAYLOAD=${local.payload_dest}",
    "CODELAB_AGENT_VERSION=${var.agent_version}",
    "CODELAB_GIT_SHA=${var.git_sha}",
    "CODELAB_FINGERPRINT=${var.fingerprint}",
    "CODELAB_SNAPSHOT_TIME=${local.snapshot_time}",
    "CONSUL_VERSION=${var.consul_version}",
    "CONSUL_TEMPLATE_VERSION=${var.consul_template_version}",
    "COMPOSE_VERSION=${var.compose_version}",
    "DOCTL_VERSION=${var.doctl_version}",
    "DEBIAN_FRONTEND=noninteractive",
  ]
}
