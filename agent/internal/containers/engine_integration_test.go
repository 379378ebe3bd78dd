package containers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/tools/testenv"
)

// TestRunOnceAgainstRealDocker runs throwaway containers through the real
// dockerd: a failing command's exit status and output come back, and a
// cancelled run leaves no container behind.
func TestRunOnceAgainstRealDocker(t *testing.T) {
	testenv.Integration(t, "docker")
	ref := fmt.Sprintf("codelab-local/oneoff:t%d", time.Now().UnixNano())
	testenv.BuildImage(t, testenv.Image{Ref: ref})
	t.Cleanup(func() { testenv.RemoveImage(t, ref) })
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	list := func() ([]container.Summary, error) {
		return e.API.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", OneOffLabel+"=1"), filters.Arg("ancestor", ref))})
	}
	mine := func() []container.Summary {
		t.Helper()
		l, err := list()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	_, err = e.RunOnce(ctx, OneOff{Image: ref, Cmd: []string{"bogus"}})
	var xe *ExitError
	if !errors.As(err, &xe) || xe.Code != 64 || !strings.Contains(xe.Output, "usage: codelab-testapp") {
		t.Fatalf("a failing command: err = %v, want exit status 64 with the usage line", err)
	}
	if left := mine(); len(left) != 0 {
		t.Fatalf("a finished run left %d container(s)", len(left))
	}

	// The test app serves until stopped: cancel it once it runs.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		_ = retry.Do(wctx, retry.Policy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}, func(context.Context) error {
			l, err := list()
			if err != nil {
				return err
			}
			for _, c := range l {
				if c.State == container.StateRunning {
					return nil
				}
			}
			return errors.New("not running yet")
		})
		cancel()
	}()
	if _, err := e.RunOnce(rctx, OneOff{Image: ref}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled run: err = %v, want context.Canceled", err)
	}
	if left := mine(); len(left) != 0 {
		t.Fatalf("a cancelled run left %d container(s): %+v", len(left), left)
	}
}
