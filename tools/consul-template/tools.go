//go:build tools

// Package tools pins the consul-template binary that the integration tests run.
package tools

import _ "github.com/hashicorp/consul-template"
