package cli

import (
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/fsutil"
)

func TestRetryDelay(t *testing.T) {
	now := time.Unix(10_000, 0)
	ended := now.Add(-time.Second)
	for name, tc := range map[string]struct {
		prev        *boot.State
		wantDelay   time.Duration
		wantAttempt int
		wantPrevErr string
	}{
		"first boot":             {wantAttempt: 1},
		"after a reboot":         {prev: &boot.State{BootID: "old", Result: boot.BootFailed, Attempt: 4, FinishedAt: &ended}, wantAttempt: 1},
		"after a ready boot":     {prev: &boot.State{BootID: "b", Result: boot.BootReady, Attempt: 1, FinishedAt: &ended}, wantAttempt: 2},
		"second attempt":         {prev: &boot.State{BootID: "b", Result: boot.BootFailed, Error: "boom", Attempt: 1, FinishedAt: &ended}, wantDelay: 4 * time.Second, wantAttempt: 2, wantPrevErr: "boom"},
		"fourth attempt":         {prev: &boot.State{BootID: "b", Result: boot.BootFailed, Error: "boom", Attempt: 3, FinishedAt: &ended}, wantDelay: 19 * time.Second, wantAttempt: 4, wantPrevErr: "boom"},
		"capped":                 {prev: &boot.State{BootID: "b", Result: boot.BootFailed, Error: "boom", Attempt: 40, FinishedAt: &ended}, wantDelay: maxRetry - time.Second, wantAttempt: 41, wantPrevErr: "boom"},
		"killed while booting":   {prev: &boot.State{BootID: "b", Result: boot.BootRunning, Attempt: 1, StartedAt: ended}, wantDelay: 4 * time.Second, wantAttempt: 2, wantPrevErr: "the boot ended without finishing (killed, or the agent crashed)"},
		"failed long ago enough": {prev: &boot.State{BootID: "b", Result: boot.BootFailed, Error: "boom", Attempt: 1, FinishedAt: ptr(now.Add(-time.Hour))}, wantAttempt: 2, wantPrevErr: "boom"},
	} {
		t.Run(name, func(t *testing.T) {
			root := fsutil.Root{Dir: t.TempDir()}
			if tc.prev != nil {
				rec := boot.NewRecorder(root, *tc.prev)
				if err := rec.Update(func(s *boot.State) { s.Result = tc.prev.Result }); err != nil {
					t.Fatal(err)
				}
			}
			base := boot.State{BootID: "b", Attempt: 1}
			d := retryDelay(root, &base, now)
			if d != tc.wantDelay || base.Attempt != tc.wantAttempt || base.PreviousError != tc.wantPrevErr {
				t.Fatalf("delay %s attempt %d prev %q; want %s %d %q", d, base.Attempt, base.PreviousError, tc.wantDelay, tc.wantAttempt, tc.wantPrevErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
