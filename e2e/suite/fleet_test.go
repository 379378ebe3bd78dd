package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
	"github.com/digitalocean/godo"
)

// fleetView is the part of `codelab-agent status --fleet --json` the suite reads.
type fleetView struct {
	SchemaVersion int    `json:"schemaVersion"`
	Overall       string `json:"overall"`
	ExitCode      int    `json:"exitCode"`
	Summary       string `json:"summary"`
	ImagesFrom    string `json:"imagesFrom"`
	ImagesError   string `json:"imagesError"`
	Droplets      []struct {
		Node        string `json:"node"`
		Role        string `json:"role"`
		State       string `json:"state"`
		Summary     string `json:"summary"`
		Image       string `json:"image"`
		StaleImage  bool   `json:"staleImage"`
		NewestImage string `json:"newestImage"`
	} `json:"droplets"`
}

func (v fleetView) state(node string) string {
	for _, d := range v.Droplets {
		if d.Node == node {
			return d.State
		}
	}
	return "absent"
}

// testFleetView checks the fleet view on the demo cluster (issue 13). It runs last in
// TestEndToEnd, after the forced rebuilds: it stops web's container and powers the
// landing droplet off, and brings both back, ready, before it returns.
func testFleetView(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	node := func(role string) *cluster.Node {
		for _, n := range c.Nodes {
			if n.Role == role {
				return n
			}
		}
		t.Fatalf("no %s droplet", role)
		return nil
	}
	fleet := func(from *cluster.Node) (fleetView, error) {
		out, code, err := c.AgentStatus(ctx, from, "--fleet", "--json") // the API URL comes from /etc/codelab/do-api-url, which the local DigitalOcean writes
		var v fleetView
		if err != nil {
			return v, err
		}
		if jerr := json.Unmarshal([]byte(out), &v); jerr != nil {
			return v, fmt.Errorf("status --fleet --json on %s (exit %d): %v: %s", from.Name, code, jerr, out)
		}
		if code != v.ExitCode {
			return v, fmt.Errorf("status --fleet on %s exited %d, its JSON says %d", from.Name, code, v.ExitCode)
		}
		return v, nil
	}
	// waitFleet asks from until cond holds or within passes; it returns how long it took.
	waitFleet := func(t *testing.T, from *cluster.Node, within time.Duration, cond func(fleetView) error) (fleetView, time.Duration) {
		t.Helper()
		start := time.Now()
		var v fleetView
		var err error
		for {
			if v, err = fleet(from); err == nil {
				if err = cond(v); err == nil {
					return v, time.Since(start)
				}
			}
			if time.Since(start) > within {
				b, _ := json.MarshalIndent(v, "", "  ")
				t.Fatalf("from %s, not within %s: %v\n%s", from.Name, within, err, b)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	allReady := func(v fleetView) error {
		if v.SchemaVersion != 1 {
			return fmt.Errorf("schemaVersion %d", v.SchemaVersion)
		}
		for _, n := range c.Nodes {
			if st := v.state(n.Name); st != "ready" {
				return fmt.Errorf("%s is %s", n.Name, st)
			}
		}
		if v.ExitCode != 0 {
			return fmt.Errorf("exit code %d: %s", v.ExitCode, v.Summary)
		}
		return nil
	}

	t.Run("status --fleet --json shows every droplet ready, from each droplet", func(t *testing.T) {
		for _, n := range c.Nodes {
			v, _ := waitFleet(t, n, 2*time.Minute, allReady)
			if len(v.Droplets) != len(c.Nodes) {
				t.Errorf("from %s: %d droplets, want %d", n.Name, len(v.Droplets), len(c.Nodes))
			}
		}
	})

	// record reads a droplet's published record itself from Consul KV (through api's
	// agent), not the view that joins it with Consul's live health.
	type record struct {
		State       string    `json:"state"`
		Summary     string    `json:"summary"`
		PublishedAt time.Time `json:"publishedAt"`
	}
	readRecord := func(n *cluster.Node) (record, error) {
		var r record
		out, err := c.ConsulAdmin(ctx, node("api"), "kv", "get", "codelab/_fleet/"+c.Opts.Env+"/"+n.Name)
		if err != nil {
			return r, fmt.Errorf("the record of %s: %w", n.Name, err)
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return r, fmt.Errorf("the record of %s: %w: %s", n.Name, err, out)
		}
		return r, nil
	}
	// waitRecord reads n's record until cond holds or within passes.
	waitRecord := func(t *testing.T, n *cluster.Node, within time.Duration, cond func(record) error) record {
		t.Helper()
		start := time.Now()
		for {
			r, err := readRecord(n)
			if err == nil {
				if err = cond(r); err == nil {
					return r
				}
			}
			if time.Since(start) > within {
				t.Fatalf("%s's record, not within %s: %v (%+v)", n.Name, within, err, r)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(time.Second):
			}
		}
	}

	t.Run("after the boot codelab-fleet.timer keeps every record fresh", func(t *testing.T) {
		// codelab-agent.service is a one-shot: after the boot, only the timer republishes,
		// an unchanged record at least every 30 s.
		for _, n := range c.Nodes {
			before, err := readRecord(n)
			if err != nil {
				t.Fatal(err)
			}
			after := waitRecord(t, n, 45*time.Second, func(r record) error {
				if !r.PublishedAt.After(before.PublishedAt) {
					return fmt.Errorf("published at %s, as before", r.PublishedAt.Format(time.RFC3339Nano))
				}
				return nil
			})
			t.Logf("%s: record republished %s after %s (%s)", n.Name, after.PublishedAt.Format(time.RFC3339), before.PublishedAt.Format(time.RFC3339), after.State)
		}
	})

	t.Run("after forced rebuilds of the services base and the api image the droplets of those families read stale image", func(t *testing.T) {
		api := node("api")
		v, err := fleet(api)
		if err != nil {
			t.Fatal(err)
		}
		snaps, err := c.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var running string
		for _, d := range v.Droplets {
			if d.Role == "api" {
				running = d.Image
			}
		}
		// The suite's earlier forced rebuilds made a newer services base and api image;
		// when run alone, make them.
		if newest := snaps["api-base"].Name; newest == "" || newest == running {
			for _, target := range []string{"app", "api"} {
				if out, err := c.Imager(ctx, append(c.BuildArgs(target), "--force")...); err != nil {
					t.Fatalf("imager build %s --force: %v\n%s", target, err, out)
				}
			}
		}
		if snaps, err = c.Snapshots(ctx); err != nil {
			t.Fatal(err)
		}
		// Stale means a newer snapshot of the droplet's own family: api-1 (api-base) and
		// the droplets of the first services base are; web-1 (web-base) and neo4j-1 are not.
		family := regexp.MustCompile(`^codelab-(.+)-\d{4}-\d{2}-\d{2}-\d{4}$`)
		v, _ = waitFleet(t, api, 30*time.Second, func(v fleetView) error {
			if v.ImagesFrom != "digitalocean" {
				return fmt.Errorf("newest images from %q (%s), want the DigitalOcean API through the droplet's do_token", v.ImagesFrom, v.ImagesError)
			}
			var errs []error
			for _, d := range v.Droplets {
				m := family.FindStringSubmatch(d.Image)
				if m == nil {
					errs = append(errs, fmt.Errorf("%s runs %q, not a codelab snapshot", d.Node, d.Image))
					continue
				}
				if want := snaps[m[1]].Name != d.Image; d.StaleImage != want {
					errs = append(errs, fmt.Errorf("%s runs %s (newest of %s: %s): stale=%v, want %v", d.Node, d.Image, m[1], snaps[m[1]].Name, d.StaleImage, want))
				}
				if d.Node == api.Name && !d.StaleImage {
					errs = append(errs, fmt.Errorf("%s runs %s and is not marked stale", d.Node, d.Image))
				}
			}
			return errors.Join(errs...)
		})
		for _, d := range v.Droplets {
			t.Logf("%s: %s stale=%v newest=%s", d.Node, d.Image, d.StaleImage, d.NewestImage)
		}
	})

	t.Run("web reads degraded within 10s of its container stopping", func(t *testing.T) {
		web, api := node("web"), node("api")
		ids, err := c.Docker.Exec(ctx, web.ID, "docker", "ps", "-q", "--filter", "label=com.docker.compose.project=web")
		if err != nil || strings.TrimSpace(ids) == "" {
			t.Fatalf("web's containers: %q %v", ids, err)
		}
		cids := strings.Fields(ids)
		if _, err := c.Docker.Exec(ctx, web.ID, append([]string{"docker", "stop", "-t", "2"}, cids...)...); err != nil {
			t.Fatal(err)
		}
		v, took := waitFleet(t, api, 10*time.Second, func(v fleetView) error {
			if st := v.state(web.Name); st != "degraded" {
				return fmt.Errorf("web is %s", st)
			}
			return nil
		})
		t.Logf("container stopped to degraded in the fleet view: %s (%s)", took.Round(100*time.Millisecond), v.Summary)
		if v.ExitCode != 2 {
			t.Errorf("exit code %d with web degraded, want 2", v.ExitCode)
		}
		// The change after the boot reaches web's record itself (codelab-fleet.timer
		// publishes what `codelab-agent status` says), not only Consul's live health.
		r := waitRecord(t, web, 45*time.Second, func(r record) error {
			if r.State != "degraded" {
				return fmt.Errorf("the record says %s", r.State)
			}
			return nil
		})
		t.Logf("web's record: %s: %s", r.State, r.Summary)
		if _, err := c.Docker.Exec(ctx, web.ID, append([]string{"docker", "start"}, cids...)...); err != nil {
			t.Fatal(err)
		}
		waitFleet(t, api, 2*time.Minute, allReady) // a degraded record reads degraded: the record is ready again too
	})

	t.Run("landing reads unreachable within 30s of its droplet powering off", func(t *testing.T) {
		landing, api := node("landing"), node("api")
		action := func(do func() (*godo.Action, *godo.Response, error)) {
			t.Helper()
			a, _, err := do()
			if err != nil {
				t.Fatal(err)
			}
			for a.Status != godo.ActionCompleted {
				if a.Status == "errored" {
					t.Fatalf("action %s errored", a.Type)
				}
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(500 * time.Millisecond):
				}
				if a, _, err = c.DO.Actions.Get(ctx, a.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		action(func() (*godo.Action, *godo.Response, error) { return c.DO.DropletActions.PowerOff(ctx, landing.ID) })
		v, took := waitFleet(t, api, 30*time.Second, func(v fleetView) error {
			if st := v.state(landing.Name); st != "unreachable" {
				return fmt.Errorf("landing is %s", st)
			}
			return nil
		})
		t.Logf("powered off to unreachable in the fleet view: %s (%s)", took.Round(100*time.Millisecond), v.Summary)
		// landing is a Consul server: while the others elect a leader without it, a
		// server's record can read degraded (no leader) for a moment. They are all
		// ready again, and landing stays unreachable.
		v, settled := waitFleet(t, api, 30*time.Second, func(v fleetView) error {
			if st := v.state(landing.Name); st != "unreachable" {
				return fmt.Errorf("landing is %s", st)
			}
			for _, n := range c.Nodes {
				if n != landing && v.state(n.Name) != "ready" {
					return fmt.Errorf("%s is %s while landing is off", n.Name, v.state(n.Name))
				}
			}
			return nil
		})
		t.Logf("the other droplets ready in the fleet view %s later (%s)", settled.Round(100*time.Millisecond), v.Summary)
		on := time.Now()
		action(func() (*godo.Action, *godo.Response, error) { return c.DO.DropletActions.PowerOn(ctx, landing.ID) })
		if _, err := c.WaitReady(ctx, landing, 10*time.Minute, on); err != nil {
			t.Fatalf("after power on: %v", err)
		}
		waitFleet(t, api, 2*time.Minute, allReady)
	})
}
