# Variables shared by every image. The imager stages this file next to the image's own
# template (packer/<image>/) and passes -var-file=packer/versions.pkrvars.hcl plus the
# build variables below.

# --- pinned versions (values in packer/versions.pkrvars.hcl, read also by the imager's
# parser, imager/versions, which rejects a variable that is not declared here) ---
variable "consul_version" {
  type = string
}
variable "consul_sha256" {
  type = string
}
variable "consul_template_version" {
  type = string
}
variable "consul_template_sha256" {
  type = string
}
variable "doctl_version" {
  type        = string
  description = "Built by the imager from tools/doctl (go.sum); recorded in the image manifest."
}
variable "docker_apt_url" {
  type        = string
  description = "Docker's apt repository for Debian; the build droplet fetches <url>/gpg as the key."
}
variable "docker_apt_key_fingerprint" {
  type        = string
  description = "Fingerprint (40 hex digits) of the key that must sign the repository's InRelease."
}
variable "docker_ce_version" {
  type        = string
  description = "apt version of docker-ce and docker-ce-cli, or latest."
}
variable "containerd_version" {
  type        = string
  description = "apt version of containerd.io, or latest."
}
variable "docker_compose_plugin_version" {
  type        = string
  description = "apt version of docker-compose-plugin, or latest."
}
variable "snapshot_regions" {
  type        = list(string)
  description = "Regions the snapshot is transferred to (the build region is always one)."
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
variable "manifest_out" {
  type        = string
  description = "Local path the image manifest (/etc/codelab/image.json) is downloaded to."
  default     = "image.json"
}
variable "local_artifacts" {
  type        = bool
  description = "A --local-artifacts build (stand-ins, test apt key): recorded in the image."
  default     = false
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
    "DOCTL_VERSION=${var.doctl_version}",
    "CODELAB_LOCAL_ARTIFACTS=${var.local_artifacts ? 1 : 0}",
    "DOCKER_APT_URL=${var.docker_apt_url}",
    "DOCKER_APT_KEY_FINGERPRINT=${var.docker_apt_key_fingerprint}",
    "DOCKER_CE_VERSION=${var.docker_ce_version}",
    "CONTAINERD_VERSION=${var.containerd_version}",
    "DOCKER_COMPOSE_PLUGIN_VERSION=${var.docker_compose_plugin_version}",
    "DEBIAN_FRONTEND=noninteractive",
  ]
}
