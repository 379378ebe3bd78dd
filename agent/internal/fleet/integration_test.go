package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/cli"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fleet"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/status"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/tools/testenv"
)

// consulAgent is a real Consul dev agent on free loopback ports.
type consulAgent struct {
	Addr   string
	Client *api.Client
}

func freePort(t testing.TB) string { return strconv.Itoa(testenv.FreePort(t, "127.0.0.1")) }

// startConsul runs `consul agent -dev` with its HTTP API on httpPort.
func startConsul(t testing.TB, httpPort string, args ...string) consulAgent {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", httpPort, "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", freePort(t), "-serf-wan-port", freePort(t), "-server-port", freePort(t),
		"-data-dir", dir, "-log-level", "warn"}, args...)
	cmd := exec.Command("consul", args...)
	logf, err := os.Create(filepath.Join(dir, "consul.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cfg := api.DefaultConfig()
	cfg.Address = "127.0.0.1:" + httpPort
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := consulAgent{Addr: cfg.Address, Client: c}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}, func(context.Context) error {
		leader, err := c.Status().Leader()
		if err == nil && leader == "" {
			err = fmt.Errorf("no leader yet")
		}
		return err
	})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "consul.log"))
		t.Fatalf("consul dev agent on %s: %v\n%s", cfg.Address, err, b)
	}
	return a
}

// registerNode puts a synthetic node into the catalog with a serfHealth
// check in the given status (and a passing service check).
func registerNode(t testing.TB, c *api.Client, node, serf string) {
	t.Helper()
	_, err := c.Catalog().Register(&api.CatalogRegistration{
		Node: node, Address: "10.0.0.1", NodeMeta: map[string]string{"env": "bench"},
		Checks: api.HealthChecks{
			{Node: node, CheckID: "serfHealth", Name: "Serf Health Status", Status: serf},
			{Node: node, CheckID: "web-http", Name: "web HTTP /healthz", Status: api.HealthPassing},
		},
	}, nil)
	if err != nil {
		t.Fatalf("register %s: %v", node, err)
	}
}

// holdRecord writes r under its key, held by a new session of its node.
func holdRecord(t testing.TB, c *api.Client, r fleet.Record) string {
	t.Helper()
	id, _, err := c.Session().Create(&api.SessionEntry{Name: fleet.SessionName, Node: r.Node, NodeChecks: []string{"serfHealth"},
		Behavior: api.SessionBehaviorRelease, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("session for %s: %v", r.Node, err)
	}
	b, _ := json.Marshal(r)
	ok, _, err := c.KV().Acquire(&api.KVPair{Key: r.Key(), Value: b, Session: id}, nil)
	if err != nil || !ok {
		t.Fatalf("acquire %s: %v %v", r.Key(), ok, err)
	}
	return id
}

func record(node, env, state string) fleet.Record {
	return fleet.Record{SchemaVersion: fleet.SchemaVersion, Node: node, Env: env, Role: "web", State: state,
		Image: "codelab-services-base-2026-11-27-0900", AgentVersion: "1.0.0 (bench)", Summary: "ready in 30s",
		BootStart: time.Now().Add(-time.Hour).UTC(), BootMS: 30000, PublishedAt: time.Now().UTC()}
}

func view(t *testing.T, c *api.Client, env string) fleet.View {
	t.Helper()
	s, err := fleet.Read(context.Background(), c, env)
	if err != nil {
		t.Fatal(err)
	}
	return fleet.Build(s, nil, fleet.Filter{Env: env}, time.Now().UTC())
}

func stateOf(v fleet.View, node string) string {
	for _, d := range v.Droplets {
		if d.Node == node {
			return d.State
		}
	}
	return "absent"
}

// waitFor re-reads the view until cond holds (Consul applies session
// invalidation asynchronously).
func waitFor(t *testing.T, c *api.Client, env string, cond func(fleet.View) bool) fleet.View {
	t.Helper()
	var v fleet.View
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := retry.Do(ctx, retry.Policy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}, func(context.Context) error {
		v = view(t, c, env)
		if !cond(v) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err != nil {
		b, _ := json.MarshalIndent(v, "", "  ")
		t.Fatalf("condition not met: %v\n%s", err, b)
	}
	return v
}

// The publisher is started before Consul answers (the boot's first
// seconds), keeps retrying in the background, publishes once Consul is
// up, and republishes on every change; a second boot of the same node
// adopts the first boot's session.
func TestPublisherAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	port := freePort(t)
	cfg := api.DefaultConfig()
	cfg.Address = "127.0.0.1:" + port
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	st := boot.State{SchemaVersion: boot.SchemaVersion, Role: "api", DropletID: "7", Image: "codelab-services-base-2026-11-27-0900",
		AgentVersion: "test", Result: boot.BootRunning, Status: "units", StartedAt: time.Now().UTC()}
	state := func() boot.State { mu.Lock(); defer mu.Unlock(); return st }
	pub := &fleet.Publisher{Client: c, State: state, Interval: time.Hour,
		Retry: retry.Policy{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	time.Sleep(500 * time.Millisecond) // Consul is not there yet: the publisher retries
	agent := startConsul(t, port, "-node", "api-1", "-node-meta", "env:it")
	v := waitFor(t, agent.Client, "it", func(v fleet.View) bool { return stateOf(v, "api-1") == fleet.Booting })
	if d := v.Droplets[0]; d.Role != "api" || d.DropletID != "7" || !d.Held || d.Env != "it" {
		t.Fatalf("published: %+v", d)
	}

	mu.Lock()
	st.Result, st.Status = boot.BootReady, "ready in 12s"
	mu.Unlock()
	pub.Changed()
	waitFor(t, agent.Client, "it", func(v fleet.View) bool { return stateOf(v, "api-1") == fleet.Ready })

	// The next boot of the node (a new process) adopts the node's live
	// session: the record stays held, by the same session.
	before, _, err := agent.Client.KV().Get(fleet.Key("it", "api-1"), nil)
	if err != nil || before == nil || before.Session == "" {
		t.Fatalf("record: %+v %v", before, err)
	}
	next := &fleet.Publisher{Client: c, State: func() boot.State {
		s := state()
		s.Result, s.Status = boot.BootFailed, "failed: x"
		s.Steps = []boot.StepState{{Name: "compose-up", Result: boot.Failed, Error: "unhealthy"}}
		return s
	}}
	if err := next.Publish(context.Background()); err != nil {
		t.Fatalf("second boot: %v", err)
	}
	v = view(t, agent.Client, "it")
	if stateOf(v, "api-1") != fleet.Failed || v.Droplets[0].FailedStep != "compose-up" {
		t.Fatalf("after the second boot: %+v", v.Droplets)
	}
	if s := nodeSessions(t, agent.Client, "api-1"); len(s) != 1 || s[0] != before.Session {
		t.Fatalf("sessions after the second boot %v, want only the adopted %s", s, before.Session)
	}

	// Our session ends (Consul lost the node for a moment): the next
	// publish makes a new one and takes the key again.
	pair, _, err := agent.Client.KV().Get(fleet.Key("it", "api-1"), nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("record: %+v %v", pair, err)
	}
	if _, err := agent.Client.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	if err := next.Publish(context.Background()); err != nil {
		t.Fatalf("publish after the session ended: %v", err)
	}
	p, _, _ := agent.Client.KV().Get(fleet.Key("it", "api-1"), nil)
	if p == nil || p.Session == "" || p.Session == pair.Session {
		t.Fatalf("record not held by a new session: %+v", p)
	}

	// Another node's session holding this node's key (two droplets with
	// one name) is reported, never taken over.
	if _, err := agent.Client.Session().Destroy(p.Session, nil); err != nil {
		t.Fatal(err)
	}
	registerNode(t, agent.Client, "other-1", api.HealthPassing)
	clash := record("api-1", "it", fleet.Ready)
	clash.Node = "other-1"
	id, _, err := agent.Client.Session().Create(&api.SessionEntry{Node: "other-1", NodeChecks: []string{"serfHealth"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(clash)
	if ok, _, err := agent.Client.KV().Acquire(&api.KVPair{Key: fleet.Key("it", "api-1"), Value: b, Session: id}, nil); !ok || err != nil {
		t.Fatalf("acquire for other-1: %v %v", ok, err)
	}
	if err := next.Publish(context.Background()); !errors.Is(err, fleet.ErrHeld) {
		t.Fatalf("publish over another node's session: %v", err)
	}
}

// A node Consul declares failed loses its session: its record stays,
// released, and reads unreachable; a record that does not parse, or that
// has a newer schemaVersion, reads unknown with its node name.
func TestReadAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	agent := startConsul(t, freePort(t), "-node", "reader-1", "-node-meta", "env:it")
	c := agent.Client
	for _, n := range []string{"web-1", "landing-1"} {
		registerNode(t, c, n, api.HealthPassing)
		holdRecord(t, c, record(n, "it", fleet.Ready))
	}
	if _, err := c.KV().Put(&api.KVPair{Key: fleet.Key("it", "broken-1"), Value: []byte("{")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(&api.KVPair{Key: fleet.Key("it", "future-1"), Value: []byte(`{"schemaVersion":2,"state":"ready"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	v := view(t, c, "it")
	for node, want := range map[string]string{"web-1": fleet.Ready, "landing-1": fleet.Ready, "broken-1": fleet.Unknown, "future-1": fleet.Unknown} {
		if got := stateOf(v, node); got != want {
			t.Errorf("%s: %s, want %s", node, got, want)
		}
	}
	// web's service check fails: degraded.
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "web-1", Address: "10.0.0.1", SkipNodeUpdate: true,
		Check: &api.AgentCheck{Node: "web-1", CheckID: "web-http", Name: "web HTTP /healthz", Status: api.HealthCritical}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	registerNode(t, c, "landing-1", api.HealthCritical)
	v = waitFor(t, c, "it", func(v fleet.View) bool {
		return stateOf(v, "web-1") == fleet.Degraded && stateOf(v, "landing-1") == fleet.Unreachable
	})
	// serfHealth critical ends the session: the record is released, not
	// deleted.
	v = waitFor(t, c, "it", func(v fleet.View) bool {
		for _, d := range v.Droplets {
			if d.Node == "landing-1" {
				return !d.Held
			}
		}
		return false
	})
	if v.Overall != fleet.Unreachable && v.Overall != fleet.Failed {
		t.Errorf("overall = %s", v.Overall)
	}
}

// Watch redraws when a record changes, from a blocking query.
func TestWatchAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	agent := startConsul(t, freePort(t), "-node", "watch-1", "-node-meta", "env:it")
	c := agent.Client
	registerNode(t, c, "web-1", api.HealthPassing)
	holdRecord(t, c, record("web-1", "it", fleet.Booting))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drawn := make(chan fleet.View, 10)
	errc := make(chan error, 1)
	go func() {
		errc <- fleet.Watch(ctx, c, fleet.WatchOptions{Env: "it",
			Render: func(_ context.Context, s fleet.Snapshot) ([]byte, error) {
				v := fleet.Build(s, nil, fleet.Filter{Env: "it"}, time.Time{})
				b, err := json.Marshal(v)
				return b, err
			},
			Show: func(b []byte) error {
				var v fleet.View
				if err := json.Unmarshal(b, &v); err != nil {
					return err
				}
				drawn <- v
				return nil
			},
		})
	}()
	next := func() fleet.View {
		t.Helper()
		select {
		case v := <-drawn:
			return v
		case <-time.After(10 * time.Second):
			t.Fatal("no redraw within 10s")
			return fleet.View{}
		}
	}
	if v := next(); stateOf(v, "web-1") != fleet.Booting {
		t.Fatalf("first drawing: %+v", v.Droplets)
	}
	b, _ := json.Marshal(record("web-1", "it", fleet.Ready))
	if _, err := c.KV().Put(&api.KVPair{Key: fleet.Key("it", "web-1"), Value: b}, nil); err != nil {
		t.Fatal(err)
	}
	for {
		if v := next(); stateOf(v, "web-1") == fleet.Ready {
			break
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
}

// fakeDO serves the DigitalOcean snapshot list and the metadata service
// (user_data with a do_token) for the CLI.
func fakeDO(t testing.TB, images int) (apiURL, metaURL string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/images", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer read-only" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var list []map[string]any
		for i := range images {
			ts := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 24 * time.Hour)
			list = append(list, map[string]any{"id": i + 1, "name": "codelab-services-base-" + ts.Format("2006-01-02-1504"),
				"created_at": ts.Add(time.Minute).Format(time.RFC3339), "type": "snapshot"})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"images": list, "links": map[string]any{}, "meta": map[string]any{"total": len(list)}})
	})
	mux.HandleFunc("/metadata/v1.json", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"droplet_id": 1, "hostname": "web-0", "region": "nyc3",
			"user_data": "#codelab v1 role=web consul=client join=10.0.0.2 gossip=" + strings.Repeat("A", 43) + "= do_token=read-only " + testenv.ClientTLS})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/", srv.URL + "/metadata/v1.json"
}

// fleetCLI runs `codelab-agent status --fleet ARGS` in process.
func fleetCLI(t testing.TB, addr string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), append([]string{"status", "--fleet", "--consul-addr", addr}, args...),
		cli.IO{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
	return out.String(), errb.String(), code
}

// The command end to end: --json with the newest snapshot from the
// (fake) DigitalOcean API through the droplet's do_token, and the exit
// code of the worst state.
func TestFleetCommandAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	agent := startConsul(t, freePort(t), "-node", "cmd-1", "-node-meta", "env:it")
	doURL, meta := fakeDO(t, 30)
	t.Setenv("CODELAB_METADATA_URL", meta)
	for i, st := range []string{fleet.Ready, fleet.Ready, fleet.Booting} {
		n := fmt.Sprintf("web-%d", i)
		registerNode(t, agent.Client, n, "passing")
		holdRecord(t, agent.Client, record(n, "it", st))
	}
	out, stderr, code := fleetCLI(t, agent.Addr, "--json", "--do-api-url", doURL)
	var v fleet.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json: %v\n%s%s", err, out, stderr)
	}
	if code != 3 || v.Overall != fleet.Booting || v.SchemaVersion != fleet.SchemaVersion || len(v.Droplets) != 3 {
		t.Fatalf("exit %d, view %+v\n%s", code, v, stderr)
	}
	if v.ImagesFrom != fleet.FromDigitalOcean || !v.Droplets[0].StaleImage || v.Droplets[0].NewestImage != "codelab-services-base-2026-11-30-0000" {
		t.Fatalf("stale image from the API: from %s %q, %+v", v.ImagesFrom, v.ImagesError, v.Droplets[0])
	}
	out, _, code = fleetCLI(t, agent.Addr, "--role", "web", "--env", "it", "--do-api-url", doURL)
	if code != 3 || !strings.Contains(out, "(stale image)") || !strings.Contains(out, "it/web-2") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
}

// BenchmarkFleetStatus100 measures `codelab-agent status --fleet` (the
// whole command, in process: Consul reads, the DigitalOcean snapshot list
// through the metadata's do_token, building and printing the table) over
// 100 synthetic droplets in a real Consul. Target: under 1 s.
func BenchmarkFleetStatus100(b *testing.B) {
	testenv.Integration(b, "consul")
	agent := startConsul(b, freePort(b), "-node", "bench-0", "-node-meta", "env:bench")
	doURL, meta := fakeDO(b, 30)
	b.Setenv("CODELAB_METADATA_URL", meta)
	for i := range 100 {
		n := fmt.Sprintf("node-%03d", i)
		registerNode(b, agent.Client, n, "passing")
		holdRecord(b, agent.Client, record(n, "bench", fleet.Ready))
	}
	var out string
	var code int
	b.ResetTimer()
	for b.Loop() {
		out, _, code = fleetCLI(b, agent.Addr, "--do-api-url", doURL)
	}
	b.StopTimer()
	if lines := strings.Count(out, "\n"); code != 0 || lines < 101 {
		b.Fatalf("exit %d, %d lines:\n%s", code, lines, out)
	}
}

// publishTick runs one `codelab-agent fleet publish` (what
// codelab-fleet.timer runs) in process, with faked systemd and Docker
// probes and the real Consul.
func publishTick(t *testing.T, root, addr string, maxAge time.Duration, ctrs *[]containers.Container) string {
	t.Helper()
	var errb bytes.Buffer
	o := &cli.FleetPublishOptions{ConsulAddr: addr, MaxAge: maxAge, Timeout: 5 * time.Second, CheckTimeout: 2 * time.Second,
		Probes: status.Probes{
			Units: func(_ context.Context, names []string) ([]units.State, error) {
				var out []units.State
				for _, n := range names {
					out = append(out, units.State{Unit: n, ActiveState: "active", SubState: "running"})
				}
				return out, nil
			},
			Containers: func(context.Context, string) ([]containers.Container, error) { return *ctrs, nil },
			BootID:     func() string { return "" },
		}}
	if err := cli.RunFleetPublish(context.Background(), &cli.Global{Root: root, LogLevel: slog.LevelDebug}, o, cli.IO{Out: io.Discard, ErrOut: &errb}); err != nil {
		t.Fatalf("fleet publish: %v\n%s", err, errb.String())
	}
	return errb.String()
}

// nodeSessions lists the node's sessions.
func nodeSessions(t *testing.T, c *api.Client, node string) []string {
	t.Helper()
	ss, _, err := c.Session().Node(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	return ids
}

// `fleet publish` after the boot: it publishes the droplet's overall state
// as status computes it (a stopped container reads degraded from the
// record itself), publishes only on a change or once the record has aged,
// holds the record with the node's one session (adopted, never made anew
// or destroyed per tick), and stays out of the way while a boot holds the
// boot lock.
func TestFleetPublishTick(t *testing.T) {
	testenv.Integration(t, "consul")
	agent := startConsul(t, freePort(t), "-node", "web-1", "-node-meta", "env:it")
	root := t.TempDir()
	rec := boot.NewRecorder(fsutil.Root{Dir: root}, boot.State{Role: "web", DropletID: "9", Image: "codelab-web-base-2026-11-27-0900",
		AgentVersion: "test", StartedAt: time.Now().UTC()})
	rec.Finish(nil)
	healthy := []containers.Container{{Name: "web-web-1", Service: "web", State: "running", Health: "healthy"}}
	ctrs := healthy
	key := fleet.Key("it", "web-1")
	get := func() (*api.KVPair, fleet.Record) {
		t.Helper()
		p, _, err := agent.Client.KV().Get(key, nil)
		if err != nil || p == nil {
			t.Fatalf("record %s: %v %v", key, p, err)
		}
		r, err := fleet.Decode(p.Value)
		if err != nil {
			t.Fatal(err)
		}
		return p, r
	}

	log := publishTick(t, root, agent.Addr, time.Hour, &ctrs)
	p1, r1 := get()
	if r1.State != fleet.Ready || r1.Role != "web" || p1.Session == "" || !strings.Contains(log, "fleet record published") {
		t.Fatalf("first tick: %+v held by %q\n%s", r1, p1.Session, log)
	}

	// Nothing changed, the record is young: no write.
	publishTick(t, root, agent.Addr, time.Hour, &ctrs)
	if p, _ := get(); p.ModifyIndex != p1.ModifyIndex {
		t.Fatalf("an unchanged, young record was written again (index %d -> %d)", p1.ModifyIndex, p.ModifyIndex)
	}

	// The role's container stops: the record says degraded, held by the
	// same session.
	ctrs = []containers.Container{{Name: "web-web-1", Service: "web", State: "exited"}}
	log = publishTick(t, root, agent.Addr, time.Hour, &ctrs)
	p2, r2 := get()
	if r2.State != fleet.Degraded || !strings.Contains(r2.Summary, "web-web-1") || p2.Session != p1.Session {
		t.Fatalf("after the container stopped: %+v held by %q (was %q)\n%s", r2, p2.Session, p1.Session, log)
	}
	if !strings.Contains(log, "state ready -> degraded") {
		t.Errorf("the state change is not logged:\n%s", log)
	}
	v := view(t, agent.Client, "it")
	if d := v.Droplets[0]; d.State != fleet.Degraded || !strings.Contains(d.Summary, "web-web-1") {
		t.Fatalf("fleet view: %+v", d)
	}

	// Unchanged but aged: published again, with a newer publishedAt.
	time.Sleep(10 * time.Millisecond)
	publishTick(t, root, agent.Addr, time.Millisecond, &ctrs)
	p3, r3 := get()
	if !r3.PublishedAt.After(r2.PublishedAt) || p3.Session != p1.Session {
		t.Fatalf("aged record not refreshed: %s -> %s, session %q", r2.PublishedAt, r3.PublishedAt, p3.Session)
	}
	if s := nodeSessions(t, agent.Client, "web-1"); len(s) != 1 || s[0] != p1.Session {
		t.Fatalf("node sessions %v, want only %s", s, p1.Session)
	}

	// A boot holds the lock: the tick leaves the record to the boot.
	unlock, err := fsutil.Lock(context.Background(), filepath.Join(root, boot.LockFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctrs = healthy
	publishTick(t, root, agent.Addr, time.Millisecond, &ctrs)
	if p, _ := get(); p.ModifyIndex != p3.ModifyIndex {
		t.Fatal("a tick published while a boot held the boot lock")
	}
	unlock()
	publishTick(t, root, agent.Addr, time.Hour, &ctrs)
	if _, r := get(); r.State != fleet.Ready {
		t.Fatalf("after the boot: %+v", r)
	}

	// The node's session ends (Consul lost the node for a moment): the
	// next tick makes a new one and holds the record again.
	if _, err := agent.Client.Session().Destroy(p1.Session, nil); err != nil {
		t.Fatal(err)
	}
	publishTick(t, root, agent.Addr, time.Hour, &ctrs)
	if p, _ := get(); p.Session == "" || p.Session == p1.Session {
		t.Fatalf("record after the session ended: held by %q", p.Session)
	}
}
