package containers

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestUpWaitsForTheSharedLock holds the lock as consul-template's
// flock(1) would, and checks that Up runs compose only once it is released.
func TestUpWaitsForTheSharedLock(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "run", "lock", "codelab-compose-api.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var released, ranWhileHeld atomic.Bool
	c := Compose{Project: "api", File: "/x/compose.yaml", Lock: lock,
		Exec: func(context.Context, string, ...string) ([]byte, error) {
			if !released.Load() {
				ranWhileHeld.Store(true)
			}
			return nil, nil
		}}
	time.AfterFunc(300*time.Millisecond, func() {
		released.Store(true)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	})
	if err := c.Up(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ranWhileHeld.Load() {
		t.Fatal("compose ran while consul-template held the lock")
	}

	// Held until the deadline: Up gives up with a clear error.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Up(ctx, time.Minute); err == nil {
		t.Fatal("Up ran while the lock was held")
	}
}
