package fleet

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// prefix is the KV folder to read for env ("" for every env).
func prefix(env string) string {
	if env == "" {
		return Prefix
	}
	return Prefix + env + "/"
}

// queryOpts allow a stale read: any server answers, so the view still
// works while the cluster elects a leader.
func queryOpts(ctx context.Context, index uint64, wait time.Duration) *api.QueryOptions {
	return (&api.QueryOptions{AllowStale: true, WaitIndex: index, WaitTime: wait}).WithContext(ctx)
}

func readKV(ctx context.Context, c *api.Client, env string, index uint64, wait time.Duration) (api.KVPairs, uint64, error) {
	pairs, meta, err := c.KV().List(prefix(env), queryOpts(ctx, index, wait))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s from Consul: %w", prefix(env), err)
	}
	return pairs, meta.LastIndex, nil
}

func readHealth(ctx context.Context, c *api.Client, index uint64, wait time.Duration) (api.HealthChecks, uint64, error) {
	checks, meta, err := c.Health().State(api.HealthAny, queryOpts(ctx, index, wait))
	if err != nil {
		return nil, 0, fmt.Errorf("read health checks from Consul: %w", err)
	}
	return checks, meta.LastIndex, nil
}

// Read fetches the records below env's folder (every env when env is "")
// and every node's health checks, both at once.
func Read(ctx context.Context, c *api.Client, env string) (Snapshot, error) {
	var s Snapshot
	errc := make(chan error, 1)
	go func() {
		var err error
		s.Checks, _, err = readHealth(ctx, c, 0, 0)
		errc <- err
	}()
	var kerr error
	s.Pairs, _, kerr = readKV(ctx, c, env, 0, 0)
	herr := <-errc
	// Both fail together when Consul is down: one error says it.
	if kerr != nil {
		return Snapshot{}, kerr
	}
	if herr != nil {
		return Snapshot{}, herr
	}
	return s, nil
}

// WatchOptions configure Watch.
type WatchOptions struct {
	Env string
	// Render turns a snapshot into what to show; Watch calls it first and
	// then after every change Consul reports.
	Render func(ctx context.Context, s Snapshot) ([]byte, error)
	// Show draws what Render returned, when it differs from the last
	// drawing.
	Show func(b []byte) error
	// Wait is the blocking query's longest wait; default 5 minutes.
	Wait time.Duration
	// OnError is told about a failed query before Watch retries it.
	OnError func(error)
	// RetryAfter paces the retries after a failed query; default 2s.
	RetryAfter time.Duration
}

// Watch draws the fleet, then redraws it whenever the records or any
// check change, using Consul blocking queries (no polling), until ctx
// ends.
func Watch(ctx context.Context, c *api.Client, o WatchOptions) error {
	wait := o.Wait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	retryAfter := o.RetryAfter
	if retryAfter <= 0 {
		retryAfter = 2 * time.Second
	}
	type update struct {
		pairs  api.KVPairs
		checks api.HealthChecks
		kv     bool
	}
	updates := make(chan update)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loop := func(kv bool) {
		var index uint64
		for ctx.Err() == nil {
			var u update
			var next uint64
			var err error
			u.kv = kv
			if kv {
				u.pairs, next, err = readKV(ctx, c, o.Env, index, wait)
			} else {
				u.checks, next, err = readHealth(ctx, c, index, wait)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if o.OnError != nil {
					o.OnError(err)
				}
				index = 0
				select {
				case <-ctx.Done():
					return
				case <-time.After(retryAfter):
				}
				continue
			}
			if next == index {
				continue // the wait ran out with nothing new
			}
			// An index that goes backwards (a Consul restore) restarts
			// the blocking query from the start, as Consul advises.
			if next < index {
				next = 0
			}
			index = next
			select {
			case updates <- u:
			case <-ctx.Done():
				return
			}
		}
	}
	go loop(true)
	go loop(false)
	var s Snapshot
	var haveKV, haveHealth bool
	var last []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			if u.kv {
				s.Pairs, haveKV = u.pairs, true
			} else {
				s.Checks, haveHealth = u.checks, true
			}
		}
		if !haveKV || !haveHealth {
			continue
		}
		b, err := o.Render(ctx, s)
		if err != nil {
			return err
		}
		if last != nil && bytes.Equal(b, last) {
			continue
		}
		last = b
		if err := o.Show(b); err != nil {
			return err
		}
	}
}
