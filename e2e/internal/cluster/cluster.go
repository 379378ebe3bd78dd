// Package cluster boots a codelab cluster on the local DigitalOcean: it starts localdo
// (with its registry), pushes the application images (FROM scratch, from the repo's Go
// test servers), runs `imager build all` against it, creates the droplets from the
// snapshots with one-line user_data, and waits for `codelab-agent status --wait` on
// each. `make demo` and the end-to-end suite (`make e2e`) both use it.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/codelab-app/infra/internal/clustersec"
	"github.com/codelab-app/infra/roles"
	"github.com/digitalocean/godo"
)

// Options configure a cluster.
type Options struct {
	Repo     string // repository root
	Cache    string // $CODELAB_CACHE
	BinDir   string // where localdo, imager and codelab-agent are (make build; bin/)
	Instance string // local DigitalOcean instance (default "demo")
	Addr     string // its API address (default 127.0.0.1:8765)
	Version  string // application image tag (default "demo")
	Env      string // user_data env= (default "demo")
	Region   string // default nyc3
	// ForceBuild passes --force to imager build.
	ForceBuild bool
	// StatusTimeout bounds `codelab-agent status --wait` per droplet (default 15m).
	StatusTimeout time.Duration
	Out           io.Writer // progress lines
}

func (o *Options) defaults() {
	if o.Instance == "" {
		o.Instance = "demo"
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8765"
	}
	if o.Version == "" {
		o.Version = "demo"
	}
	if o.Env == "" {
		o.Env = "demo"
	}
	if o.Region == "" {
		o.Region = "nyc3"
	}
	if o.StatusTimeout == 0 {
		o.StatusTimeout = 15 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Cache == "" {
		o.Cache = os.Getenv("CODELAB_CACHE")
		if o.Cache == "" {
			home, _ := os.UserHomeDir()
			o.Cache = filepath.Join(home, ".cache", "codelab")
		}
	}
}

// StateDir is the local DigitalOcean's state folder for an instance.
func (o *Options) StateDir() string {
	return filepath.Join(o.Cache, "localdo", o.Instance)
}

// NodeSpec is one droplet of the cluster.
type NodeSpec struct {
	Name   string
	Role   string
	Image  string // image family: services-base, neo4j-base or a service image (api-base, ...)
	Consul string // server or client
	Port   int    // the role's application port (0: none published)
}

// Plan is the demo cluster: three Consul servers (neo4j among them), api and web clients.
// api and web boot from their service images (their containers baked in), landing and
// sites from the services base (they pull).
var Plan = []NodeSpec{
	{Name: "neo4j-1", Role: "neo4j", Image: "neo4j-base", Consul: "server"},
	{Name: "landing-1", Role: "landing", Image: "services-base", Consul: "server", Port: 3002},
	{Name: "sites-1", Role: "sites", Image: "services-base", Consul: "server", Port: 3003},
	{Name: "api-1", Role: "api", Image: "api-base", Consul: "client", Port: 3000},
	{Name: "web-1", Role: "web", Image: "web-base", Consul: "client", Port: 3001},
}

// Node is a booted droplet.
type Node struct {
	NodeSpec
	ID        int
	PublicIP  string
	PrivateIP string
	// Ready is how long `status --wait` took after the droplet was created.
	Ready time.Duration
}

// Cluster is a running cluster.
type Cluster struct {
	Opts    Options
	Info    localdo.Info
	DO      *godo.Client
	Docker  *droplets.Docker
	Nodes   []*Node
	Timings []Timing
	// Spaces is the local S3 server the neo4j backups go to.
	Spaces *Spaces

	ca clustersec.CA // the Consul CA, key included (ca.go)
}

// Timing is the wall time of one step of Up.
type Timing struct {
	Step     string
	Duration time.Duration
}

func (c *Cluster) step(name string, fn func() error) error {
	fmt.Fprintf(c.Opts.Out, "==> %s\n", name)
	start := time.Now()
	err := fn()
	d := time.Since(start).Round(time.Millisecond)
	c.Timings = append(c.Timings, Timing{name, d})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(c.Opts.Out, "    done in %s\n", d)
	return nil
}

// Up starts (or reuses) everything and returns the running cluster.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	o.defaults()
	c := &Cluster{Opts: o, Docker: &droplets.Docker{Instance: o.Instance}}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"start the local DigitalOcean", c.startLocalDO},
		{"start the local Spaces (versitygw)", c.startSpaces},
		{"build and push the application images", c.pushImages},
		{"prepare the local artifacts and serve the signed apt repository", c.prepareArtifacts},
		{"imager build all", c.buildImages},
		{"boot the droplets", c.boot},
		{"put the roles' required settings into Consul KV", c.seedSettings},
		{"wait for codelab-agent status --wait on every droplet", c.waitReady},
	}
	for _, s := range steps {
		if err := c.step(s.name, func() error { return s.fn(ctx) }); err != nil {
			return c, err
		}
	}
	return c, nil
}

// demoSettings are the values the demo gives every key a role requires
// (roles/<role>/required): an operator puts the real ones into Consul KV
// before the droplets boot; until then a role waits and status names the key.
var demoSettings = map[string]string{
	"NEO4J_USER":     "neo4j",
	"NEO4J_PASSWORD": "codelab-demo-password",
	"NEO4J_AUTH":     "neo4j/codelab-demo-password",
}

// seedSettings writes each role's required keys through a Consul server
// droplet's own consul CLI, once the cluster has a leader.
func (c *Cluster) seedSettings(ctx context.Context) error {
	var server *Node
	for _, n := range c.Nodes {
		if n.Consul == "server" {
			server = n
			break
		}
	}
	if server == nil {
		return errors.New("no Consul server droplet to write settings through")
	}
	var puts [][2]string
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		keys, err := roles.Required(n.Role)
		if err != nil {
			return err
		}
		for _, k := range keys {
			v, ok := demoSettings[k]
			if !ok {
				return fmt.Errorf("role %s requires %s, which the demo has no value for", n.Role, k)
			}
			path := roles.RequiredKVPath(c.Opts.Env, n.Role, k)
			if !seen[path] {
				seen[path] = true
				puts = append(puts, [2]string{path, v})
			}
		}
	}
	if c.Spaces != nil {
		kv := c.SpacesSettings()
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			puts = append(puts, [2]string{k, kv[k]})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	// One transaction: consul-template sees every setting at one index and
	// renders each env file once (keys put one by one can make it render,
	// then render again and recreate a container right after it was ready).
	for {
		err := c.KVPutAll(ctx, server, puts)
		if err == nil {
			for _, p := range puts {
				fmt.Fprintf(c.Opts.Out, "    %s set\n", p[0])
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// KVPutAll writes several Consul KV values in one transaction (Consul's
// /v1/txn) through a droplet's local agent. The values go through standard
// input, never a command line.
func (c *Cluster) KVPutAll(ctx context.Context, via *Node, kvs [][2]string) error {
	var ops []map[string]any
	for _, kv := range kvs {
		ops = append(ops, map[string]any{"KV": map[string]string{"Verb": "set", "Key": kv[0], "Value": base64.StdEncoding.EncodeToString([]byte(kv[1]))}})
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	// The management token goes to curl as a header file, written from
	// the environment by the shell (printf is a builtin: no command line).
	tok, err := c.ManagementToken()
	if err != nil {
		return err
	}
	script := `umask 077; h=$(mktemp); trap 'rm -f "$h"' EXIT; printf 'X-Consul-Token: %s\n' "$CONSUL_HTTP_TOKEN" > "$h"; curl -fsS -H @"$h" -X PUT --data-binary @- http://127.0.0.1:8500/v1/txn`
	if _, err := c.withToken(ctx, via, tok, bytes.NewReader(body), "sh", "-c", script); err != nil {
		return fmt.Errorf("consul txn of %d keys: %w", len(kvs), err)
	}
	return nil
}

// KVPut writes a Consul KV value through a droplet's own consul CLI. The
// value goes through standard input, never the command line.
func (c *Cluster) KVPut(ctx context.Context, via *Node, key, value string) error {
	tok, err := c.ManagementToken()
	if err != nil {
		return err
	}
	if _, err := c.withToken(ctx, via, tok, strings.NewReader(value), "consul", "kv", "put", key, "-"); err != nil {
		return fmt.Errorf("consul kv put %s: %w", key, err)
	}
	return nil
}

// Down removes everything the instance made, and the application images it built.
func Down(ctx context.Context, o Options) error {
	o.defaults()
	if info, err := localdo.ReadInfo(o.StateDir()); err == nil && info.RegistryPush != "" {
		for _, n := range Plan {
			ref := fmt.Sprintf("%s/%s:%s", info.RegistryPush, n.Role, o.Version)
			if out, err := exec.CommandContext(ctx, "docker", "image", "rm", "-f", ref).CombinedOutput(); err == nil {
				fmt.Fprintf(o.Out, "removed image %s\n", ref)
			} else if !strings.Contains(strings.ToLower(string(out)), "no such image") {
				fmt.Fprintf(o.Out, "remove image %s: %s\n", ref, strings.TrimSpace(string(out)))
			}
		}
	}
	if err := stopSpaces(o); err != nil {
		fmt.Fprintf(o.Out, "stop the local Spaces: %v\n", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(o.BinDir, "localdo"), "down", "--instance", o.Instance, "--state", o.StateDir())
	cmd.Stdout, cmd.Stderr = o.Out, o.Out
	return cmd.Run()
}

func (c *Cluster) artifactsDir() string { return filepath.Join(c.Opts.Cache, "localdo-artifacts") }

// prepareArtifacts makes the local artifacts and serves their apt repository to build
// droplets until ctx ends (the imager builds of this process, e2e's rebuilds included).
func (c *Cluster) prepareArtifacts(ctx context.Context) error {
	addr, err := aptHostPort(c.Info.Networks.Public.Gateway.String(), c.Info.RegistryPull)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve the local apt repository on %s: %w (another demo or e2e run?)", addr, err)
	}
	la, err := PrepareArtifacts(ctx, c.Opts.Repo, filepath.Join(c.Opts.Cache, "bin"), c.artifactsDir(), "http://"+addr)
	if err != nil {
		l.Close()
		return err
	}
	ServeApt(ctx, l, la.AptDir)
	fmt.Fprintf(c.Opts.Out, "    apt repository %s, signed by test key %s\n", la.AptURL, la.KeyFingerprint)
	return nil
}

func (c *Cluster) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out.String(), 40))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) startLocalDO(ctx context.Context) error {
	if _, err := c.run(ctx, nil, filepath.Join(c.Opts.BinDir, "localdo"), "start", "--registry",
		"--instance", c.Opts.Instance, "--state", c.Opts.StateDir(), "--addr", c.Opts.Addr); err != nil {
		return err
	}
	info, err := localdo.ReadInfo(c.Opts.StateDir())
	if err != nil {
		return err
	}
	if info.RegistryPush == "" {
		return errors.New("the running local DigitalOcean has no registry: run `make demo-down` and try again")
	}
	c.Info = info
	c.DO = godo.NewFromToken("local")
	c.DO.BaseURL, err = c.DO.BaseURL.Parse(info.APIURL)
	fmt.Fprintf(c.Opts.Out, "    API %s, registry %s (droplets pull from %s)\n", info.APIURL, info.RegistryPush, info.RegistryPull)
	return err
}

// pushImages builds the role images FROM scratch and pushes them to the local registry.
func (c *Cluster) pushImages(ctx context.Context) error {
	work, err := os.MkdirTemp("", "cluster-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	app := filepath.Join(work, "app")
	if _, err := c.run(ctx, []string{"CGO_ENABLED=0"}, "go", "build", "-C", c.Opts.Repo, "-trimpath", "-o", app, "./tools/cmd/codelab-testapp"); err != nil {
		return err
	}
	for _, n := range Plan {
		ref := fmt.Sprintf("%s/%s:%s", c.Info.RegistryPush, n.Role, c.Opts.Version)
		if n.Role == "neo4j" {
			if _, err := c.run(ctx, nil, "bash", filepath.Join(c.Opts.Repo, "e2e/images/neo4j-standin/build.sh"), ref); err != nil {
				return err
			}
		} else {
			dir := filepath.Join(work, n.Role)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if _, err := c.run(ctx, nil, "cp", app, filepath.Join(dir, "app")); err != nil {
				return err
			}
			df := fmt.Sprintf("FROM scratch\nCOPY app /app\nENV PORT=%d ROLE=%s\nEXPOSE %d\nENTRYPOINT [\"/app\"]\n", n.Port, n.Role, n.Port)
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
				return err
			}
			if _, err := c.run(ctx, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", ref, dir); err != nil {
				return err
			}
		}
		if _, err := c.run(ctx, nil, "docker", "push", "-q", ref); err != nil {
			return err
		}
		fmt.Fprintf(c.Opts.Out, "    pushed %s\n", ref)
	}
	return nil
}

func (c *Cluster) imagerEnv() []string {
	return []string{"DIGITALOCEAN_API_TOKEN=local", "DIGITALOCEAN_API_URL=" + c.Info.APIURL,
		"CODELAB_LOCAL_ARTIFACTS=" + c.artifactsDir()}
}

// Imager runs the imager against the local DigitalOcean and returns its output.
func (c *Cluster) Imager(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, c.imagerEnv(), filepath.Join(c.Opts.BinDir, "imager"), args...)
}

// BuildArgs are the arguments of an `imager build` against this cluster's local
// DigitalOcean: its API, the repository, its one region, and the registry and version
// the droplets' user_data names, so the service images bake exactly the images the
// droplets would pull.
func (c *Cluster) BuildArgs(target string) []string {
	return []string{"build", target, "--api-url", c.Info.APIURL, "--repo", c.Opts.Repo, "--regions", c.Opts.Region,
		"--registry", c.Info.RegistryPull, "--version", c.Opts.Version}
}

// Families are the six image families the imager builds.
var Families = []string{"services-base", "neo4j-base", "api-base", "web-base", "landing-base", "sites-base"}

func (c *Cluster) buildImages(ctx context.Context) error {
	// The local DigitalOcean has one region, the build region.
	args := append(c.BuildArgs("all"), "--local-artifacts", c.artifactsDir())
	if c.Opts.ForceBuild {
		args = append(args, "--force")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.Opts.BinDir, "imager"), args...)
	cmd.Env = append(os.Environ(), c.imagerEnv()...)
	cmd.Stdout, cmd.Stderr = c.Opts.Out, c.Opts.Out
	return cmd.Run()
}

// Snapshots returns the newest snapshot id of each image family.
func (c *Cluster) Snapshots(ctx context.Context) (map[string]godo.Image, error) {
	imgs, _, err := c.DO.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		return nil, err
	}
	sort.Slice(imgs, func(i, j int) bool {
		return imgs[i].Created < imgs[j].Created || (imgs[i].Created == imgs[j].Created && imgs[i].ID < imgs[j].ID)
	})
	out := map[string]godo.Image{}
	for _, im := range imgs {
		for _, fam := range Families {
			if strings.HasPrefix(im.Name, "codelab-"+fam+"-") {
				out[fam] = im
			}
		}
	}
	return out, nil
}

// freeAddrs predicts the next n private addresses the local DigitalOcean hands out
// (lowest free from .10), so Consul servers can be told each other's addresses in
// user_data; boot checks the prediction.
func freeAddrs(n droplets.Network, used map[string]bool, count int) []string {
	var out []string
	a := n.Subnet.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	for ; n.Subnet.Contains(a) && len(out) < count; a = a.Next() {
		if !used[a.String()] && a != n.Gateway {
			out = append(out, a.String())
		}
	}
	return out
}

func gossipKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// UserData is the one line a node boots with.
func (c *Cluster) UserData(n NodeSpec, join []string, gossip string) string {
	return c.userData(n, c.Opts.Env, join, gossip)
}

func (c *Cluster) userData(n NodeSpec, env string, join []string, gossip string) string {
	line := fmt.Sprintf("#codelab v1 role=%s env=%s consul=%s", n.Role, env, n.Consul)
	if n.Consul == "server" {
		line += fmt.Sprintf(" bootstrap=%d", len(join))
	}
	return line + fmt.Sprintf(" join=%s registry=%s version=%s gossip=%s do_token=%s",
		strings.Join(join, ","), c.Info.RegistryPull, c.Opts.Version, gossip, DOToken) + c.securitySettings(n.Consul, env, n.Role)
}

// DOToken is the demo droplets' read-only DigitalOcean token (the local
// DigitalOcean accepts any): `status --fleet` lists the snapshots with it.
const DOToken = "demo-read-only"

func (c *Cluster) boot(ctx context.Context) error {
	snaps, err := c.Snapshots(ctx)
	if err != nil {
		return err
	}
	existing, _, err := c.DO.Droplets.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		return err
	}
	byName := map[string]godo.Droplet{}
	used := map[string]bool{}
	for _, d := range existing {
		byName[d.Name] = d
		if ip, err := d.PrivateIPv4(); err == nil {
			used[ip] = true
		}
	}
	var servers []NodeSpec
	for _, n := range Plan {
		if n.Consul == "server" {
			servers = append(servers, n)
		}
	}
	// Servers keep their addresses across runs; new ones get predicted addresses.
	var join []string
	var missing int
	for _, s := range servers {
		if d, ok := byName[s.Name]; ok {
			ip, _ := d.PrivateIPv4()
			join = append(join, ip)
		} else {
			missing++
		}
	}
	join = append(join, freeAddrs(c.Info.Networks.Private, used, missing)...)
	gossip := gossipKey()
	if have := len(Plan) - countMissing(byName); have > 0 && have < len(Plan) {
		// The gossip key of the running droplets is not kept anywhere else.
		return fmt.Errorf("%d of the %d droplets exist: run `make demo-down` and start again", have, len(Plan))
	}
	if err := c.loadCA(countMissing(byName) == len(Plan)); err != nil {
		return err
	}
	// Servers first (they take the predicted addresses), then clients; each group in
	// parallel.
	for _, consul := range []string{"server", "client"} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for _, spec := range Plan {
			if spec.Consul != consul {
				continue
			}
			if d, ok := byName[spec.Name]; ok {
				n := &Node{NodeSpec: spec, ID: d.ID}
				n.PublicIP, _ = d.PublicIPv4()
				n.PrivateIP, _ = d.PrivateIPv4()
				c.Nodes = append(c.Nodes, n)
				fmt.Fprintf(c.Opts.Out, "    %s exists (droplet %d)\n", spec.Name, d.ID)
				continue
			}
			im, ok := snaps[spec.Image]
			if !ok {
				return fmt.Errorf("no %s snapshot on the local DigitalOcean (did imager build all succeed?)", spec.Image)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := c.create(ctx, spec, im, join, gossip)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				c.Nodes = append(c.Nodes, n)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	order := map[string]int{}
	for i, s := range Plan {
		order[s.Name] = i
	}
	sort.Slice(c.Nodes, func(i, j int) bool { return order[c.Nodes[i].Name] < order[c.Nodes[j].Name] })
	return nil
}

// create makes one droplet and checks a server got a predicted address.
func (c *Cluster) create(ctx context.Context, spec NodeSpec, im godo.Image, join []string, gossip string) (*Node, error) {
	start := time.Now()
	d, _, err := c.DO.Droplets.Create(ctx, &godo.DropletCreateRequest{
		Name: spec.Name, Region: c.Opts.Region, Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{ID: im.ID},
		UserData: c.UserData(spec, join, gossip), Tags: []string{"codelab", "codelab-" + spec.Role},
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	n := &Node{NodeSpec: spec, ID: d.ID}
	n.PublicIP, _ = d.PublicIPv4()
	n.PrivateIP, _ = d.PrivateIPv4()
	fmt.Fprintf(c.Opts.Out, "    %s: droplet %d from %s (%d), public %s, private %s, active in %s\n",
		spec.Name, d.ID, im.Name, im.ID, n.PublicIP, n.PrivateIP, time.Since(start).Round(100*time.Millisecond))
	if spec.Consul == "server" && !contains(join, n.PrivateIP) {
		return n, fmt.Errorf("%s got private address %s, not one of the predicted server addresses %v", spec.Name, n.PrivateIP, join)
	}
	return n, nil
}

func countMissing(byName map[string]godo.Droplet) int {
	n := 0
	for _, s := range Plan {
		if _, ok := byName[s.Name]; !ok {
			n++
		}
	}
	return n
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// AgentStatus runs `codelab-agent status` in a droplet with args; it returns standard
// output, the exit code, and standard error in err only when the command could not run.
func (c *Cluster) AgentStatus(ctx context.Context, n *Node, args ...string) (string, int, error) {
	out, stderr, code, err := c.agentStatus(ctx, n, args...)
	if err != nil {
		return out, code, fmt.Errorf("%w: %s", err, stderr)
	}
	return out, code, nil
}

func (c *Cluster) agentStatus(ctx context.Context, n *Node, args ...string) (string, string, int, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", c.Docker.ContainerName(n.ID), "codelab-agent", "status"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	if err != nil {
		return out.String(), errb.String(), -1, err
	}
	return out.String(), errb.String(), 0, nil
}

// AgentState is the part of `codelab-agent status --json` the harness reads.
type AgentState struct {
	SchemaVersion int    `json:"schemaVersion"`
	Overall       string `json:"overall"`
	ExitCode      int    `json:"exitCode"`
	Summary       string `json:"summary"`
	Role          string `json:"role"`
	Boot          struct {
		BootID     string    `json:"bootId"`
		StartedAt  time.Time `json:"startedAt"`
		DurationMs int64     `json:"durationMs"`
	} `json:"boot"`
}

// WaitReady runs `codelab-agent status --wait --json` until the droplet is ready (from a
// boot that started after since, when since is set), failed, or timeout passes. (Not the
// boot id: inside a container /proc/sys/kernel/random/boot_id is the host's, the same
// across a droplet's reboots.)
// --wait returns as soon as the droplet is not booting, so a droplet that is degraded
// for a moment (a container recreated by consul-template) is asked again.
func (c *Cluster) WaitReady(ctx context.Context, n *Node, timeout time.Duration, since time.Time) (AgentState, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st AgentState
	for {
		out, stderr, code, err := c.agentStatus(wctx, n, "--wait", "--timeout", timeout.String(), "--json")
		st = AgentState{}
		jerr := json.Unmarshal([]byte(out), &st)
		switch {
		case err != nil && wctx.Err() == nil:
			return st, fmt.Errorf("%s: codelab-agent status: %v %s", n.Name, err, stderr)
		case jerr == nil && st.Overall == "ready" && code == 0 && (since.IsZero() || st.Boot.StartedAt.After(since)):
			return st, nil
		case jerr == nil && st.Overall == "failed":
			return st, fmt.Errorf("%s: failed (exit %d): %s", n.Name, code, st.Summary)
		}
		select {
		case <-wctx.Done():
			return st, fmt.Errorf("%s: not ready after %s: exit %d, %s %s", n.Name, timeout, code, st.Summary, tail(stderr, 5))
		case <-time.After(2 * time.Second):
		}
	}
}

func (c *Cluster) waitReady(ctx context.Context) error {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.WaitReady(ctx, n, c.Opts.StatusTimeout, time.Time{})
			n.Ready = time.Since(start).Round(time.Second)
			if err != nil {
				out, _, _ := c.AgentStatus(context.Background(), n)
				errs[i] = fmt.Errorf("%w\n%s", err, tail(out, 30))
				return
			}
			fmt.Fprintf(c.Opts.Out, "    %s ready after %s\n", n.Name, n.Ready)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Print writes each droplet's status and the api's URL.
func (c *Cluster) Print(ctx context.Context, w io.Writer) {
	for _, n := range c.Nodes {
		out, code, _ := c.AgentStatus(ctx, n)
		fmt.Fprintf(w, "--- %s (droplet %d, %s, public %s, private %s): exit %d\n%s\n", n.Name, n.ID, n.Role, n.PublicIP, n.PrivateIP, code, strings.TrimRight(out, "\n"))
	}
	for _, n := range c.Nodes {
		if n.Role == "api" {
			fmt.Fprintf(w, "api: http://%s:%d/\n", n.PublicIP, n.Port)
		}
	}
	for _, t := range c.Timings {
		fmt.Fprintf(w, "timing: %-55s %s\n", t.Step, t.Duration)
	}
}

// CollectLogs writes each droplet's journal and agent state under dir.
func (c *Cluster) CollectLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, n := range c.Nodes {
		for file, args := range map[string][]string{
			"journal.log": {"journalctl", "--no-pager", "-b", "-o", "short-iso"},
			"state.json":  {"cat", "/var/lib/codelab/state.json"},
			"status.txt":  {"codelab-agent", "status"},
			"docker.txt":  {"docker", "ps", "-a"},
		} {
			out, _ := exec.CommandContext(ctx, "docker", append([]string{"exec", c.Docker.ContainerName(n.ID)}, args...)...).CombinedOutput()
			if err := os.WriteFile(filepath.Join(dir, n.Name+"-"+file), out, 0o644); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
