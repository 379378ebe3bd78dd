//go:build tools

// Package tools pins the Consul server binary that the integration tests run.
// It is its own module (built with GOWORK=off) because Consul 1.15.4 needs
// github.com/hashicorp/consul/api v1.24.0, which the agent's module graph
// must not be forced to share.
package tools

import _ "github.com/hashicorp/consul"
