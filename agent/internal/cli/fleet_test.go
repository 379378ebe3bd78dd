package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/fsutil"
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

// Consul down: a tick of `fleet publish` logs a warning and exits 0 (the
// next tick retries), within its timeout.
func TestFleetPublishConsulDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dir := t.TempDir()
	rec := boot.NewRecorder(fsutil.Root{Dir: dir}, boot.State{Role: "api", DropletID: "7", StartedAt: time.Now()})
	rec.Finish(nil)
	var errb bytes.Buffer
	o := &FleetPublishOptions{ConsulAddr: addr, MaxAge: 20 * time.Second, Timeout: 2 * time.Second, CheckTimeout: time.Second, Probes: fakeProbes()}
	if err := RunFleetPublish(context.Background(), &Global{Root: dir}, o, IO{Out: &errb, ErrOut: &errb}); err != nil {
		t.Fatalf("exit %d (%v), want 0\n%s", exitcode.Code(err), err, errb.String())
	}
	if !strings.Contains(errb.String(), "level=WARN msg=\"fleet record not published; the next tick retries\"") || !strings.Contains(errb.String(), addr) {
		t.Fatalf("no warning naming Consul:\n%s", errb.String())
	}

	// No boot recorded yet: nothing to publish, exit 0, said so.
	errb.Reset()
	if err := RunFleetPublish(context.Background(), &Global{Root: t.TempDir()}, o, IO{Out: &errb, ErrOut: &errb}); err != nil || !strings.Contains(errb.String(), "no boot recorded yet") {
		t.Fatalf("no state: %v\n%s", err, errb.String())
	}
}

func TestFleetPublishUsage(t *testing.T) {
	for _, args := range [][]string{
		{"fleet", "publish", "--max-age", "0s"},
		{"fleet", "publish", "extra"},
	} {
		if code, _, stderr := run(t, "", args...); code != exitcode.Usage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitcode.Usage, stderr)
		}
	}
	if _, out, _ := run(t, "", "fleet", "publish", "--help"); !strings.Contains(out, exitcode.Doc) || !strings.Contains(out, "codelab-fleet.timer") {
		t.Errorf("fleet publish --help:\n%s", out)
	}
}
