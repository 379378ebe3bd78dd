// Package retry is the agent's one retry loop: capped exponential backoff
// with jitter, bounded by a context and an attempt count, on an injectable
// clock so tests do not sleep.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy says how often and how long to retry.
type Policy struct {
	Initial  time.Duration // first wait; default 250ms
	Max      time.Duration // cap on one wait; default 10s
	Attempts int           // total tries, 0 means until ctx ends
	Jitter   float64       // 0..1, share of each wait that is randomised; default 0.2

	// Sleep waits for d or until ctx ends. Tests replace it; nil means a
	// real timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: Do returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls fn until it succeeds, returns a Permanent error, the attempts are
// used up or ctx ends. The error returned is fn's last one, wrapped with the
// number of attempts when they ran out.
func Do(ctx context.Context, p Policy, fn func(ctx context.Context) error) error {
	p = p.withDefaults()
	wait := p.Initial
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if p.Attempts > 0 && attempt >= p.Attempts {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		if serr := p.Sleep(ctx, jitter(wait, p.Jitter)); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
		wait = min(wait*2, p.Max)
	}
}

func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = 250 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 10 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		p.Jitter = 0.2
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return p
}

func jitter(d time.Duration, share float64) time.Duration {
	if share == 0 {
		return d
	}
	spread := float64(d) * share
	return time.Duration(float64(d) - spread + rand.Float64()*2*spread)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
