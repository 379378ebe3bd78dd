package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type clock struct{ waits []time.Duration }

func (c *clock) sleep(ctx context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	return ctx.Err()
}

func TestDoBacksOffAndCaps(t *testing.T) {
	c := &clock{}
	calls := 0
	err := Do(context.Background(), Policy{Initial: time.Second, Max: 4 * time.Second, Attempts: 5, Jitter: 0, Sleep: c.sleep},
		func(context.Context) error { calls++; return errors.New("boom") })
	if err == nil || !strings.Contains(err.Error(), "after 5 attempts: boom") {
		t.Fatalf("err = %v", err)
	}
	if calls != 5 {
		t.Fatalf("calls = %d, want 5", calls)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(c.waits) != len(want) {
		t.Fatalf("waits = %v, want %v", c.waits, want)
	}
	for i := range want {
		if c.waits[i] != want[i] {
			t.Fatalf("waits = %v, want %v", c.waits, want)
		}
	}
}

func TestDoStopsOnSuccessAndPermanent(t *testing.T) {
	c := &clock{}
	n := 0
	if err := Do(context.Background(), Policy{Sleep: c.sleep}, func(context.Context) error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("err=%v n=%d", err, n)
	}
	sentinel := errors.New("bad request")
	n = 0
	err := Do(context.Background(), Policy{Sleep: c.sleep}, func(context.Context) error { n++; return Permanent(sentinel) })
	if !errors.Is(err, sentinel) || n != 1 {
		t.Fatalf("permanent: err=%v n=%d", err, n)
	}
}

func TestDoHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Do(ctx, Policy{Initial: time.Hour}, func(context.Context) error {
		n++
		cancel()
		return errors.New("down")
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("err = %v", err)
	}
	if n != 1 {
		t.Fatalf("n = %d", n)
	}
}

func TestJitterStaysInBand(t *testing.T) {
	for range 1000 {
		d := jitter(time.Second, 0.2)
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jitter out of band: %v", d)
		}
	}
}
