package exitcode_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/codelab-app/infra/internal/exitcode"
)

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitcode.OK},
		{errors.New("boom"), exitcode.Failed},
		{fmt.Errorf("rename: %w", syscall.EINVAL), exitcode.Failed},
		{exitcode.UsageError("bad %s", "flag"), exitcode.Usage},
		{fmt.Errorf("wrapped: %w", exitcode.UsageError("x")), exitcode.Usage},
		{exitcode.With(exitcode.Booting, errors.New("booting")), exitcode.Booting},
		{exitcode.AsUsage(errors.New("accepts 1 arg")), exitcode.Usage},
		{exitcode.AsUsage(nil), exitcode.OK},
	} {
		if got := exitcode.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// Doc lists every code, each once.
func TestDocListsEveryCode(t *testing.T) {
	for _, c := range []int{exitcode.OK, exitcode.Failed, exitcode.Degraded, exitcode.Booting, exitcode.Usage} {
		if n := strings.Count(exitcode.Doc, fmt.Sprintf("\n  %-3d ", c)); n != 1 {
			t.Errorf("Doc lists %d %d times:\n%s", c, n, exitcode.Doc)
		}
	}
}

func TestOfState(t *testing.T) {
	for state, want := range map[string]int{"ready": exitcode.OK, "degraded": exitcode.Degraded, "booting": exitcode.Booting, "failed": exitcode.Failed, "unreachable": exitcode.Failed, "unknown": exitcode.Failed} {
		if got := exitcode.OfState(state); got != want {
			t.Errorf("OfState(%q) = %d, want %d", state, got, want)
		}
	}
}
