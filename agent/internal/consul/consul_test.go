package consul

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMissingSaysWhat(t *testing.T) {
	for _, tc := range []struct {
		h    Health
		want string
	}{
		{Health{Error: "consul agent at 127.0.0.1:8500 not answering: refused"}, "not answering"},
		{Health{Reachable: true, Server: true, BootstrapWant: 3, Servers: []string{"a"}, Members: 1}, "bootstrap not yet met: 3 servers expected"},
		{Health{Reachable: true, Members: 1}, "no other Consul members reachable (join=10.0.0.2)"},
		{Health{Reachable: true, Members: 3}, "no servers reachable"},
		{Health{Reachable: true, Leader: "x"}, ""},
	} {
		got := tc.h.Missing("10.0.0.2")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Missing(%+v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// fakeAgent answers the three endpoints Check reads.
func fakeAgent(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/self", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"Config":{"NodeName":"api-1","Datacenter":"ams3","Server":false},"DebugConfig":{"BootstrapExpect":0}}`))
	})
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`"10.0.0.2:8300"`))
	})
	mux.HandleFunc("GET /v1/agent/members", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[
 {"Name":"api-1","Addr":"10.0.0.5","Port":8301,"Status":1,"Tags":{"role":"node"}},
 {"Name":"neo4j-1","Addr":"10.0.0.2","Port":8301,"Status":1,"Tags":{"role":"consul"}},
 {"Name":"v6","Addr":"fd00::3","Port":8301,"Status":1,"Tags":{"role":"consul"}},
 {"Name":"gone","Addr":"10.0.0.9","Port":8301,"Status":3,"Tags":{"role":"consul"}}]`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestCheckReadsSelfLeaderMembers(t *testing.T) {
	h := New(fakeAgent(t).URL).Check(context.Background())
	if !h.Reachable || h.Error != "" || h.Node != "api-1" || h.Server || !h.Member || h.Leader != "10.0.0.2:8300" || h.Members != 3 {
		t.Fatalf("health = %+v", h)
	}
	if want := []string{"10.0.0.2:8301", "[fd00::3]:8301"}; strings.Join(h.Servers, " ") != strings.Join(want, " ") {
		t.Errorf("servers = %v, want %v (alive servers only, addresses joined with their port)", h.Servers, want)
	}
	if m := h.Missing(""); m != "" {
		t.Errorf("Missing = %q", m)
	}
}

func TestCheckSaysWhoIsNotAnswering(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	h := New(addr).Check(context.Background())
	if h.Reachable || !strings.Contains(h.Error, "consul agent at "+addr+" not answering") {
		t.Fatalf("health = %+v", h)
	}
}

// TestContextReachesEveryCall: agent/self takes no QueryOptions in
// consul/api, yet a cancelled context still ends the request.
func TestContextReachesEveryCall(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := New(srv.URL).Self(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Self with a cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestKVIndexBlocksOnTheIndex(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	mux := http.NewServeMux() // any other path answers 404 without an index
	mux.HandleFunc("GET /v1/kv/codelab/prod/neo4j", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Query().Get("index")+"/"+r.URL.Query().Get("wait"))
		mu.Unlock()
		w.Header().Set("X-Consul-Index", "42")
		w.WriteHeader(http.StatusNotFound) // an empty folder is not an error
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := New(srv.URL)
	for _, tc := range []struct {
		index uint64
		want  string
	}{{0, "/"}, {41, "41/60000ms"}} {
		mu.Lock()
		got = nil
		mu.Unlock()
		idx, err := c.KVIndex(context.Background(), "/codelab/prod/neo4j/", tc.index, time.Minute)
		if err != nil || idx != 42 {
			t.Fatalf("KVIndex(%d) = %d, %v", tc.index, idx, err)
		}
		mu.Lock()
		sent := got
		mu.Unlock()
		if len(sent) != 1 || sent[0] != tc.want {
			t.Errorf("KVIndex(%d) sent index/wait %v, want %s", tc.index, sent, tc.want)
		}
	}
}
