package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/codelab-app/infra/imager/internal/cli"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, cli.ExitOK},
		{errors.New("boom"), cli.ExitFailure},
		{cli.UsageError{Err: errors.New("bad flag")}, cli.ExitUsage},
		{fmt.Errorf("wrapped: %w", cli.UsageError{Err: errors.New("x")}), cli.ExitUsage},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
