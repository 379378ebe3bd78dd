// Package version carries the build's version and git SHA, stamped in by
// `make build` and `imager build` through -ldflags -X.
package version

var (
	Version = "dev"
	Commit  = "unknown"
)

// String is "VERSION (COMMIT)".
func String() string { return Version + " (" + Commit + ")" }
