package cli

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/internal/exitcode"
)

// Consul unreachable: a clear error and exit 1 (the read is bounded by
// fleetConsulTimeout, well inside 2 s).
func TestFleetConsulUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	t.Setenv("CODELAB_METADATA_URL", "http://"+addr+"/metadata/v1.json")
	code, out, stderr := run(t, "", "status", "--fleet", "--consul-addr", addr)
	if code != exitcode.Failed || out != "" || !strings.Contains(stderr, "fleet view: Consul at "+addr+" does not answer") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	code, _, stderr = run(t, "", "status", "--fleet", "--watch", "--consul-addr", addr)
	if code != exitcode.Failed || !strings.Contains(stderr, "does not answer") {
		t.Fatalf("--watch: exit %d: %s", code, stderr)
	}
	if fleetConsulTimeout >= 2*time.Second {
		t.Fatalf("fleetConsulTimeout %s must stay under 2s", fleetConsulTimeout)
	}
}

func TestFleetFlagsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"status", "--env", "prod"},
		{"status", "--role", "api"},
		{"status", "--watch"},
		{"status", "--fleet", "--wait"},
	} {
		code, _, stderr := run(t, "", args...)
		if code != exitcode.Usage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitcode.Usage, stderr)
		}
	}
}
