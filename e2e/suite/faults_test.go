package suite

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
	"github.com/codelab-app/infra/tools/testenv"
	"github.com/digitalocean/godo"
)

// faults is the reliability matrix (issue: every fault a droplet meets is
// survived, with nothing lost, and status names it). Each subtest injects
// one fault into the running demo cluster, asserts that status names the
// cause while it lasts, and that the droplet ends ready by itself. It logs
// the time to recovery it measured.
type faults struct {
	ctx context.Context
	c   *cluster.Cluster
}

func (f faults) node(t *testing.T, name string) *cluster.Node {
	t.Helper()
	for _, n := range f.c.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no droplet %s", name)
	return nil
}

func (f faults) exec(t *testing.T, n *cluster.Node, args ...string) string {
	t.Helper()
	out, err := f.c.Docker.Exec(f.ctx, n.ID, args...)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, strings.Join(args, " "), err)
	}
	return out
}

// status is `codelab-agent status --json` on n.
type agentReport struct {
	Overall  string `json:"overall"`
	ExitCode int    `json:"exitCode"`
	Summary  string `json:"summary"`
	Problems []struct {
		What, Error, Hint string
	} `json:"problems"`
	Backup *struct {
		Newest *struct {
			ID string `json:"id"`
		} `json:"newestVerified"`
		AgeSeconds int64 `json:"newestAgeSeconds"`
	} `json:"backup"`
}

func (f faults) status(t *testing.T, n *cluster.Node) (agentReport, int) {
	t.Helper()
	out, code, err := f.c.AgentStatus(f.ctx, n, "--json")
	var r agentReport
	if err != nil || json.Unmarshal([]byte(out), &r) != nil {
		return agentReport{Overall: "unreadable", Summary: fmt.Sprint(err, out)}, code
	}
	return r, code
}

// waitStatus polls status until ok accepts it, or fails after d.
func (f faults) waitStatus(t *testing.T, n *cluster.Node, d time.Duration, what string, ok func(agentReport) bool) agentReport {
	t.Helper()
	deadline := time.Now().Add(d)
	var last agentReport
	for {
		last, _ = f.status(t, n)
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within %s; last status: %s %s", n.Name, what, d, last.Overall, last.Summary)
		}
		time.Sleep(time.Second)
	}
}

func (f faults) ready(t *testing.T, n *cluster.Node, d time.Duration, since time.Time) {
	t.Helper()
	if _, err := f.c.WaitReady(f.ctx, n, d, since); err != nil {
		t.Fatal(err)
	}
}

// extra creates a droplet for one subtest and deletes it when the subtest ends.
func (f faults) extra(t *testing.T, x cluster.Extra) *cluster.Node {
	t.Helper()
	n, err := f.c.CreateExtra(f.ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.c.Delete(context.Background(), n); err != nil {
			t.Errorf("delete %s: %v", n.Name, err)
		}
	})
	return n
}

// block rejects, on this host, TCP connections to the local DigitalOcean's
// public gateway at port (its metadata server, its registry): the droplets
// reach both there. It returns the function that lifts the block, which
// also runs when the test ends.
func block(t *testing.T, gateway, port string) (unblock func()) {
	t.Helper()
	rule := []string{"INPUT", "-p", "tcp", "-d", gateway, "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset"}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables -I %s: %v: %s", strings.Join(rule, " "), err, out)
	}
	done := false
	unblock = func() {
		if done {
			return
		}
		done = true
		if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("iptables -D %s: %v: %s", strings.Join(rule, " "), err, out)
		}
	}
	t.Cleanup(unblock)
	return unblock
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return h, p
}

func (f faults) action(t *testing.T, a *godo.Action, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, _, err := f.c.DO.Actions.Get(f.ctx, a.ID)
		if err != nil || got.Status == "errored" {
			t.Fatalf("action %s: %+v %v", a.Type, got, err)
		}
		if got.Status == godo.ActionCompleted {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (f faults) run(t *testing.T) {
	t.Run("metadata: no container on any droplet reaches the metadata service, the droplet does; without the agent's rule one reaches the local one", f.containerMetadata)
	t.Run("backups: a backup run on the neo4j droplet lands in the local Spaces and status shows it", f.backupInDemo)
	t.Run("fault: a required KV key absent at first boot, set 60 s later", f.missingKey)
	t.Run("fault: metadata service down for the first 30 s of a first boot", f.metadataDown)
	t.Run("fault: registry down at first boot, back 60 s later", f.registryDown)
	// The late-servers fault spends two minutes waiting on a cluster of its
	// own; the faults that create no droplet (its address prediction needs
	// that) run meanwhile, one after another.
	t.Run("group", func(t *testing.T) {
		t.Run("fault: Consul servers created 2 minutes after the clients", func(t *testing.T) {
			t.Parallel()
			f.lateServers(t)
		})
		t.Run("faults on the demo cluster", func(t *testing.T) {
			t.Parallel()
			t.Run("fault: the agent killed with SIGKILL after render wrote new config, and during compose-up", f.agentKilled)
			t.Run("fault: a Consul server rebooted keeps quorum and leaves clients alone", f.serverRebooted)
			t.Run("fault: the neo4j droplet rebooted during a backup: no half backup listed complete, data intact", f.rebootDuringBackup)
			t.Run("fault: backup disk full, and an upload cut halfway: old backups intact, the monitor reports it", f.backupFailures)
			t.Run("fault: a droplet powered off: the others stay ready and Consul marks it failed", f.poweredOff)
		})
	})
}

type listing struct {
	Backups []struct {
		ID       string `json:"id"`
		Complete bool   `json:"complete"`
		Files    []struct {
			Name string `json:"name"`
		} `json:"files"`
	} `json:"backups"`
}

func (f faults) list(t *testing.T, n *cluster.Node) listing {
	t.Helper()
	var l listing
	if err := json.Unmarshal([]byte(f.exec(t, n, "codelab-agent", "backup", "list", "--json")), &l); err != nil {
		t.Fatalf("backup list --json: %v", err)
	}
	return l
}

func (l listing) complete() map[string]bool {
	out := map[string]bool{}
	for _, b := range l.Backups {
		if b.Complete {
			out[b.ID] = true
		}
	}
	return out
}

func (f faults) rebootDuringBackup(t *testing.T) {
	neo := f.node(t, "neo4j-1")
	f.ready(t, neo, 2*time.Minute, time.Time{})
	before := f.list(t, neo).complete()
	marker := fmt.Sprint(time.Now().UnixNano())
	f.exec(t, neo, "sh", "-c", "echo "+marker+" > /tmp/e2e-marker2 && docker cp /tmp/e2e-marker2 neo4j-neo4j-1:/data/e2e-marker2")
	f.exec(t, neo, "sh", "-c", "rm -f /tmp/e2e-backup.log; setsid codelab-agent backup run --ignore-window >/tmp/e2e-backup.log 2>&1 &")
	// The Community dump stops the database first: reboot while it is down.
	deadline := time.Now().Add(time.Minute)
	for strings.TrimSpace(f.exec(t, neo, "docker", "inspect", "-f", "{{.State.Running}}", "neo4j-neo4j-1")) == "true" {
		if time.Now().After(deadline) {
			t.Fatalf("the backup never stopped the database:\n%s", f.exec(t, neo, "cat", "/tmp/e2e-backup.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	rebooted := time.Now()
	a, _, err := f.c.DO.DropletActions.Reboot(f.ctx, neo.ID)
	f.action(t, a, err)
	f.ready(t, neo, 5*time.Minute, rebooted)
	t.Logf("recovery: neo4j-1 ready %s after a reboot mid-backup", time.Since(rebooted).Round(time.Second))
	after := f.list(t, neo)
	for id := range before {
		if !after.complete()[id] {
			t.Errorf("backup %s was complete before the reboot and is not now", id)
		}
	}
	for _, b := range after.Backups {
		if b.Complete && !before[b.ID] && len(b.Files) == 0 {
			t.Errorf("backup %s is listed complete with no files", b.ID)
		}
	}
	if got := f.exec(t, neo, "sh", "-c", "docker cp neo4j-neo4j-1:/data/e2e-marker2 - | tar -xO"); strings.TrimSpace(got) != marker {
		t.Errorf("the data volume lost the marker across the reboot: %q", got)
	}
}

func (f faults) backupFailures(t *testing.T) {
	neo, srv := f.node(t, "neo4j-1"), f.node(t, "landing-1")
	f.ready(t, neo, 2*time.Minute, time.Time{})
	before := f.list(t, neo).complete()
	if len(before) == 0 {
		t.Fatal("no complete backup to keep intact")
	}
	// The monitor serves a collection at most 15 s old: wait for the line.
	reports := func(line string) bool {
		deadline := time.Now().Add(30 * time.Second)
		for {
			m := f.exec(t, neo, "curl", "-fsS", "http://"+neo.PrivateIP+":9187/metrics")
			if strings.Contains(m, line) {
				return true
			}
			if time.Now().After(deadline) {
				t.Logf("metrics without %q:\n%s", line, grepLines(m, "codelab_backup_last_run"))
				return false
			}
			time.Sleep(2 * time.Second)
		}
	}

	// 1. Disk full: the backup folder on a 16 MiB tmpfs (a run needs 64 MiB free).
	f.exec(t, neo, "sh", "-c", "mkdir -p /var/backups/neo4j && mount -t tmpfs -o size=16m tmpfs /var/backups/neo4j")
	t.Cleanup(func() { _, _ = f.c.Docker.Exec(context.Background(), neo.ID, "umount", "/var/backups/neo4j") })
	out, err := f.c.Docker.Exec(f.ctx, neo.ID, "codelab-agent", "backup", "run", "--ignore-window")
	if err == nil || !strings.Contains(out+err.Error(), "disk full") {
		t.Errorf("backup on a full disk: %v %s; want a disk full error", err, out)
	}
	f.exec(t, neo, "umount", "/var/backups/neo4j")
	if !reports(`codelab_backup_last_run_success{step="prepare"} 0`) {
		t.Error("the monitor does not report the run that found the disk full")
	}

	// 2. The upload cut halfway: Spaces reached through a proxy that cuts
	// every connection after 512 KiB, with 2 MiB of incompressible data in
	// the database so that the dump is four times that.
	f.exec(t, neo, "sh", "-c", "head -c 2097152 /dev/urandom > /tmp/e2e-blob && docker cp /tmp/e2e-blob neo4j-neo4j-1:/data/databases/neo4j/e2e-blob")
	gw := f.c.Info.Networks.Public.Gateway.String()
	_, target := hostPort(t, f.c.Spaces.Endpoint)
	proxy := testenv.StartProxy(t, gw, net.JoinHostPort(gw, target), 512<<10)
	key := "codelab/" + f.c.Opts.Env + "/backup/spaces_endpoint"
	if err := f.c.KVPut(f.ctx, srv, key, "http://"+proxy.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.c.KVPut(context.Background(), srv, key, f.c.Spaces.Endpoint) })
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(f.exec(t, neo, "cat", "/root/docker/neo4j/spaces.json"), proxy.Addr) {
		if time.Now().After(deadline) {
			t.Fatal("consul-template did not render the proxy endpoint")
		}
		time.Sleep(time.Second)
	}
	out, err = f.c.Docker.Exec(f.ctx, neo.ID, "codelab-agent", "backup", "run", "--ignore-window")
	if err == nil || !proxy.Tripped() {
		t.Errorf("backup through a cut line: err %v, tripped %t: %s", err, proxy.Tripped(), out)
	}
	if err := f.c.KVPut(f.ctx, srv, key, f.c.Spaces.Endpoint); err != nil {
		t.Fatal(err)
	}
	if !reports(`codelab_backup_last_run_success{step="upload"} 0`) {
		t.Error("the monitor does not report the cut upload")
	}
	deadline = time.Now().Add(time.Minute)
	for !strings.Contains(f.exec(t, neo, "cat", "/root/docker/neo4j/spaces.json"), f.c.Spaces.Endpoint) {
		if time.Now().After(deadline) {
			t.Fatal("consul-template did not render the endpoint back")
		}
		time.Sleep(time.Second)
	}
	after := f.list(t, neo).complete()
	for id := range before {
		if !after[id] {
			t.Errorf("backup %s was lost by the failed runs", id)
		}
	}
	f.ready(t, neo, 2*time.Minute, time.Time{})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (f faults) backupInDemo(t *testing.T) {
	neo := f.node(t, "neo4j-1")
	// consul-template renders spaces.json from the settings the demo put
	// into KV; wait until it has the endpoint.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(f.exec(t, neo, "cat", "/root/docker/neo4j/spaces.json"), f.c.Spaces.Endpoint) {
		if time.Now().After(deadline) {
			t.Fatal("spaces.json never got the local Spaces endpoint")
		}
		time.Sleep(time.Second)
	}
	start := time.Now()
	out := f.exec(t, neo, "codelab-agent", "backup", "run", "--ignore-window")
	t.Logf("backup run in %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(out))
	f.ready(t, neo, 3*time.Minute, time.Time{})
	r, code := f.status(t, neo)
	if code != 0 || r.Backup == nil || r.Backup.Newest == nil || r.Backup.Newest.ID == "" {
		t.Fatalf("status after a backup: exit %d, backup %+v", code, r.Backup)
	}
	plain, _, _ := f.c.AgentStatus(f.ctx, neo)
	if !strings.Contains(plain, "backup: newest verified "+r.Backup.Newest.ID) {
		t.Errorf("status does not show the backup:\n%s", plain)
	}
	if list := f.exec(t, neo, "codelab-agent", "backup", "list"); !strings.Contains(list, r.Backup.Newest.ID) {
		t.Errorf("backup list lacks %s:\n%s", r.Backup.Newest.ID, list)
	}
}

func (f faults) missingKey(t *testing.T) {
	srv := f.node(t, "landing-1")
	key := "codelab/" + f.c.Opts.Env + "/api/NEO4J_PASSWORD"
	value := f.consulAdmin(t, srv, "kv", "get", key)
	f.consulAdmin(t, srv, "kv", "delete", key)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := f.c.KVPut(context.Background(), srv, key, value); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(restore)
	created := time.Now()
	n := f.extra(t, cluster.Extra{Spec: cluster.NodeSpec{Name: "api-f4", Role: "api", Image: "services-base", Consul: "client"}})
	r := f.waitStatus(t, n, 2*time.Minute, "waiting for "+key, func(r agentReport) bool {
		return r.Overall == "booting" && strings.Contains(r.Summary, "waiting for KV key "+key)
	})
	hint := false
	for _, p := range r.Problems {
		hint = hint || p.Hint == "consul kv put "+key+" <value>"
	}
	if !hint || r.ExitCode != 3 {
		t.Errorf("status while the key is missing: exit %d, problems %+v; want exit 3 and the consul kv put line", r.ExitCode, r.Problems)
	}
	t.Logf("while the key is missing: %s", r.Summary)
	time.Sleep(time.Until(created.Add(60 * time.Second)))
	restore()
	set := time.Now()
	f.ready(t, n, 5*time.Minute, time.Time{})
	t.Logf("recovery: ready %s after the key was set", time.Since(set).Round(time.Second))
	f.ready(t, f.node(t, "api-1"), time.Minute, time.Time{})
}

func (f faults) metadataDown(t *testing.T) {
	f.outageAtFirstBoot(t, f.c.Info.MetadataURL, 30*time.Second, "the metadata service",
		cluster.NodeSpec{Name: "landing-f1", Role: "landing", Image: "services-base", Consul: "client"})
}

func (f faults) registryDown(t *testing.T) {
	f.outageAtFirstBoot(t, f.c.Info.RegistryPull, 60*time.Second, "the registry "+f.c.Info.RegistryPull,
		cluster.NodeSpec{Name: "web-f2", Role: "web", Image: "services-base", Consul: "client"})
}

// outageAtFirstBoot makes addr (a server on the public gateway) refuse
// connections, creates a droplet, checks that its status waits for what,
// lifts the outage after d and checks the droplet then comes up by itself.
func (f faults) outageAtFirstBoot(t *testing.T, addr string, d time.Duration, what string, spec cluster.NodeSpec) {
	gw, port := hostPort(t, addr)
	unblock := block(t, gw, port)
	created := time.Now()
	n := f.extra(t, cluster.Extra{Spec: spec})
	r := f.waitStatus(t, n, 2*time.Minute, "waiting for "+what, func(r agentReport) bool {
		return r.Overall == "booting" && strings.Contains(r.Summary, "waiting for "+what)
	})
	t.Logf("during the outage: %s", r.Summary)
	time.Sleep(time.Until(created.Add(d)))
	unblock()
	back := time.Now()
	f.ready(t, n, 5*time.Minute, time.Time{})
	t.Logf("recovery: ready %s after %s came back", time.Since(back).Round(time.Second), what)
}

func (f faults) agentKilled(t *testing.T) {
	web := f.node(t, "web-1")
	f.ready(t, web, time.Minute, time.Time{})

	// 1. Killed right after render wrote new Consul config (the failpoint
	// makes the agent SIGKILL itself there, once). The next attempt renders
	// nothing new, and must still restart consul onto that config.
	f.exec(t, web, "sh", "-c", "echo '# stale' >> /etc/consul.d/consul.hcl")
	f.exec(t, web, "sh", "-c", "mkdir -p /run/codelab && echo kill-after-render > /run/codelab/failpoint")
	killed := time.Now()
	f.exec(t, web, "systemctl", "restart", "--no-block", "codelab-agent")
	f.ready(t, web, 3*time.Minute, killed)
	t.Logf("render kill: ready %s after the restart", time.Since(killed).Round(time.Second))
	if j := f.exec(t, web, "journalctl", "-u", "codelab-agent", "--since", "-5min", "--no-pager"); !strings.Contains(j, "failpoint") {
		t.Errorf("the agent did not hit the failpoint:\n%s", j)
	}
	if got := f.exec(t, web, "cat", "/etc/consul.d/consul.hcl"); strings.Contains(got, "# stale") {
		t.Errorf("consul.hcl still stale")
	}
	since := f.exec(t, web, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "--value", "consul")
	up := f.exec(t, web, "cat", "/proc/uptime")
	if us, err := strconv.ParseInt(strings.TrimSpace(since), 10, 64); err != nil {
		t.Errorf("consul ActiveEnterTimestampMonotonic %q: %v", since, err)
	} else if secs, _ := strconv.ParseFloat(strings.Fields(up)[0], 64); secs-float64(us)/1e6 > time.Since(killed).Seconds()+2 {
		t.Errorf("consul was not restarted after the kill: active since %.0fs of uptime %.0fs", float64(us)/1e6, secs)
	}

	// 2. Killed during compose-up: no duplicate containers afterwards.
	f.exec(t, web, "docker", "compose", "-p", "web", "-f", "/root/docker/web/compose.yaml", "stop", "-t", "1")
	restarted := time.Now()
	f.exec(t, web, "systemctl", "restart", "--no-block", "codelab-agent")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := f.exec(t, web, "cat", "/var/lib/codelab/state.json")
		var s struct {
			Steps []struct{ Name, Result string }
		}
		_ = json.Unmarshal([]byte(st), &s)
		running := false
		for _, x := range s.Steps {
			running = running || (x.Name == "compose-up" && x.Result == "running")
		}
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compose-up never ran:\n%s", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.exec(t, web, "systemctl", "kill", "-s", "SIGKILL", "codelab-agent")
	killed = time.Now()
	f.ready(t, web, 3*time.Minute, restarted)
	t.Logf("compose-up kill: ready %s after the kill", time.Since(killed).Round(time.Second))
	ids := strings.Fields(f.exec(t, web, "docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=web"))
	if len(ids) != 1 {
		t.Errorf("project web has %d containers after the kill, want 1: %v", len(ids), ids)
	}
}

func (f faults) serverRebooted(t *testing.T) {
	landing, neo := f.node(t, "landing-1"), f.node(t, "neo4j-1")
	rebooted := time.Now()
	a, _, err := f.c.DO.DropletActions.Reboot(f.ctx, landing.ID)
	f.action(t, a, err)
	// While it reboots: a leader, and the clients ready.
	leader := f.exec(t, neo, "curl", "-fsS", "http://127.0.0.1:8500/v1/status/leader")
	if strings.Trim(leader, `"`) == "" {
		t.Errorf("no Consul leader while landing-1 reboots")
	}
	for _, name := range []string{"api-1", "web-1"} {
		if r, code := f.status(t, f.node(t, name)); code != 0 {
			t.Errorf("%s while a server reboots: exit %d %s", name, code, r.Summary)
		}
	}
	f.ready(t, landing, 5*time.Minute, rebooted)
	t.Logf("recovery: landing-1 ready %s after the reboot", time.Since(rebooted).Round(time.Second))
}

func (f faults) poweredOff(t *testing.T) {
	web, neo := f.node(t, "web-1"), f.node(t, "neo4j-1")
	a, _, err := f.c.DO.DropletActions.PowerOff(f.ctx, web.ID)
	f.action(t, a, err)
	off := time.Now()
	powered := false
	t.Cleanup(func() {
		if !powered {
			_, _, _ = f.c.DO.DropletActions.PowerOn(context.Background(), web.ID)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		var members []struct {
			Name   string
			Status int
		}
		_ = json.Unmarshal([]byte(f.exec(t, neo, "curl", "-fsS", "http://127.0.0.1:8500/v1/agent/members")), &members)
		failed := false
		for _, m := range members {
			failed = failed || (m.Name == web.Name && m.Status == 4)
		}
		if failed {
			t.Logf("Consul marked %s failed %s after power-off", web.Name, time.Since(off).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Consul did not mark %s failed within a minute: %+v", web.Name, members)
		}
		time.Sleep(time.Second)
	}
	for _, n := range f.c.Nodes {
		if n == web {
			continue
		}
		if r, code := f.status(t, n); code != 0 {
			t.Errorf("%s while web-1 is off: exit %d %s", n.Name, code, r.Summary)
		}
	}
	on := time.Now()
	a, _, err = f.c.DO.DropletActions.PowerOn(f.ctx, web.ID)
	f.action(t, a, err)
	powered = true
	f.ready(t, web, 5*time.Minute, on)
	t.Logf("recovery: web-1 ready %s after power-on", time.Since(on).Round(time.Second))
}

// lateServers boots a client of a new cluster (its own gossip key and env)
// whose only server is created two minutes later, at the address the
// client was told to join.
func (f faults) lateServers(t *testing.T) {
	addrs, err := f.c.NextPrivateAddrs(f.ctx, 2)
	if err != nil || len(addrs) < 2 {
		t.Fatalf("predict addresses: %v %v", addrs, err)
	}
	gossip := make([]byte, 32)
	_, _ = rand.Read(gossip)
	key := base64.StdEncoding.EncodeToString(gossip)
	join := []string{addrs[1]}
	client := f.extra(t, cluster.Extra{Spec: cluster.NodeSpec{Name: "landing-late", Role: "landing", Image: "services-base", Consul: "client"},
		Env: "late", Join: join, Gossip: key})
	if client.PrivateIP != addrs[0] {
		t.Fatalf("the client got %s, not the predicted %s", client.PrivateIP, addrs[0])
	}
	created := time.Now()
	r := f.waitStatus(t, client, 2*time.Minute, "waiting for a Consul leader", func(r agentReport) bool {
		return r.Overall == "booting" && strings.Contains(r.Summary, "waiting for a Consul leader")
	})
	t.Logf("while there is no server: %s", r.Summary)
	time.Sleep(time.Until(created.Add(2 * time.Minute)))
	if r, _ := f.status(t, client); r.Overall != "booting" || !strings.Contains(r.Summary, "waiting for a Consul leader") {
		t.Errorf("after 2 minutes without a server: %s %s; want still booting, waiting for a leader", r.Overall, r.Summary)
	}
	server := f.extra(t, cluster.Extra{Spec: cluster.NodeSpec{Name: "sites-late", Role: "sites", Image: "services-base", Consul: "server"},
		Env: "late", Join: join, Gossip: key, Bootstrap: 1})
	if server.PrivateIP != addrs[1] {
		t.Fatalf("the server got %s, not the predicted %s", server.PrivateIP, addrs[1])
	}
	arrived := time.Now()
	f.ready(t, server, 5*time.Minute, time.Time{})
	f.ready(t, client, 5*time.Minute, time.Time{})
	t.Logf("recovery: the client ready %s after its server was created", time.Since(arrived).Round(time.Second))
}

// metadataRule is the agent's IPv4 rule in DOCKER-USER, as
// agent/internal/firewall writes it (iptables -D needs it word for word).
var metadataRule = []string{"-m", "conntrack", "--ctorigdst", "169.254.169.254/32",
	"-m", "comment", "--comment", "codelab: containers never reach the metadata service",
	"-j", "REJECT", "--reject-with", "icmp-admin-prohibited"}

// containerMetadata: on every droplet of the demo cluster a container
// cannot reach the metadata service while the droplet itself can, with the
// agent's rules in DOCKER-USER once each and the boot's firewall step
// saying so. On the neo4j droplet, removing the agent's IPv4 rule lets a
// container reach the LOCAL metadata service again (the local
// DigitalOcean's DNAT answers with that droplet's id: the rule, not an
// accident, is what blocks it), another port there stays dropped inside the
// droplet, and `codelab-agent firewall` closes it again. No packet leaves
// the machine: inside each droplet 169.254.169.254:80 is DNATed to the
// local DigitalOcean and anything else addressed there is dropped.
func (f faults) containerMetadata(t *testing.T) {
	const url = "http://169.254.169.254/metadata/v1/id"
	for _, n := range f.c.Nodes {
		t.Run(n.Name, func(t *testing.T) {
			if got := f.exec(t, n, "curl", "-fsS", "-m", "5", url); strings.TrimSpace(got) != strconv.Itoa(n.ID) {
				t.Errorf("the droplet's own metadata id = %q, want %d", got, n.ID)
			}
			// A container of the role: the request comes from its
			// network namespace, as the app's would.
			ids := strings.Fields(f.exec(t, n, "docker", "ps", "-q", "--filter", "label=com.docker.compose.project="+n.Role))
			if len(ids) == 0 {
				t.Fatalf("no container of project %s", n.Role)
			}
			pid := strings.TrimSpace(f.exec(t, n, "docker", "inspect", "-f", "{{.State.Pid}}", ids[0]))
			inContainer := func(u string) (string, error) {
				return f.c.Docker.Exec(f.ctx, n.ID, "nsenter", "-t", pid, "-n", "curl", "-fsS", "-m", "5", u)
			}
			if out, err := inContainer(url); err == nil {
				t.Errorf("container %s reached the metadata service: %s", ids[0], out)
			}
			// The container does reach the local DigitalOcean's metadata
			// server at its own address: only 169.254.169.254 is closed.
			direct := strings.TrimSuffix(f.c.Info.MetadataURL, ".json") + "/id"
			if out, err := inContainer(direct); err != nil {
				t.Errorf("container %s cannot reach %s either, so the block proves nothing: %v %s", ids[0], direct, err, out)
			}
			for _, fam := range []struct {
				cmd  string
				want int
			}{{"iptables", 1}, {"ip6tables", 4}} {
				if out := f.exec(t, n, fam.cmd, "-w", "-S", "DOCKER-USER"); strings.Count(out, "--ctorigdst") != fam.want {
					t.Errorf("%s DOCKER-USER, want %d metadata rules:\n%s", fam.cmd, fam.want, out)
				}
			}
			out, _, _ := f.c.AgentStatus(f.ctx, n, "--json")
			var r struct {
				Boot struct {
					Steps []struct{ Name, Result, Detail string }
				}
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("status --json: %v", err)
			}
			var detail string
			for _, s := range r.Boot.Steps {
				if s.Name == "firewall" {
					detail = s.Result + ": " + s.Detail
				}
			}
			if !strings.HasPrefix(detail, "ok: DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6)") {
				t.Errorf("status, firewall step: %q", detail)
			}
		})
	}

	neo := f.node(t, "neo4j-1")
	fromContainer := func(u string) (string, error) {
		return f.c.Docker.Exec(f.ctx, neo.ID, "docker", "exec", "neo4j-neo4j-1", "wget", "-q", "-O", "-", u)
	}
	if out, err := fromContainer(url); err == nil {
		t.Fatalf("a container in %s reached the metadata service: %s", neo.Name, out)
	}
	f.exec(t, neo, append([]string{"iptables", "-w", "-D", "DOCKER-USER"}, metadataRule...)...)
	t.Cleanup(func() { _, _ = f.c.Docker.Exec(context.Background(), neo.ID, "codelab-agent", "firewall") })
	got, err := fromContainer(url)
	if err != nil || strings.TrimSpace(got) != strconv.Itoa(neo.ID) {
		t.Errorf("without the agent's rule, metadata id from a container in %s = %q (%v), want %d from the local metadata service", neo.Name, got, err, neo.ID)
	}
	if out, err := fromContainer("http://169.254.169.254:8080/"); err == nil {
		t.Errorf("a container reached 169.254.169.254:8080: %s", out)
	}
	if out := f.exec(t, neo, "codelab-agent", "firewall"); !strings.Contains(out, "1 rule added") {
		t.Errorf("codelab-agent firewall after the removal: %q", out)
	}
	if out, err := fromContainer(url); err == nil {
		t.Errorf("after codelab-agent firewall, a container in %s still reached the metadata service: %s", neo.Name, out)
	}
}
