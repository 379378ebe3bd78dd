package suite

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
)

// doctlSubtests runs the operator commands of the old README with a client we did not
// write, doctl v1.104.0 (built by `make deps` from tools/doctl), against the cluster's
// local DigitalOcean: list images and droplets, create an api droplet with one line of
// user_data and --wait, wait for it to be ready, snapshot and transfer it, delete the
// droplet and the snapshot. It runs last: it adds a droplet to the Consul cluster and
// takes it away again.
func doctlSubtests(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	bin := os.Getenv("CODELAB_DOCTL")
	if bin == "" {
		bin = filepath.Join(c.Opts.Cache, "bin", "doctl")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("doctl is missing (make deps builds it from tools/doctl): %v", err)
	}
	// The version from the binary's build information (`doctl version` would also ask
	// GitHub for the latest release).
	info, err := buildinfo.ReadFile(bin)
	isDoctl := func(m *debug.Module) bool {
		return m.Path == "github.com/digitalocean/doctl" && m.Version == "v1.104.0"
	}
	if err != nil || !(isDoctl(&info.Main) || slices.ContainsFunc(info.Deps, isDoctl)) {
		t.Fatalf("%s is not doctl v1.104.0 built from its module (make deps builds it): %v", bin, err)
	}
	// doctl's config lives in a temporary folder, never in $HOME.
	home := t.TempDir()
	doctl := func(t *testing.T, args ...string) string {
		t.Helper()
		full := append([]string{"--config", filepath.Join(home, "config.yaml"), "--api-url", c.Info.APIURL}, args...)
		cmd := exec.CommandContext(ctx, bin, full...)
		cmd.Env = append(os.Environ(), "DIGITALOCEAN_ACCESS_TOKEN=local", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("doctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	var apiNode *cluster.Node
	for _, n := range c.Nodes {
		if n.Role == "api" {
			apiNode = n
		}
	}
	if apiNode == nil {
		t.Fatal("no api droplet in the cluster")
	}

	t.Run("doctl compute image list --public=false lists the snapshots", func(t *testing.T) {
		out := doctl(t, "compute", "image", "list", "--public=false", "--format", "ID,Name,Type", "--no-header")
		for _, fam := range []string{"codelab-services-base-", "codelab-neo4j-base-"} {
			if !strings.Contains(out, fam) {
				t.Errorf("no %s snapshot listed:\n%s", fam, out)
			}
		}
	})

	t.Run("doctl compute droplet list lists every droplet", func(t *testing.T) {
		out := doctl(t, "compute", "droplet", "list", "--format", "Name,Status", "--no-header")
		for _, n := range c.Nodes {
			if !strings.Contains(out, n.Name) {
				t.Errorf("%s not listed:\n%s", n.Name, out)
			}
		}
	})

	var api2 *cluster.Node
	t.Run("doctl droplet create api-2 --wait with one line of user_data boots to ready", func(t *testing.T) {
		snaps, err := c.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		base, ok := snaps["services-base"]
		if !ok {
			t.Fatalf("no services-base snapshot: %v", snaps)
		}
		// The line the cluster gave api-1 (cluster.UserData: role, env, join, registry,
		// version and the gossip key, which lives nowhere else), read the way the agent
		// reads it: from the metadata service.
		line, err := c.Docker.Exec(ctx, apiNode.ID, "curl", "-fsS", "http://169.254.169.254/metadata/v1/user-data")
		if err != nil || !strings.HasPrefix(line, "#codelab v1 role=api ") || strings.Contains(strings.TrimSpace(line), "\n") {
			t.Fatalf("api-1's user_data: %v %q", err, line)
		}
		ud := filepath.Join(home, "ud")
		if err := os.WriteFile(ud, []byte(strings.TrimSpace(line)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out := doctl(t, "compute", "droplet", "create", "api-2", "--image", strconv.Itoa(base.ID), "--size", "s-1vcpu-2gb",
			"--region", "nyc3", "--user-data-file", ud, "--tag-names", "codelab,codelab-api", "--wait",
			"--format", "ID,Name,Status,PublicIPv4,PrivateIPv4", "--no-header")
		created := time.Since(start)
		f := strings.Fields(out)
		if len(f) != 5 || f[1] != "api-2" || f[2] != "active" {
			t.Fatalf("doctl droplet create --wait: %q", out)
		}
		id, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("droplet id %q: %v", f[0], err)
		}
		api2 = &cluster.Node{NodeSpec: cluster.NodeSpec{Name: "api-2", Role: "api", Image: "services-base", Consul: "client", Port: apiNode.Port},
			ID: id, PublicIP: f[3], PrivateIP: f[4]}
		st, err := c.WaitReady(ctx, api2, 5*time.Minute, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("doctl droplet create --wait returned in %s; api-2 (droplet %d) ready %s after the create (boot %s)",
			created.Round(100*time.Millisecond), id, time.Since(start).Round(100*time.Millisecond),
			time.Duration(st.Boot.DurationMs)*time.Millisecond)
	})
	if api2 == nil {
		return
	}

	t.Run("doctl snapshots api-2, transfers the snapshot, deletes the droplet and the snapshot", func(t *testing.T) {
		name := fmt.Sprintf("codelab-e2e-doctl-%d", time.Now().Unix())
		doctl(t, "compute", "droplet-action", "snapshot", strconv.Itoa(api2.ID), "--snapshot-name", name, "--wait")
		var snap string
		for _, l := range strings.Split(doctl(t, "compute", "image", "list", "--public=false", "--format", "ID,Name", "--no-header"), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == name {
				snap = f[0]
			}
		}
		if snap == "" {
			t.Fatalf("snapshot %s not listed", name)
		}
		if out := doctl(t, "compute", "image-action", "transfer", snap, "--region", "fra1", "--wait", "--format", "Status", "--no-header"); out != "completed" {
			t.Fatalf("image-action transfer: %q", out)
		}
		var got []struct {
			Regions []string `json:"regions"`
		}
		out := doctl(t, "compute", "image", "get", snap, "--output", "json")
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || !slices.Equal(got[0].Regions, []string{"nyc3", "fra1"}) {
			t.Errorf("regions after the transfer: %v %s", err, out)
		}
		doctl(t, "compute", "droplet", "delete", "-f", "api-2")
		doctl(t, "compute", "image", "delete", "-f", snap)
		if out := doctl(t, "compute", "droplet", "list", "--format", "Name", "--no-header"); slices.Contains(strings.Fields(out), "api-2") {
			t.Errorf("api-2 still listed after delete:\n%s", out)
		}
		if out := doctl(t, "compute", "image", "list", "--public=false", "--format", "Name", "--no-header"); strings.Contains(out, name) {
			t.Errorf("%s still listed after delete:\n%s", name, out)
		}
	})
}
