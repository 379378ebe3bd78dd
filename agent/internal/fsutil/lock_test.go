package fsutil

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A shared lock is refused while an exclusive one is held, is not seen by
// Held, and makes an exclusive Lock wait until it is released.
func TestTryLockShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "boot.lock")
	unlock, err := Lock(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLockShared(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock while held exclusively: %v", err)
	}
	unlock()

	shared, err := TryLockShared(path)
	if err != nil {
		t.Fatalf("shared lock on a free lock: %v", err)
	}
	other, err := TryLockShared(path)
	if err != nil {
		t.Fatalf("a second shared lock: %v", err)
	}
	other()
	if held, err := Held(path); err != nil || held {
		t.Fatalf("Held with a shared holder = %v, %v", held, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := Lock(ctx, path, func() { waited = true }); err == nil || !waited {
		t.Fatalf("exclusive lock while shared is held: waited %v, err %v", waited, err)
	}
	shared()
	unlock, err = Lock(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("exclusive lock after the shared one ended: %v", err)
	}
	unlock()
}
