package consul_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/agent/internal/consul/consultest"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/tools/testenv"
)

// TestAgainstRealConsul: a dev agent's health, and a blocking KV query that
// answers when a key under the folder changes.
func TestAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	c := consultest.Start(t, "-dev", "-node", "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}, func(ctx context.Context) error {
		if m := c.Check(ctx).Missing(""); m != "" {
			return errors.New(m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h := c.Check(ctx)
	if h.Node != "dev" || !h.Server || !h.Member || h.Members != 1 || len(h.Servers) != 1 {
		t.Fatalf("health = %+v", h)
	}

	idx, err := c.KVIndex(ctx, "codelab/test/neo4j", 0, 0)
	if err != nil || idx == 0 {
		t.Fatalf("KVIndex of an empty folder = %d, %v", idx, err)
	}
	type answer struct {
		idx uint64
		err error
	}
	done := make(chan answer, 1)
	go func() {
		i, err := c.KVIndex(ctx, "codelab/test/neo4j", idx, time.Minute)
		done <- answer{i, err}
	}()
	kv, err := api.NewClient(&api.Config{Address: c.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.KV().Put(&api.KVPair{Key: "codelab/test/neo4j/NEO4J_X", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.err != nil || a.idx <= idx {
			t.Fatalf("blocking KVIndex after a put = %d, %v; want > %d", a.idx, a.err, idx)
		}
	case <-ctx.Done():
		t.Fatal("the blocking query did not answer the put")
	}
}
