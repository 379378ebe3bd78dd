// Package bootbench measures boot-to-ready on the local DigitalOcean, four
// ways, in one run, on the same droplet size, app image and cluster:
//
//  1. the old way, as a bash init script does it: start Consul, wait for a
//     leader, `docker compose pull`, then `up -d --wait`;
//  2. the agent on codelab-services-base (it pulls);
//  3. the agent on codelab-api-base (the images are baked);
//  4. a reboot of (3).
//
// The app image is realistic (Options.ImageMB of incompressible data in
// Options.Layers layers), pushed as api:<Options.Version>, and the registry
// link of each measured droplet is throttled to Options.Rate with tc inside
// the droplet's own network namespace (ingress redirected to an ifb device,
// shaped by tbf). Times 2-4 are the agent's own (state.json: from its start
// to ready); time 1 is the script's, from its first command to `up --wait`
// returning. Measurements 1 and 2 run on one droplet made from the services
// base, 3 and 4 on one made from the api base; before 1, 2 and 3 the droplet
// is put back to a first boot (the role's containers, env files, state and
// Consul stopped; the images removed for 1 and 2), so the throttle, set
// after the droplet's creation, covers the pulls measured.
package bootbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
	"github.com/digitalocean/godo"
)

// Options shape the benchmark.
type Options struct {
	// Version is the app image tag the benchmark pushes and bakes (default "bench").
	Version string
	// ImageMB and Layers make the app image (default 160 MB in 4 layers).
	ImageMB, Layers int
	// Rate is the tc rate of the registry link (default "100mbit").
	Rate string
	Out  io.Writer
}

func (o *Options) defaults() {
	if o.Version == "" {
		o.Version = "bench"
	}
	if o.ImageMB == 0 {
		o.ImageMB = 160
	}
	if o.Layers == 0 {
		o.Layers = 4
	}
	if o.Rate == "" {
		o.Rate = "100mbit"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

// Role is the role the benchmark boots: the one with a service image.
const Role = "api"

// Run is one measured boot.
type Run struct {
	Name  string
	Total time.Duration
	// Own is the agent's own work: Total minus the time in which it waited
	// on Docker, Consul, the registry or health checks (the union of the
	// docker, units, consul-ready, pull-images and compose-up steps).
	// Zero for the old way.
	Own time.Duration
	// CPU is the CPU time of the agent and the programs it ran (validators,
	// docker compose) for the boot, OwnCPU the agent's alone (state.json).
	CPU, OwnCPU time.Duration
	// Pulls is how many requests the registry logged from the droplet.
	Pulls int
	// Detail is pull-images' detail line from state.json.
	Detail string
}

// Result holds the four runs.
type Result struct {
	OldWay, Pulling, Baked, Reboot Run
	ImageBytes                     int64
}

// Ratio is r's total against the old way's.
func (r Result) Ratio(x Run) float64 {
	if r.OldWay.Total == 0 {
		return 0
	}
	return float64(x.Total) / float64(r.OldWay.Total)
}

// Targets are the issue's.
const (
	TargetBaked   = 0.3
	TargetPulling = 0.8
	TargetOwn     = time.Second
)

// Misses returns the targets r misses, empty when it meets them all.
func (r Result) Misses() []string {
	var out []string
	if x := r.Ratio(r.Baked); x > TargetBaked {
		out = append(out, fmt.Sprintf("(3) baked is %.2fx the old way, target at most %.1fx", x, TargetBaked))
	}
	if x := r.Ratio(r.Pulling); x > TargetPulling {
		out = append(out, fmt.Sprintf("(2) pulling is %.2fx the old way, target at most %.1fx", x, TargetPulling))
	}
	for _, x := range []Run{r.Pulling, r.Baked, r.Reboot} {
		if x.Own > TargetOwn {
			out = append(out, fmt.Sprintf("%s: the agent's own work is %s, target at most %s", x.Name, x.Own, TargetOwn))
		}
	}
	if r.Baked.Pulls != 0 {
		out = append(out, fmt.Sprintf("(3) baked: the registry logged %d requests from the droplet, want none", r.Baked.Pulls))
	}
	return out
}

// Print writes the table.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "boot-to-ready, %s app image of %d MB, registry link throttled; ratio against (1):\n", Role, r.ImageBytes>>20)
	for _, x := range []Run{r.OldWay, r.Pulling, r.Baked, r.Reboot} {
		own, cpu := "-", "-"
		if x.Name != r.OldWay.Name {
			own = x.Own.Round(time.Millisecond).String()
			cpu = fmt.Sprintf("%s (+%s children)", x.OwnCPU.Round(time.Millisecond), (x.CPU - x.OwnCPU).Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  %-38s %8s  %5.2fx  agent own work %-7s agent CPU %-26s registry requests %d\n",
			x.Name, x.Total.Round(10*time.Millisecond), r.Ratio(x), own, cpu, x.Pulls)
	}
}

// Bench runs the benchmark on a running cluster.
type Bench struct {
	C    *cluster.Cluster
	Opts Options
	// made is what the benchmark created, removed by Close.
	droplets []*cluster.Node
	images   []int
}

// Close deletes the benchmark's droplets and its api-base snapshot, so the
// cluster's own newest images are what they were.
func (b *Bench) Close(ctx context.Context) error {
	var errs []error
	for _, n := range b.droplets {
		errs = append(errs, b.C.Delete(ctx, n))
	}
	for _, id := range b.images {
		if _, err := b.C.DO.Images.Delete(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("delete the benchmark's snapshot %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (b *Bench) logf(format string, args ...any) {
	fmt.Fprintf(b.Opts.Out, "    "+format+"\n", args...)
}

// Run measures the four boots.
func (b *Bench) Run(ctx context.Context) (Result, error) {
	b.Opts.defaults()
	var r Result
	size, err := b.pushImage(ctx)
	if err != nil {
		return r, err
	}
	r.ImageBytes = size
	snap, err := b.buildServiceImage(ctx)
	if err != nil {
		return r, err
	}

	pulling, err := b.create(ctx, Role+"-bench-pull", "services-base", 0)
	if err != nil {
		return r, err
	}
	baked, err := b.create(ctx, Role+"-bench-baked", "", snap)
	if err != nil {
		return r, err
	}
	for _, n := range []*cluster.Node{pulling, baked} {
		if _, err := b.C.WaitReady(ctx, n, 10*time.Minute, time.Time{}); err != nil {
			return r, fmt.Errorf("the benchmark droplet's first boot: %w", err)
		}
		if err := b.throttle(ctx, n); err != nil {
			return r, err
		}
	}

	if r.OldWay, err = b.oldWay(ctx, pulling); err != nil {
		return r, err
	}
	if r.Pulling, err = b.agentBoot(ctx, pulling, "(2) agent, services base (pulling)", true); err != nil {
		return r, err
	}
	if r.Baked, err = b.agentBoot(ctx, baked, "(3) agent, api base (baked)", false); err != nil {
		return r, err
	}
	if r.Reboot, err = b.reboot(ctx, baked, "(4) reboot of (3)"); err != nil {
		return r, err
	}
	return r, nil
}

// pushImage builds the realistic app image (the cluster's test app plus
// layers of random bytes) and pushes it as api:<Version>.
func (b *Bench) pushImage(ctx context.Context) (int64, error) {
	dir, err := os.MkdirTemp("", "codelab-bootbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := b.cmd(ctx, []string{"CGO_ENABLED=0"}, "go", "build", "-C", b.C.Opts.Repo, "-trimpath", "-o", filepath.Join(dir, "app"), "./tools/cmd/codelab-testapp"); err != nil {
		return 0, err
	}
	var df strings.Builder
	df.WriteString("FROM scratch\n")
	per := int64(b.Opts.ImageMB) << 20 / int64(b.Opts.Layers)
	var total int64
	for i := range b.Opts.Layers {
		name := fmt.Sprintf("layer-%d.bin", i)
		if err := randomFile(filepath.Join(dir, name), per); err != nil {
			return 0, err
		}
		total += per
		fmt.Fprintf(&df, "COPY %s /opt/app/%s\n", name, name)
	}
	df.WriteString("COPY app /app\nENV PORT=3000 ROLE=api\nEXPOSE 3000\nENTRYPOINT [\"/app\"]\n")
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df.String()), 0o644); err != nil {
		return 0, err
	}
	ref := fmt.Sprintf("%s/%s:%s", b.C.Info.RegistryPush, Role, b.Opts.Version)
	if err := b.cmd(ctx, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", ref, dir); err != nil {
		return 0, err
	}
	if err := b.cmd(ctx, nil, "docker", "push", "-q", ref); err != nil {
		return 0, err
	}
	b.logf("pushed %s (%d MB in %d layers of random bytes, plus the app)", ref, total>>20, b.Opts.Layers)
	return total, nil
}

func randomFile(p string, n int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// buildServiceImage bakes codelab-api-base with the benchmark's version and
// returns the snapshot's id.
func (b *Bench) buildServiceImage(ctx context.Context) (int, error) {
	start := time.Now()
	args := b.C.BuildArgs(Role)
	for i := range args {
		if args[i] == "--version" && i+1 < len(args) {
			args[i+1] = b.Opts.Version
		}
	}
	out, err := b.C.Imager(ctx, args...)
	if err != nil {
		return 0, fmt.Errorf("imager build %s --version %s: %w\n%s", Role, b.Opts.Version, err, out)
	}
	imgs, _, err := b.C.DO.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		return 0, err
	}
	prefix := "codelab-" + Role + "-base-"
	var newest *godo.Image
	for i, im := range imgs {
		if strings.HasPrefix(im.Name, prefix) && (newest == nil || im.Created > newest.Created || (im.Created == newest.Created && im.ID > newest.ID)) {
			newest = &imgs[i]
		}
	}
	if newest == nil {
		return 0, fmt.Errorf("imager build %s made no %s* snapshot:\n%s", Role, prefix, out)
	}
	b.images = append(b.images, newest.ID)
	b.logf("baked %s in %s", newest.Name, time.Since(start).Round(time.Second))
	return newest.ID, nil
}

// create makes a droplet of Role. Its name starts with "<role>-": the role's
// Consul token may write only nodes named so.
func (b *Bench) create(ctx context.Context, name, family string, imageID int) (*cluster.Node, error) {
	n, err := b.C.CreateExtra(ctx, cluster.Extra{
		Spec:    cluster.NodeSpec{Name: name, Role: Role, Image: family, Consul: "client", Port: 0},
		ImageID: imageID, Version: b.Opts.Version,
	})
	if err != nil {
		return nil, err
	}
	b.droplets = append(b.droplets, n)
	return n, nil
}

// throttle shapes what the droplet receives from the registry to Rate,
// inside the droplet's own network namespace: the interface's ingress is
// redirected to an ifb device whose egress a tbf shapes, for packets from
// the registry's address and port only.
func (b *Bench) throttle(ctx context.Context, n *cluster.Node) error {
	host, port, ok := strings.Cut(b.C.Info.RegistryPull, ":")
	if !ok {
		return fmt.Errorf("registry address %q has no port", b.C.Info.RegistryPull)
	}
	pid, err := b.output(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", b.C.Docker.ContainerName(n.ID))
	if err != nil {
		return err
	}
	pid = strings.TrimSpace(pid)
	ns := func(args ...string) error {
		return b.cmd(ctx, nil, "nsenter", append([]string{"-t", pid, "-n"}, args...)...)
	}
	// The interface whose address the droplet reaches the registry from.
	route, err := b.output(ctx, "nsenter", "-t", pid, "-n", "ip", "-o", "route", "get", host)
	if err != nil {
		return err
	}
	f := strings.Fields(route)
	dev := ""
	for i := range f {
		if f[i] == "dev" && i+1 < len(f) {
			dev = f[i+1]
		}
	}
	if dev == "" {
		return fmt.Errorf("no route to the registry %s in %s: %s", host, n.Name, route)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "ifb-bench", "type", "ifb"},
		{"ip", "link", "set", "ifb-bench", "up"},
		{"tc", "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress"},
		{"tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "ip", "u32",
			"match", "ip", "src", host + "/32", "match", "ip", "sport", port, "0xffff",
			"action", "mirred", "egress", "redirect", "dev", "ifb-bench"},
		{"tc", "qdisc", "add", "dev", "ifb-bench", "root", "tbf", "rate", b.Opts.Rate, "burst", "256kb", "latency", "100ms"},
	} {
		if err := ns(c...); err != nil {
			return fmt.Errorf("throttle the registry link of %s: %w", n.Name, err)
		}
	}
	b.logf("%s: registry %s throttled to %s on %s (in the droplet's network namespace)", n.Name, b.C.Info.RegistryPull, b.Opts.Rate, dev)
	return nil
}

const (
	composeFile = "/root/docker/" + Role + "/compose.yaml"
	envFile     = "/root/docker/" + Role + "/" + Role + ".env"
	savedEnv    = "/root/bootbench-" + Role + ".env"
	oldCompose  = "/root/bootbench-old-compose.yaml"
	stateFile   = "/var/lib/codelab/state.json"
)

// reset puts a droplet back to the state a first boot meets: the agent's
// unit, consul-template and Consul stopped, the role's containers removed
// (volumes kept), the env files and the state file gone, and with
// removeImages the role's images removed too.
func (b *Bench) reset(ctx context.Context, n *cluster.Node, removeImages bool) error {
	script := `set -eu
systemctl stop codelab-agent.service consul-template.service
docker compose -p ` + Role + ` -f ` + composeFile + ` down --remove-orphans >/dev/null 2>&1
[ -f ` + envFile + ` ] && cp -p ` + envFile + ` ` + savedEnv + `
rm -f /root/docker/` + Role + `/*.env ` + stateFile + ` /var/lib/codelab/completed.json /var/lib/codelab/restart-pending
systemctl stop consul.service
`
	if removeImages {
		script += `docker compose -p ` + Role + ` -f ` + composeFile + ` config --images | xargs -r docker image rm -f >/dev/null
docker image prune -f >/dev/null
`
	}
	if _, err := b.C.Docker.Exec(ctx, n.ID, "bash", "-c", script); err != nil {
		return fmt.Errorf("reset %s to a first boot: %w", n.Name, err)
	}
	return nil
}

// oldWay is (1): what a bash init script does, timed inside the droplet.
func (b *Bench) oldWay(ctx context.Context, n *cluster.Node) (Run, error) {
	run := Run{Name: "(1) old way (bash: consul, pull, up)"}
	if err := b.reset(ctx, n, true); err != nil {
		return run, err
	}
	before, err := b.registryRequests(n)
	if err != nil {
		return run, err
	}
	// The env file the old scripts wrote from KV is put back as it was:
	// its rendering is left out of the old way's time. The Compose file is
	// the role's as the old setup had it: without start_interval, so
	// Docker runs the first health check one interval after the start.
	script := `set -eu
sed '/start_interval:/d' ` + composeFile + ` > ` + oldCompose + `
t0=$(date +%s%N)
systemctl start consul.service
until [ -n "$(curl -fsS http://127.0.0.1:8500/v1/status/leader 2>/dev/null | tr -d '"')" ]; do sleep 0.25; done
cp -p ` + savedEnv + ` ` + envFile + `
docker compose -p ` + Role + ` -f ` + oldCompose + ` pull -q
docker compose -p ` + Role + ` -f ` + oldCompose + ` up -d --wait >/dev/null 2>&1
t1=$(date +%s%N)
echo $((t1 - t0))
`
	out, err := b.C.Docker.Exec(ctx, n.ID, "bash", "-c", script)
	if err != nil {
		return run, fmt.Errorf("the old way on %s: %w", n.Name, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return run, fmt.Errorf("the old way on %s printed %q", n.Name, out)
	}
	run.Total = time.Duration(ns)
	after, err := b.registryRequests(n)
	if err != nil {
		return run, err
	}
	run.Pulls = after - before
	b.logf("%s: %s", run.Name, run.Total.Round(10*time.Millisecond))
	return run, nil
}

// agentBoot resets n to a first boot and starts the agent's unit again.
func (b *Bench) agentBoot(ctx context.Context, n *cluster.Node, name string, removeImages bool) (Run, error) {
	run := Run{Name: name}
	if err := b.reset(ctx, n, removeImages); err != nil {
		return run, err
	}
	before, err := b.registryRequests(n)
	if err != nil {
		return run, err
	}
	since := time.Now()
	if _, err := b.C.Docker.Exec(ctx, n.ID, "systemctl", "start", "--no-block", "codelab-agent.service"); err != nil {
		return run, fmt.Errorf("start the agent on %s: %w", n.Name, err)
	}
	return b.measure(ctx, n, run, since, before)
}

// reboot is (4): DigitalOcean's reboot action on n.
func (b *Bench) reboot(ctx context.Context, n *cluster.Node, name string) (Run, error) {
	run := Run{Name: name}
	before, err := b.registryRequests(n)
	if err != nil {
		return run, err
	}
	since := time.Now()
	a, _, err := b.C.DO.DropletActions.Reboot(ctx, n.ID)
	if err != nil {
		return run, fmt.Errorf("reboot %s: %w", n.Name, err)
	}
	for {
		got, _, err := b.C.DO.Actions.Get(ctx, a.ID)
		if err != nil || got.Status == "errored" {
			return run, fmt.Errorf("reboot %s: %+v %v", n.Name, got, err)
		}
		if got.Status == godo.ActionCompleted {
			break
		}
		select {
		case <-ctx.Done():
			return run, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return b.measure(ctx, n, run, since, before)
}

func (b *Bench) measure(ctx context.Context, n *cluster.Node, run Run, since time.Time, before int) (Run, error) {
	st, err := b.C.WaitReady(ctx, n, 10*time.Minute, since)
	if err != nil {
		return run, fmt.Errorf("%s: %w", run.Name, err)
	}
	run.Total = time.Duration(st.Boot.DurationMs) * time.Millisecond
	raw, err := b.C.Docker.Exec(ctx, n.ID, "cat", stateFile)
	if err != nil {
		return run, err
	}
	var s agentState
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return run, fmt.Errorf("%s: read %s: %w", n.Name, stateFile, err)
	}
	run.Own = s.own()
	for _, st := range s.Steps {
		if st.Name == "pull-images" {
			run.Detail = st.Detail
		}
	}
	run.CPU = time.Duration(s.CPUMS+s.ChildCPUMS) * time.Millisecond
	run.OwnCPU = time.Duration(s.CPUMS) * time.Millisecond
	after, err := b.registryRequests(n)
	if err != nil {
		return run, err
	}
	run.Pulls = after - before
	b.logf("%s: %s (own work %s, CPU %s; pull-images: %s)", run.Name, run.Total.Round(10*time.Millisecond),
		run.Own.Round(time.Millisecond), run.OwnCPU, run.Detail)
	return run, nil
}

// agentState is the part of state.json the benchmark reads.
type agentState struct {
	StartedAt  time.Time `json:"startedAt"`
	DurationMS int64     `json:"durationMs"`
	CPUMS      int64     `json:"cpuMs"`
	ChildCPUMS int64     `json:"childCpuMs"`
	Steps      []struct {
		Name       string     `json:"name"`
		StartedAt  *time.Time `json:"startedAt"`
		DurationMS int64      `json:"durationMs"`
		Detail     string     `json:"detail"`
	} `json:"steps"`
}

// waitSteps are the steps that wait on Docker, Consul, the registry or
// health checks.
var waitSteps = map[string]bool{"docker": true, "units": true, "consul-ready": true, "pull-images": true, "compose-up": true}

// own is the boot's duration minus the union of the waiting steps'
// intervals.
func (s agentState) own() time.Duration {
	type iv struct{ a, b time.Time }
	var ivs []iv
	for _, st := range s.Steps {
		if waitSteps[st.Name] && st.StartedAt != nil {
			ivs = append(ivs, iv{*st.StartedAt, st.StartedAt.Add(time.Duration(st.DurationMS) * time.Millisecond)})
		}
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].a.Before(ivs[j].a) })
	var waited time.Duration
	var cur iv
	for i, x := range ivs {
		switch {
		case i == 0:
			cur = x
		case !x.a.After(cur.b):
			if x.b.After(cur.b) {
				cur.b = x.b
			}
		default:
			waited += cur.b.Sub(cur.a)
			cur = x
		}
	}
	if len(ivs) > 0 {
		waited += cur.b.Sub(cur.a)
	}
	total := time.Duration(s.DurationMS) * time.Millisecond
	if waited > total {
		return 0
	}
	return total - waited
}

// registryRequests counts the requests the pull-side registry logged from
// the droplet's public address (droplets reach the registry there).
func (b *Bench) registryRequests(n *cluster.Node) (int, error) {
	f, err := os.Open(filepath.Join(b.C.Opts.StateDir(), "registry", "registry-1.log"))
	if err != nil {
		return 0, fmt.Errorf("the registry's log: %w", err)
	}
	defer f.Close()
	count := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := n.PublicIP + " "
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			count++
		}
	}
	return count, sc.Err()
}

func (b *Bench) cmd(ctx context.Context, env []string, name string, args ...string) error {
	_, err := b.run(ctx, env, name, args...)
	return err
}

func (b *Bench) output(ctx context.Context, name string, args ...string) (string, error) {
	return b.run(ctx, nil, name, args...)
}

func (b *Bench) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), env...)
	out, err := c.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
