//go:build tools

// Package tools pins the Docker Compose v2 CLI plugin that the integration
// tests and the local DigitalOcean run.
package tools

import _ "github.com/docker/compose/v2/cmd"
