//go:build tools

// Package tools pins versitygw, the S3-compatible server (posix backend)
// that the backup integration tests upload to, read back from and restore
// from. It is its own module (built with GOWORK=off) so that its dependency
// graph is never merged with the agent's.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
