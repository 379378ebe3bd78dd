#!/usr/bin/env bash
# make demo: starts the local DigitalOcean, runs `imager build all` against it
# (Packer's real DigitalOcean builder over SSH, the real provisioning scripts),
# boots three Consul servers (neo4j, landing, sites) and an api and a web
# client from those snapshots with one-line user_data, waits for
# `codelab-agent status --wait` on each, and prints their status and the api's
# URL. `make demo-down` removes everything it made. See e2e/README.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
exec "$repo/bin/demo" up --logs "${CODELAB_CACHE:-$HOME/.cache/codelab}/demo-logs" "$@"
