// Package suite is the end-to-end suite (`make e2e`, CODELAB_E2E=1): it boots the demo
// cluster on the local DigitalOcean (or reuses the running one) and asserts on it.
package suite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
	"github.com/digitalocean/godo"
)

// repoRoot is two folders above this file.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildTools builds localdo and imager for the suite (CODELAB_E2E_BIN overrides).
func buildTools(t *testing.T, repo string) string {
	if dir := os.Getenv("CODELAB_E2E_BIN"); dir != "" {
		return dir
	}
	dir := filepath.Join(os.TempDir(), "codelab-e2e-bin")
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./e2e/cmd/localdo", "./imager/cmd/imager")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build localdo and imager: %v\n%s", err, out)
	}
	return dir
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestEndToEnd(t *testing.T) {
	if os.Getenv("CODELAB_E2E") != "1" {
		t.Skip("end-to-end suite: set CODELAB_E2E=1 (make e2e does); it boots a cluster on the local DigitalOcean")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	repo := repoRoot(t)
	if r := os.Getenv("CODELAB_E2E_REPO"); r != "" {
		repo = r
	}
	o := cluster.Options{Repo: repo, BinDir: buildTools(t, repo), Instance: "demo", Out: writer{t}}
	c, err := cluster.Up(ctx, o)
	logs := func() {
		if c == nil || len(c.Nodes) == 0 {
			return
		}
		dir, _ := os.MkdirTemp("", "codelab-e2e-logs-")
		if err := c.CollectLogs(context.Background(), dir); err != nil {
			t.Logf("collect logs: %v", err)
		}
		t.Logf("droplet logs kept in %s", dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs()
		}
		for _, tm := range c.Timings {
			t.Logf("timing: %-55s %s", tm.Step, tm.Duration)
		}
		if os.Getenv("CODELAB_E2E_KEEP") != "1" && !t.Failed() {
			if err := cluster.Down(context.Background(), o); err != nil {
				t.Errorf("down: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	node := func(role string) *cluster.Node {
		for _, n := range c.Nodes {
			if n.Role == role {
				return n
			}
		}
		t.Fatalf("no %s droplet", role)
		return nil
	}
	exec := func(n *cluster.Node, args ...string) string {
		t.Helper()
		out, err := c.Docker.Exec(ctx, n.ID, args...)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		return out
	}

	t.Run("api and web boot from their service images with the registry's images baked in", func(t *testing.T) {
		checkServiceImages(ctx, t, c)
	})

	t.Run("every droplet reports ready in status --json", func(t *testing.T) {
		for _, n := range c.Nodes {
			st, err := c.WaitReady(ctx, n, 3*time.Minute, time.Time{})
			if err != nil || st.SchemaVersion < 1 || st.Role != n.Role || st.ExitCode != 0 {
				t.Errorf("%s: %+v %v", n.Name, st, err)
				continue
			}
			t.Logf("%s: boot-to-ready %s", n.Name, time.Duration(st.Boot.DurationMs)*time.Millisecond)
		}
	})

	t.Run("Consul has 3 servers, a leader and every droplet", func(t *testing.T) {
		srv := node("neo4j")
		var raft struct {
			Servers []struct {
				Node   string
				Leader bool
				Voter  bool
			}
		}
		if err := json.Unmarshal([]byte(exec(srv, "curl", "-fsS", "http://127.0.0.1:8500/v1/operator/raft/configuration")), &raft); err != nil {
			t.Fatal(err)
		}
		leaders := 0
		for _, s := range raft.Servers {
			if s.Leader {
				leaders++
			}
		}
		if len(raft.Servers) != 3 || leaders != 1 {
			t.Fatalf("raft configuration: %+v", raft.Servers)
		}
		var members []struct {
			Name   string
			Status int
		}
		if err := json.Unmarshal([]byte(exec(srv, "curl", "-fsS", "http://127.0.0.1:8500/v1/agent/members")), &members); err != nil {
			t.Fatal(err)
		}
		alive := map[string]bool{}
		for _, m := range members {
			alive[m.Name] = m.Status == 1
		}
		for _, n := range c.Nodes {
			if !alive[n.Name] {
				t.Errorf("Consul does not see %s alive: %+v", n.Name, members)
			}
		}
	})

	securitySubtests(t, ctx, c)

	api := node("api")
	apiURL := fmt.Sprintf("http://%s:%d", api.PublicIP, api.Port)
	get := func(path string) (int, string) {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(apiURL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("the api answers through its published port", func(t *testing.T) {
		if code, body := get("/healthz"); code != 200 {
			t.Fatalf("GET %s/healthz: %d %s", apiURL, code, body)
		}
	})

	t.Run("a Consul KV value reaches the api container within seconds", func(t *testing.T) {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		probe := hex.EncodeToString(b)
		prefix := "codelab/" + c.Opts.Env + "/api/"
		for k, v := range map[string]string{"NEO4J_USER": "neo4j", "NEO4J_PASSWORD": "e2e-password", "E2E_PROBE": probe} {
			if err := c.KVPut(ctx, node("neo4j"), prefix+k, v); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		deadline := time.Now().Add(90 * time.Second)
		for {
			_, body := get("/env")
			if strings.Contains(body, probe) {
				t.Logf("KV to api container: %s", time.Since(start).Round(100*time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("E2E_PROBE=%s not in the api's environment after 90s: %s", probe, body)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(500 * time.Millisecond):
			}
		}
	})

	type listed struct {
		Images []struct {
			ID          int    `json:"id"`
			Name        string `json:"name"`
			Family      string `json:"family"`
			Fingerprint string `json:"fingerprint"`
		} `json:"images"`
	}
	listImages := func(t *testing.T) listed {
		out, err := c.Imager(ctx, "list-images", "--json", "--api-url", c.Info.APIURL)
		var l listed
		if err != nil || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("imager list-images --json: %v\n%s", err, out)
		}
		return l
	}

	t.Run("imager list-images shows the six families' snapshots with fingerprints", func(t *testing.T) {
		fams := map[string]bool{}
		for _, im := range listImages(t).Images {
			if im.Fingerprint == "" {
				t.Errorf("snapshot %s has no fingerprint", im.Name)
			}
			fams[im.Family] = true
		}
		for _, f := range cluster.Families {
			if !fams[f] {
				t.Fatalf("families listed: %v, want %v", fams, cluster.Families)
			}
		}
	})

	snapIDs := func(t *testing.T) map[string][]int {
		imgs, _, err := c.DO.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int{}
		for _, im := range imgs {
			for _, f := range cluster.Families {
				if strings.HasPrefix(im.Name, "codelab-"+f+"-") {
					out[f] = append(out[f], im.ID)
				}
			}
		}
		for _, ids := range out {
			sort.Ints(ids)
		}
		return out
	}
	build := func(t *testing.T, target string, args ...string) string {
		out, err := c.Imager(ctx, append(c.BuildArgs(target), args...)...)
		if err != nil {
			t.Fatalf("imager build %s %v: %v\n%s", target, args, err, out)
		}
		return out
	}

	t.Run("a second imager build all skips every image", func(t *testing.T) {
		before := snapIDs(t)
		out := build(t, "all")
		if after := snapIDs(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("snapshots changed: %v -> %v\n%s", before, after, out)
		}
		if n := strings.Count(out, "up to date"); n < len(cluster.Families) {
			t.Fatalf("build reported %d images up to date, want %d:\n%s", n, len(cluster.Families), out)
		}
	})

	t.Run("clean-images --keep 1 after forced rebuilds deletes exactly the older unused snapshots", func(t *testing.T) {
		inUse := map[int]bool{}
		ds, _, err := c.DO.Droplets.List(ctx, &godo.ListOptions{PerPage: 200})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			inUse[d.Image.ID] = true
		}
		// Two forced rebuilds of the services base and of one service image (api, built
		// on the newest base); the other families keep their one snapshot.
		for range 2 {
			build(t, "app", "--force")
			build(t, "api", "--force")
		}
		before := snapIDs(t)
		want := map[int]bool{} // what must remain: the newest of each family and those in use
		for fam, ids := range before {
			if (fam == "services-base" || fam == "api-base") && len(ids) < 3 {
				t.Fatalf("after two forced rebuilds: %v", before)
			}
			want[ids[len(ids)-1]] = true
			for _, id := range ids {
				if inUse[id] {
					want[id] = true
				}
			}
		}
		out, err := c.Imager(ctx, "clean-images", "--keep", "1", "--api-url", c.Info.APIURL)
		if err != nil {
			t.Fatalf("clean-images: %v\n%s", err, out)
		}
		got := map[int]bool{}
		for _, ids := range snapIDs(t) {
			for _, id := range ids {
				got[id] = true
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after clean-images --keep 1: %v, want %v (before %v, in use %v)\n%s", got, want, before, inUse, out)
		}
	})

	t.Run("a rebooted droplet comes back ready with the same Consul node and neo4j data", func(t *testing.T) {
		neo := node("neo4j")
		nodeID := exec(neo, "cat", "/opt/consul/node-id")
		if _, err := c.WaitReady(ctx, neo, time.Minute, time.Time{}); err != nil {
			t.Fatal(err)
		}
		marker := fmt.Sprint(time.Now().UnixNano())
		exec(neo, "sh", "-c", "echo "+marker+" > /tmp/e2e-marker && docker cp /tmp/e2e-marker neo4j-neo4j-1:/data/e2e-marker")
		rebooted := time.Now()
		a, _, err := c.DO.DropletActions.Reboot(ctx, neo.ID)
		if err != nil {
			t.Fatal(err)
		}
		for {
			got, _, err := c.DO.Actions.Get(ctx, a.ID)
			if err != nil || got.Status == "errored" {
				t.Fatalf("reboot: %+v %v", got, err)
			}
			if got.Status == godo.ActionCompleted {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(time.Second):
			}
		}
		start := time.Now()
		after, err := c.WaitReady(ctx, neo, 10*time.Minute, rebooted)
		if err != nil {
			t.Fatalf("after reboot: %v", err)
		}
		t.Logf("reboot to ready: %s (the boot took %s)", time.Since(start).Round(time.Second), time.Duration(after.Boot.DurationMs)*time.Millisecond)
		if got := exec(neo, "cat", "/opt/consul/node-id"); got != nodeID {
			t.Errorf("Consul node-id changed across the reboot: %s -> %s", nodeID, got)
		}
		if got := exec(neo, "sh", "-c", "docker cp neo4j-neo4j-1:/data/e2e-marker - | tar -xO"); got != marker {
			t.Errorf("neo4j data volume lost the marker: %q, want %q", got, marker)
		}
	})

	// Tampered backups, a failed restore, a KV value with a newline (hardening_test.go).
	hardening{faults{ctx: ctx, c: c}}.run(t)
	testFleetView(ctx, t, c) // it stops a container and powers a droplet off, then restores both (fleet_test.go)
	doctlSubtests(t, ctx, c)
	faults{ctx: ctx, c: c}.run(t)
	t.Run("boot benchmark: old way, services base, api base, reboot", func(t *testing.T) { bootBenchmark(ctx, t, c) })
}
