// Package version holds the imager's version and commit, set at build time:
//
//	go build -ldflags "-X github.com/codelab-app/infra/imager/internal/version.Version=v1.2.3 \
//	  -X github.com/codelab-app/infra/imager/internal/version.Commit=abc123" ./imager/cmd/imager
//
// (make build does). Without them, the module's build info is used.
package version

import "runtime/debug"

// Set by the linker.
var (
	Version = ""
	Commit  = ""
)

// String is "VERSION (commit COMMIT)".
func String() string {
	v, c := Version, Commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return v + " (commit " + c + ")"
}
