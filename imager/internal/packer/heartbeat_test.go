package packer

import (
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"
)

// TestHeartbeatSaysHowLongPackerHasBeenSilent: lines pass through, and while
// none arrive a line names the last one and the time spent on it.
func TestHeartbeatSaysHowLongPackerHasBeenSilent(t *testing.T) {
	var out testenv.SyncBuffer
	h := &Heartbeat{Out: &out, Every: 20 * time.Millisecond}
	h.Start()
	if _, err := h.Write([]byte("==> Waiting for SSH to become available...\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "... still: ==> Waiting for SSH to become available...") {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat after a silent wait:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.Stop()
	got := out.String()
	if !strings.HasPrefix(got, "==> Waiting for SSH to become available...\n") {
		t.Fatalf("the line itself did not pass through first:\n%s", got)
	}
	n := strings.Count(got, "\n")
	time.Sleep(60 * time.Millisecond)
	if strings.Count(out.String(), "\n") != n {
		t.Fatal("heartbeat lines after Stop")
	}
}

// TestHeartbeatQuietWhileLinesFlow: no heartbeat while Packer keeps talking.
func TestHeartbeatQuietWhileLinesFlow(t *testing.T) {
	var out testenv.SyncBuffer
	h := &Heartbeat{Out: &out, Every: time.Second}
	h.Start()
	for i := range 20 {
		if _, err := h.Write([]byte("line " + strings.Repeat("x", i) + "\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.Stop()
	if strings.Contains(out.String(), "still:") {
		t.Fatalf("heartbeat while lines were flowing:\n%s", out.String())
	}
}
