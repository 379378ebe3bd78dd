package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// as the node is alive. Every publisher of a node (each boot, each tick of
// codelab-fleet.timer) adopts the node's live session instead of making
// its own, so the record stays held from one to the next.
type Publisher struct {
	Client *api.Client
	// State returns the boot's current state.
	State func() boot.State
	// LastBackup returns when the newest verified backup was taken; nil
	// (field or result) when there is none.
	LastBackup func() *time.Time
	// Overall, when set, replaces the record's state and summary with the
	// droplet's overall state (ready, degraded, failed or booting) as
	// `codelab-agent status` computes it from the state file and its live
	// checks. The boot's own publisher leaves it nil: while it runs, the
	// boot's result is the state.
	Overall  func() (state, summary string)
	Log      *slog.Logger
	Interval time.Duration // default DefaultInterval
	Now      func() time.Time
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
	rec, err := p.record()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := p.put(ctx, rec); err != nil {
		return err
	}
	p.published++
	if p.published == 1 {
		p.logger().Info("fleet record published", slog.String("key", rec.Key()), slog.String("state", rec.State), slog.Duration("took", time.Since(start)))
	}
	return nil
}

// PublishIfChanged is one tick of a periodic publisher (codelab-agent fleet
// publish, run by codelab-fleet.timer): it publishes the current record
// unless the one in Consul says the same, is held by a session, and was
// published less than maxAge ago. It reports whether it published.
func (p *Publisher) PublishIfChanged(ctx context.Context, maxAge time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec, err := p.record()
	if err != nil {
		return false, err
	}
	pair, _, err := p.Client.KV().Get(rec.Key(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("read fleet record %s: %w", rec.Key(), err)
	}
	why := "no record held"
	if pair != nil && pair.Session != "" {
		switch old, err := Decode(pair.Value); {
		case err != nil:
			why = "the published record does not parse"
		case !Same(old, rec) && old.State != rec.State:
			why = "state " + old.State + " -> " + rec.State
		case !Same(old, rec):
			why = "changed"
		case rec.PublishedAt.Sub(old.PublishedAt) < maxAge:
			return false, nil
		default:
			why = "refresh"
		}
	}
	if err := p.put(ctx, rec); err != nil {
		return false, err
	}
	// A refresh is routine (every maxAge); a change is news.
	level := slog.LevelInfo
	if why == "refresh" || why == "changed" {
		level = slog.LevelDebug
	}
	p.logger().Log(ctx, level, "fleet record published", slog.String("key", rec.Key()), slog.String("state", rec.State), slog.String("why", why))
	return true, nil
}

// Same reports whether two records say the same, whenever they were
// published. A boot in progress counts its duration up, which is no
// change.
func Same(a, b Record) bool {
	a.PublishedAt, b.PublishedAt = time.Time{}, time.Time{}
	if a.State == Booting && b.State == Booting {
		a.BootMS, b.BootMS = 0, 0
	}
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// record makes the record of the current state; it asks the local agent
// who it is the first time.
func (p *Publisher) record() (Record, error) {
	if p.node == "" {
		node, env, err := localNode(p.Client)
		if err != nil {
			return Record{}, err
		}
		p.node, p.env = node, env
	}
	var backup *time.Time
	if p.LastBackup != nil {
		backup = p.LastBackup()
	}
	rec := FromState(p.State(), p.env, p.node, backup, p.now())
	if p.Overall != nil {
		rec.State, rec.Summary = p.Overall()
	}
	return rec, nil
}

func (p *Publisher) put(ctx context.Context, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode fleet record: %w", err)
	}
	key := rec.Key()
	if err := p.acquire(ctx, key, b); err != nil {
		return fmt.Errorf("publish fleet record %s: %w", key, err)
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
			id, err := p.nodeSession(ctx, key)
			if err != nil {
				return err
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
		// Another session of this node holds it (one made by an agent that
		// did not adopt sessions): end it, so this node has one again.
		if _, err := p.Client.Session().Destroy(pair.Session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("end the node's other session: %w", err)
		}
	}
	return errors.New("could not acquire the key after 3 tries")
}

// nodeSession returns the session to hold key with: the node's live fleet
// session when it has one (preferring the one that holds key), else a new
// one. Adopting it, instead of making a session per process, lets every
// publisher of the node (each boot, each tick of codelab-fleet.timer)
// share one session: the record stays held from one publisher to the
// next, and Consul keeps one session per node, not one per tick.
func (p *Publisher) nodeSession(ctx context.Context, key string) (string, error) {
	sessions, _, err := p.Client.Session().Node(p.node, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("list the node's sessions: %w", err)
	}
	var mine []string
	for _, s := range sessions {
		if s.Name == SessionName && s.Behavior == api.SessionBehaviorRelease && slices.Contains(s.NodeChecks, "serfHealth") {
			mine = append(mine, s.ID)
		}
	}
	if len(mine) > 0 {
		pair, _, err := p.Client.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		if pair != nil && slices.Contains(mine, pair.Session) {
			return pair.Session, nil
		}
		return mine[0], nil
	}
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
		return "", fmt.Errorf("create session: %w", err)
	}
	return id, nil
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
