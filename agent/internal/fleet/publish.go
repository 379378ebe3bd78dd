package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/retry"
)

// SessionName names the Consul sessions that hold fleet records.
const SessionName = "codelab-fleet"

// DefaultInterval is how often a running publisher republishes when nothing
// changed.
const DefaultInterval = 30 * time.Second

// Publisher publishes the boot's state to Consul: at once, after every
// change (Changed) and every Interval. Consul being down never blocks the
// boot: Run retries in the background with capped backoff, always with the
// newest state.
//
// The record is held by a session tied to the node's serfHealth check with
// the release behaviour: when Consul declares the node failed, the session
// ends and the record stays, released, for readers to mark unreachable. The
// session has no TTL, so the record outlives the boot process for as long
// as the node is alive.
type Publisher struct {
	Client *api.Client
	// State returns the boot's current state.
	State func() boot.State
	// LastBackup returns when the newest verified backup was taken; nil
	// (field or result) when there is none.
	LastBackup func() *time.Time
	Log        *slog.Logger
	Interval   time.Duration // default DefaultInterval
	Now        func() time.Time
	// Retry paces the attempts after a failure; the zero value means 500ms
	// doubling to 5s.
	Retry retry.Policy

	once    sync.Once
	changed chan struct{}

	mu        sync.Mutex // serialises publishes
	node, env string
	session   string
	published int
}

func (p *Publisher) init() {
	p.once.Do(func() { p.changed = make(chan struct{}, 1) })
}

// Changed tells the publisher the state changed. It never blocks.
func (p *Publisher) Changed() {
	p.init()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	p.init()
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	pol := p.Retry
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 500*time.Millisecond, 5*time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := retry.Do(ctx, pol, func(ctx context.Context) error {
			err := p.Publish(ctx)
			if err != nil && ctx.Err() == nil {
				p.logger().Debug("fleet record not published yet", slog.String("err", err.Error()))
			}
			return err
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.logger().Warn("fleet record not published", slog.String("err", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		case <-tick.C:
		}
	}
}

func (p *Publisher) logger() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now().UTC()
}

// Publish writes the current state's record once.
func (p *Publisher) Publish(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	if p.node == "" {
		node, env, err := localNode(p.Client)
		if err != nil {
			return err
		}
		p.node, p.env = node, env
	}
	var backup *time.Time
	if p.LastBackup != nil {
		backup = p.LastBackup()
	}
	rec := FromState(p.State(), p.env, p.node, backup, p.now())
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode fleet record: %w", err)
	}
	key := Key(p.env, p.node)
	if err := p.acquire(ctx, key, b); err != nil {
		return fmt.Errorf("publish fleet record %s: %w", key, err)
	}
	p.published++
	if p.published == 1 {
		p.logger().Info("fleet record published", slog.String("key", key), slog.String("state", rec.State), slog.Duration("took", time.Since(start)))
	}
	return nil
}

// ErrHeld is returned when another node's session holds the key (two
// droplets with one node name).
var ErrHeld = errors.New("the key is held by another node's session")

func (p *Publisher) acquire(ctx context.Context, key string, value []byte) error {
	kv := p.Client.KV()
	for attempt := 0; attempt < 3; attempt++ {
		if p.session == "" {
			id, _, err := p.Client.Session().Create(&api.SessionEntry{
				Name:       SessionName,
				Node:       p.node,
				NodeChecks: []string{"serfHealth"},
				Behavior:   api.SessionBehaviorRelease,
				// The default lock delay (15s) would keep a rebooted node
				// from taking its own key back at once.
				LockDelay: time.Millisecond,
			}, (&api.WriteOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("create session: %w", err)
			}
			p.session = id
		}
		ok, _, err := kv.Acquire(&api.KVPair{Key: key, Value: value, Session: p.session}, (&api.WriteOptions{}).WithContext(ctx))
		if err == nil && ok {
			return nil
		}
		// Either our session is gone (Consul declared the node failed for a
		// moment, or its data was reset) or another session holds the key.
		alive, serr := p.sessionAlive(ctx, p.session)
		if serr != nil {
			return serr
		}
		if !alive {
			p.session = ""
			continue
		}
		if err != nil {
			return fmt.Errorf("acquire: %w", err)
		}
		pair, _, gerr := kv.Get(key, (&api.QueryOptions{}).WithContext(ctx))
		if gerr != nil {
			return fmt.Errorf("read: %w", gerr)
		}
		if pair == nil || pair.Session == "" {
			continue
		}
		other, _, ierr := p.Client.Session().Info(pair.Session, (&api.QueryOptions{}).WithContext(ctx))
		if ierr != nil {
			return fmt.Errorf("read the holding session: %w", ierr)
		}
		if other != nil && other.Node != p.node {
			return fmt.Errorf("%w (%s)", ErrHeld, other.Node)
		}
		// An earlier boot of this node still holds it: end that session.
		if _, err := p.Client.Session().Destroy(pair.Session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("end the earlier boot's session: %w", err)
		}
	}
	return errors.New("could not acquire the key after 3 tries")
}

func (p *Publisher) sessionAlive(ctx context.Context, id string) (bool, error) {
	s, _, err := p.Client.Session().Info(id, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("read session: %w", err)
	}
	return s != nil, nil
}

// localNode asks the local agent for its node name and env node meta (the
// agent renders node_meta { env = ... } into every droplet's Consul config).
func localNode(c *api.Client) (node, env string, err error) {
	self, err := c.Agent().Self()
	if err != nil {
		return "", "", fmt.Errorf("ask the local Consul agent who it is: %w", err)
	}
	node, _ = self["Config"]["NodeName"].(string)
	env, _ = self["Meta"]["env"].(string)
	if node == "" {
		return "", "", errors.New("the local Consul agent reports no node name")
	}
	if env == "" {
		return "", "", fmt.Errorf("Consul node %s has no env node meta", node)
	}
	return node, env, nil
}
