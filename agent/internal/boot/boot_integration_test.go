package boot_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/status"
	"github.com/codelab-app/infra/tools/testenv"
)

// TestBootInSystemdContainer is the done-when scenario: in a
// systemd container made from Debian 12 with Docker, Consul,
// consul-template and the agent installed, codelab-agent.service boots the
// api role from a one-line user_data served by a metadata endpoint; status
// --json reports ready with per-step timings. A second boot restarts
// nothing. With the registry stopped and the image gone, the boot waits
// (status exits 3 naming the registry and its error) and comes up by itself
// once the registry is back. A reboot starts the containers from the
// last rendered env files without waiting for Consul: they are up, and
// compose-up done, while Consul is still without a leader.
func TestBootInSystemdContainer(t *testing.T) {
	testenv.Integration(t, "docker", "consul", "consul-template", "docker-compose")
	gw := testenv.BridgeGateway(t)
	reg := testenv.StartRegistry(t, "127.0.0.1", gw)
	inner := reg.Addrs[1] // what the container pulls from
	tag := fmt.Sprintf("t%d", time.Now().UnixNano())
	digest := testenv.PushImage(t, testenv.Image{Ref: reg.Addrs[0] + "/codelab/api:" + tag})
	testenv.RemoveImage(t, reg.Addrs[0]+"/codelab/api:"+tag)

	agent := testenv.BuildGo(t, "./agent/cmd/codelab-agent")
	c := testenv.StartSystemd(t, testenv.ContainerOptions{Image: testenv.EnsureDockerImage(t), Docker: true})

	// Metadata, served from the host on the bridge.
	var gossip [32]byte
	_, _ = rand.Read(gossip[:])
	line := fmt.Sprintf("#codelab v1 role=api env=prod consul=server bootstrap=1 join=%s gossip=%s registry=%s/codelab version=%s %s",
		c.IP, base64.StdEncoding.EncodeToString(gossip[:]), inner, tag, testenv.ServerTLS)
	meta := map[string]any{
		"droplet_id": 3141592, "hostname": "api-1", "region": "nyc3", "user_data": line,
		"interfaces": map[string]any{"private": []any{map[string]any{"ipv4": map[string]any{"ip_address": c.IP}}}},
	}
	l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	// A reboot (docker restart) may give the container another bridge
	// address: the metadata follows it, as DigitalOcean's would.
	var metaMu sync.Mutex
	setIP := func(ip string) {
		metaMu.Lock()
		defer metaMu.Unlock()
		meta["interfaces"] = map[string]any{"private": []any{map[string]any{"ipv4": map[string]any{"ip_address": ip}}}}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/v1.json" {
			http.NotFound(w, r)
			return
		}
		metaMu.Lock()
		defer metaMu.Unlock()
		_ = json.NewEncoder(w).Encode(meta)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	// Install what the image build installs.
	cache := filepath.Dir(mustLook(t, "consul"))
	c.CopyIn(t, agent, "/usr/local/bin/codelab-agent")
	c.CopyIn(t, filepath.Join(cache, "consul"), "/usr/local/bin/consul")
	c.CopyIn(t, filepath.Join(cache, "consul-template"), "/usr/local/bin/consul-template")
	c.CopyIn(t, mustLook(t, "docker-compose"), "/usr/libexec/docker/cli-plugins/docker-compose")
	for _, u := range []string{"codelab-agent.service", "codelab-firewall.service", "consul.service", "consul-template.service", "codelab-fleet.service", "codelab-fleet.timer"} {
		c.CopyIn(t, filepath.Join(testenv.RepoDir(), "systemd", u), "/etc/systemd/system/"+u)
	}
	// The consul user and the folders install-base.sh creates: the hardened
	// units may write only there (ProtectSystem=strict with ReadWritePaths=).
	c.MustExec(t, "groupadd", "--system", "consul")
	c.MustExec(t, "useradd", "--system", "--gid", "consul", "--home-dir", "/opt/consul", "--no-create-home", "--shell", "/usr/sbin/nologin", "consul")
	c.MustExec(t, "install", "-d", "-m", "0750", "-o", "root", "-g", "consul", "/etc/consul.d")
	c.MustExec(t, "install", "-d", "-m", "0750", "-o", "consul", "-g", "consul", "/opt/consul")
	c.MustExec(t, "install", "-d", "-m", "0755", "/etc/consul-template", "/root/docker", "/etc/codelab")
	c.WriteFile(t, "/etc/systemd/system/codelab-agent.service.d/test.conf",
		[]byte(fmt.Sprintf("[Service]\nEnvironment=CODELAB_METADATA_URL=http://%s/metadata/v1.json\n", l.Addr())), 0o644)
	c.WriteFile(t, "/etc/docker/daemon.json", []byte(fmt.Sprintf(`{"insecure-registries": [%q]}`+"\n", inner)), 0o644)
	c.WriteFile(t, boot.ImageFile, []byte("codelab-api-base-test\n"), 0o644)
	c.MustExec(t, "systemctl", "daemon-reload")
	c.MustExec(t, "systemctl", "enable", "codelab-firewall.service", "consul.service", "consul-template.service", "codelab-agent.service", "codelab-fleet.timer")
	// codelab-firewall.service is RequiredBy= and Before= docker.service:
	// this restart runs it first.
	c.MustExec(t, "systemctl", "restart", "docker.service")
	if got := c.MustExec(t, "systemctl", "is-active", "codelab-firewall.service"); got != "active" {
		t.Fatalf("codelab-firewall.service is %s after docker started", got)
	}
	// metadataRules counts the agent's rules in DOCKER-USER: one IPv4 and
	// four IPv6 rules, however often they were applied.
	metadataRules := func(when string) {
		t.Helper()
		for _, fam := range []struct {
			cmd  string
			want int
		}{{"iptables", 1}, {"ip6tables", 4}} {
			out := c.MustExec(t, fam.cmd, "-w", "-S", "DOCKER-USER")
			if n := strings.Count(out, "--ctorigdst"); n != fam.want || !strings.Contains(out, "-j REJECT") {
				t.Errorf("%s: %s DOCKER-USER holds %d metadata rules, want %d:\n%s", when, fam.cmd, n, fam.want, out)
			}
			if fwd := c.MustExec(t, fam.cmd, "-w", "-S", "FORWARD"); strings.Count(fwd, "-j DOCKER-USER") != 1 {
				t.Errorf("%s: %s FORWARD does not jump to DOCKER-USER once:\n%s", when, fam.cmd, fwd)
			}
		}
	}
	metadataRules("before the first boot")

	startAgent := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		// start/restart returns when the agent sends READY (Type=notify).
		return c.Exec(ctx, "systemctl", "restart", "codelab-agent.service")
	}
	statusJSON := func() (status.Report, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		out, err := exec.CommandContext(ctx, "docker", "exec", c.ID, "codelab-agent", "status", "--json").Output()
		took := time.Since(start)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var r status.Report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if r.SchemaVersion != status.SchemaVersion || r.ExitCode != code {
			t.Errorf("status --json: schemaVersion %d exitCode %d, process exit %d", r.SchemaVersion, r.ExitCode, code)
		}
		t.Logf("status answered in %s: %s", took, r.Summary)
		return r, code
	}
	journal := func() string {
		out, _ := c.Exec(context.Background(), "journalctl", "--no-pager", "-n", "80", "-u", "codelab-agent", "-u", "consul", "-u", "consul-template", "-u", "docker")
		return out
	}

	// 1. First boot: ready, with per-step timings. The role's env template
	// reads Consul KV codelab/prod/api/ and requires some keys there
	// (consul-template blocks until they exist): seed them, as operators
	// do, once Consul is up, in one transaction, so that consul-template
	// sees them all at one index and renders the env file once (keys put
	// one by one could let it render, then render again and recreate the
	// container right after the boot said ready).
	var txn []map[string]any
	for _, kv := range [][2]string{{"GREETING", "hello"}, {"NEO4J_USER", "neo4j"}, {"NEO4J_PASSWORD", "test-password"}} {
		txn = append(txn, map[string]any{"KV": map[string]string{"Verb": "set", "Key": "codelab/prod/api/" + kv[0], "Value": base64.StdEncoding.EncodeToString([]byte(kv[1]))}})
	}
	txnJSON, err := json.Marshal(txn)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteFile(t, "/tmp/kv-txn.json", txnJSON, 0o600)
	// Consul runs with ACLs: writing KV takes the management token (the
	// one the server derives from ca_key), from a header file.
	c.WriteFile(t, "/tmp/kv-token.hdr", []byte("X-Consul-Token: "+testenv.TestManagementToken+"\n"), 0o600)
	c.MustExec(t, "systemctl", "start", "--no-block", "codelab-agent.service")
	seedCtx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		out, err := c.Exec(seedCtx, "curl", "-fsS", "-H", "@/tmp/kv-token.hdr", "-X", "PUT", "--data-binary", "@/tmp/kv-txn.json", "http://127.0.0.1:8500/v1/txn")
		if err == nil {
			break
		}
		if seedCtx.Err() != nil {
			t.Fatalf("seed Consul KV: %v %s\n%s", err, out, journal())
		}
		time.Sleep(500 * time.Millisecond)
	}
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelWait()
	if out, err := c.Exec(waitCtx, "codelab-agent", "status", "--wait", "--timeout", "4m"); err != nil {
		t.Fatalf("first boot: status --wait: %v\n%s\n%s", err, out, journal())
	}
	r, code := statusJSON()
	if code != 0 || r.Overall != status.Ready {
		t.Fatalf("after first boot: exit %d %s: %s\n%+v\n%s", code, r.Overall, r.Summary, r.Problems, journal())
	}
	if r.Role != "api" || r.DropletID != "3141592" || r.Image != "codelab-api-base-test" || r.Boot == nil {
		t.Fatalf("identity: %+v", r)
	}
	for _, s := range r.Boot.Steps {
		if s.Result != boot.OK || s.StartedAt == nil {
			t.Errorf("step %s: %s (started %v)", s.Name, s.Result, s.StartedAt)
		}
	}
	if len(r.Boot.Steps) != 11 || r.Boot.DurationMS <= 0 { // with firewall and consul-acl
		t.Errorf("boot: %d steps, %d ms", len(r.Boot.Steps), r.Boot.DurationMS)
	}
	if len(r.Boot.Images) != 1 || r.Boot.Images[0].Digest != digest || r.Boot.Images[0].Result != "pulled" {
		t.Errorf("images = %+v, want pulled at %s", r.Boot.Images, digest)
	}
	if len(r.Containers) != 1 || r.Containers[0].Health != "healthy" || r.Containers[0].ImageDigest != digest {
		t.Errorf("containers = %+v", r.Containers)
	}
	if !r.Consul.Member || r.Consul.Leader == "" {
		t.Errorf("consul = %+v", r.Consul)
	}
	if got := c.MustExec(t, "systemctl", "show", "-p", "StatusText", "--value", "codelab-agent"); !strings.HasPrefix(got, "ready in") {
		t.Errorf("systemctl StatusText = %q, want the agent's ready line", got)
	}
	// The hardened units run hardened: no new privileges, no core dumps,
	// the root file system read-only but for the unit's ReadWritePaths.
	for _, u := range []string{"consul", "consul-template"} {
		pid := strings.TrimSpace(c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", u))
		got := c.MustExec(t, "sh", "-c", fmt.Sprintf(`grep '^NoNewPrivs:' /proc/%[1]s/status; grep '^Max core' /proc/%[1]s/limits; awk '$5 == "/" {print "root", $6}' /proc/%[1]s/mountinfo`, pid))
		for _, want := range []string{"NoNewPrivs:\t1", "root ro"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s (pid %s) is not hardened: no %q in\n%s", u, pid, want, got)
			}
		}
		if !regexp.MustCompile(`Max core file size\s+0\s+0`).MatchString(got) {
			t.Errorf("%s (pid %s) may dump core:\n%s", u, pid, got)
		}
	}

	// After the boot, codelab-fleet.timer republishes the fleet record with
	// status's summary (the hardened one-shot reads systemd, Docker, Consul
	// and the boot lock); the boot published its own ("ready in ...").
	timerStart := time.Now()
	c.MustExec(t, "systemctl", "start", "codelab-fleet.timer")
	fleetDeadline := time.Now().Add(45 * time.Second)
	for {
		var rec struct {
			State       string    `json:"state"`
			Summary     string    `json:"summary"`
			PublishedAt time.Time `json:"publishedAt"`
		}
		// With the droplet's token (anonymous reads no KV), through standard
		// input, never a command line.
		out, err := c.Exec(context.Background(), "sh", "-c", `printf 'X-Consul-Token: %s' "$(cat /etc/codelab/consul-token)" | curl -fsS -H @- http://127.0.0.1:8500/v1/kv/codelab/_fleet/prod/api-1?raw`)
		if err == nil && json.Unmarshal([]byte(out), &rec) == nil && rec.State == status.Ready && strings.HasPrefix(rec.Summary, "ready: role api") && rec.PublishedAt.After(timerStart) {
			t.Logf("fleet record republished after the boot: %s", out)
			break
		}
		if time.Now().After(fleetDeadline) {
			fj, _ := c.Exec(context.Background(), "journalctl", "--no-pager", "-n", "30", "-u", "codelab-fleet")
			t.Fatalf("no fleet record republished by the timer within 45s: %v %s\n%s", err, out, fj)
		}
		time.Sleep(time.Second)
	}
	if got := c.MustExec(t, "systemctl", "show", "-p", "Result", "--value", "codelab-fleet.service"); got != "success" {
		fj, _ := c.Exec(context.Background(), "journalctl", "--no-pager", "-n", "30", "-u", "codelab-fleet")
		t.Errorf("codelab-fleet.service result %q\n%s", got, fj)
	}
	// The metadata service is closed to containers, and status says so.
	for _, st := range r.Boot.Steps {
		if st.Name == boot.StepFirewall && st.Detail != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), rules already in place" {
			t.Errorf("firewall step: %s %q", st.Result, st.Detail)
		}
	}
	metadataRules("after the first boot")
	// Consul runs as consul, from files that are consul's (secrets 0600).
	consulPID := strings.TrimSpace(c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", "consul"))
	if got := c.MustExec(t, "ps", "-o", "user=,group=", "-p", consulPID); strings.Join(strings.Fields(got), ":") != "consul:consul" {
		t.Errorf("consul (pid %s) runs as %q, want consul:consul", consulPID, got)
	}
	for _, f := range []string{"consul.hcl 640", "encrypt.hcl 600", "join.hcl 600", "service-api.hcl 640"} {
		name, mode, _ := strings.Cut(f, " ")
		if got := c.MustExec(t, "stat", "-c", "%U:%G %a", "/etc/consul.d/"+name); got != "consul:consul "+mode {
			t.Errorf("/etc/consul.d/%s is %s, want consul:consul %s", name, got, mode)
		}
	}
	if got := c.MustExec(t, "sh", "-c", "find /opt/consul ! -user consul | head -5"); got != "" {
		t.Errorf("files in Consul's data folder not owned by consul:\n%s", got)
	}

	// The env file consul-template rendered reached the container.
	env := c.MustExec(t, "curl", "-fsS", "http://127.0.0.1:3000/env")
	if !strings.Contains(env, `"CODELAB_ENV":"prod"`) || !strings.Contains(env, `"GREETING":"hello"`) {
		t.Errorf("container env = %s", env)
	}
	// The state file on disk is the one status read.
	var st boot.State
	if err := json.Unmarshal([]byte(c.MustExec(t, "cat", boot.StateFile)), &st); err != nil || st.Result != boot.BootReady {
		t.Fatalf("state file: %v %+v", err, st)
	}
	if mode := c.MustExec(t, "stat", "-c", "%a", boot.StateFile); mode != "600" {
		t.Errorf("state file mode %s", mode)
	}

	// 2. Second boot: nothing restarts, nothing is recreated, nothing re-pulled.
	pids := func() string {
		return c.MustExec(t, "systemctl", "show", "-p", "MainPID", "--value", "consul", "consul-template", "docker") +
			" " + c.MustExec(t, "docker", "ps", "-q", "--no-trunc")
	}
	before := pids()
	if out, err := startAgent(); err != nil {
		t.Fatalf("second boot failed: %v\n%s\n%s", err, out, journal())
	}
	if after := pids(); after != before {
		t.Errorf("second boot restarted something:\nbefore %s\nafter  %s", before, after)
	}
	r, code = statusJSON()
	if code != 0 {
		t.Fatalf("after second boot: exit %d: %s", code, r.Summary)
	}
	want := map[string]string{
		boot.StepRegistryLogin: string(boot.Skipped),
		boot.StepUnits:         "consul unchanged, consul-template unchanged",
		boot.StepPullImages:    "1 images: 0 pulled, 1 already present",
	}
	for _, s := range r.Boot.Steps {
		if w, ok := want[s.Name]; ok && w != string(s.Result) && w != s.Detail {
			t.Errorf("second boot, step %s: %s %q, want %q", s.Name, s.Result, s.Detail, w)
		}
	}

	// 3. Registry stopped, image gone: the boot waits for the registry
	// (status: booting, naming the registry and its error), and recovers
	// by itself once the registry is back: no reboot, no operator.
	c.MustExec(t, "docker", "compose", "-p", "api", "-f", "/root/docker/api/compose.yaml", "down", "-t", "1")
	c.MustExec(t, "docker", "image", "rm", inner+"/codelab/api:"+tag)
	reg.Stop()
	c.MustExec(t, "systemctl", "restart", "--no-block", "codelab-agent.service")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r, code = statusJSON()
		if r.Overall == status.Booting && strings.Contains(r.Summary, "waiting for the registry") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry stopped: exit %d %s: %s; want booting, waiting for the registry\n%s", code, r.Overall, r.Summary, journal())
		}
		time.Sleep(time.Second)
	}
	if code != 3 || r.StepResult(boot.StepPullImages) != boot.Running || r.StepResult(boot.StepConsulReady) != boot.OK {
		t.Errorf("registry stopped: exit %d, steps: pull %s consul %s", code, r.StepResult(boot.StepPullImages), r.StepResult(boot.StepConsulReady))
	}
	if !strings.Contains(r.Summary, inner) {
		t.Errorf("summary %q should name the registry", r.Summary)
	}
	if len(r.Problems) == 0 || r.Problems[0].Hint != "docker pull "+inner+"/codelab/api:"+tag || !strings.Contains(r.Problems[0].Error, "connection refused") {
		t.Errorf("problems = %+v, want the registry's error and the pull to reproduce it", r.Problems)
	}
	back := time.Now()
	reg.Restart(t)
	waitCtx2, cancelWait2 := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancelWait2()
	if out, err := c.Exec(waitCtx2, "codelab-agent", "status", "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("registry back: status --wait: %v\n%s\n%s", err, out, journal())
	}
	t.Logf("registry back: ready %s later", time.Since(back).Round(time.Second))
	r, code = statusJSON()
	if code != 0 || r.Overall != status.Ready || r.StepResult(boot.StepPullImages) != boot.OK {
		t.Fatalf("registry back: exit %d %s: %s", code, r.Overall, r.Summary)
	}
	if got := c.MustExec(t, "systemctl", "show", "-p", "ActiveState", "--value", "codelab-agent"); got != "active" {
		t.Errorf("codelab-agent.service is %s after recovering, want active", got)
	}

	// 4. Three boots later the rules are still there once each. A restart
	// of docker.service keeps them (dockerd never flushes DOCKER-USER) and
	// runs codelab-firewall.service again first (PartOf=), which puts back
	// a rule removed meanwhile.
	metadataRules("after three boots")
	c.MustExec(t, "iptables", "-w", "-D", "DOCKER-USER", "-m", "conntrack", "--ctorigdst", "169.254.169.254/32",
		"-m", "comment", "--comment", "codelab: containers never reach the metadata service", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
	c.MustExec(t, "systemctl", "restart", "docker.service")
	metadataRules("after a docker restart")

	// 4. Reboots. The container restarts (a new kernel boot for systemd,
	// /run emptied, /var/lib/docker kept); the agent's unit starts after
	// docker.service.
	reboot := func(label string) (boot.State, time.Duration) {
		t.Helper()
		start := time.Now()
		testenv.Run(t, "docker", "restart", "-t", "10", c.ID)
		setIP(testenv.Run(t, "docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", c.ID))
		// The container shares the host's kernel (and boot_id): the boot
		// of this reboot is the one that started after the restart.
		for {
			r, _ := statusJSON()
			if r.Boot != nil && r.Boot.StartedAt.After(start) && r.Overall == status.Ready {
				break
			}
			if time.Since(start) > 4*time.Minute {
				t.Fatalf("%s: not ready: %s\n%s", label, r.Summary, journal())
			}
			time.Sleep(500 * time.Millisecond)
		}
		took := time.Since(start)
		var st boot.State
		if err := json.Unmarshal([]byte(c.MustExec(t, "cat", boot.StateFile)), &st); err != nil {
			t.Fatal(err)
		}
		return st, took
	}
	composeDone := func(st boot.State) time.Duration {
		cs, _ := st.Step(boot.StepComposeUp)
		if cs.StartedAt == nil {
			return 0
		}
		return cs.StartedAt.Add(time.Duration(cs.DurationMS) * time.Millisecond).Sub(st.StartedAt)
	}
	// 4a. The first-boot path on a reboot (no record of a completed boot):
	// compose-up waits for a Consul leader and the env files.
	c.MustExec(t, "rm", "-f", boot.CompletedFile)
	slowSt, slowTook := reboot("reboot without a completed boot")
	if cs, _ := slowSt.Step(boot.StepComposeUp); cs.Detail == boot.FromLastEnvDetail {
		t.Errorf("reboot without a completed boot took the fast path")
	}
	// 4b. A reboot: compose-up starts from the last rendered env files.
	fastSt, fastTook := reboot("reboot")
	if cs, _ := fastSt.Step(boot.StepComposeUp); cs.Detail != boot.FromLastEnvDetail {
		t.Errorf("reboot: compose-up detail %q, want %q", cs.Detail, boot.FromLastEnvDetail)
	}
	for _, st := range []boot.State{slowSt, fastSt} {
		var line []string
		for _, s := range st.Steps {
			if s.StartedAt != nil {
				line = append(line, fmt.Sprintf("%s +%s %dms", s.Name, s.StartedAt.Sub(st.StartedAt).Round(10*time.Millisecond), s.DurationMS))
			}
		}
		t.Logf("reboot steps: %s", strings.Join(line, ", "))
	}
	t.Logf("reboot, first-boot path: compose-up done +%s, boot ready in %s (agent), %s from docker restart to status ready",
		composeDone(slowSt).Round(10*time.Millisecond), time.Duration(slowSt.DurationMS)*time.Millisecond, slowTook.Round(100*time.Millisecond))
	t.Logf("reboot, from the last env files: compose-up done +%s, boot ready in %s (agent), %s from docker restart to status ready",
		composeDone(fastSt).Round(10*time.Millisecond), time.Duration(fastSt.DurationMS)*time.Millisecond, fastTook.Round(100*time.Millisecond))

	// 4c. A reboot while Consul cannot have a leader yet (it starts 25 s
	// late): the containers are up and compose-up is done before it has.
	c.WriteFile(t, "/etc/systemd/system/consul.service.d/late.conf", []byte("[Service]\nExecStartPre=/bin/sleep 25\n"), 0o644)
	c.MustExec(t, "systemctl", "daemon-reload")
	start := time.Now()
	testenv.Run(t, "docker", "restart", "-t", "10", c.ID)
	setIP(testenv.Run(t, "docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", c.ID))
	for {
		r, _ = statusJSON()
		if r.Boot != nil && r.Boot.StartedAt.After(start) && r.StepResult(boot.StepComposeUp) == boot.OK {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("reboot with Consul late: compose-up not done: %s\n%s", r.Summary, journal())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("reboot with Consul late: compose-up done %s after docker restart, consul-ready %s, leader %q",
		time.Since(start).Round(100*time.Millisecond), r.StepResult(boot.StepConsulReady), r.Consul.Leader)
	if r.StepResult(boot.StepConsulReady) == boot.OK || r.Consul.Leader != "" {
		t.Errorf("compose-up done only once Consul had a leader (consul-ready %s, leader %q)", r.StepResult(boot.StepConsulReady), r.Consul.Leader)
	}
	if len(r.Containers) != 1 || r.Containers[0].State != "running" || r.Containers[0].Health != "healthy" {
		t.Errorf("containers before Consul's leader = %+v, want the api container running and healthy", r.Containers)
	}
	if r.Overall != status.Booting || r.ExitCode != 3 {
		t.Errorf("status while Consul is late: %s (exit %d): %s; want booting", r.Overall, r.ExitCode, r.Summary)
	}
	ctx, cancelLate := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancelLate()
	if out, err := c.Exec(ctx, "codelab-agent", "status", "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("reboot with Consul late: status --wait: %v\n%s\n%s", err, out, journal())
	}
	if r, _ = statusJSON(); r.Overall != status.Ready || !r.Boot.StartedAt.After(start) {
		t.Errorf("reboot with Consul late: %s: %s, want this boot ready", r.Overall, r.Summary)
	}
	if env := c.MustExec(t, "curl", "-fsS", "http://127.0.0.1:3000/env"); !strings.Contains(env, `"GREETING":"hello"`) {
		t.Errorf("container env after the reboots = %s", env)
	}
}

func mustLook(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("integration prerequisite missing: %s (make deps)", name)
	}
	return p
}
