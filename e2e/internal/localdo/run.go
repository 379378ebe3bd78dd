package localdo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
)

// Options configure a running local DigitalOcean.
type Options struct {
	// Addr is where the API listens (host:port; port 0 picks one).
	Addr string
	// StateDir keeps state.json and localdo.json.
	StateDir string
	// Instance names the Docker networks, containers, volumes and images it makes.
	Instance string
	Docker   *droplets.Docker
	Log      *slog.Logger
	// Registry runs a local container registry (Debian's docker-registry, RegistryBin)
	// for droplets: the host pushes to 127.0.0.1:PORT, droplets pull from the public
	// network's gateway at the same port (their Docker trusts it without TLS).
	Registry    bool
	RegistryBin string
}

// Info is written to StateDir/localdo.json while the server runs.
type Info struct {
	APIURL string `json:"apiUrl"`
	// DropletAPIURL is the API as droplets reach it: on the public network's
	// gateway, next to the metadata service (a droplet's read-only token
	// talks to it, as on DigitalOcean).
	DropletAPIURL string            `json:"dropletApiUrl"`
	MetadataURL   string            `json:"metadataUrl"`
	PID           int               `json:"pid"`
	Instance      string            `json:"instance"`
	Networks      droplets.Networks `json:"networks"`
	// RegistryPush is where the host pushes images; RegistryPull where droplets pull
	// the same images from.
	RegistryPush string `json:"registryPush,omitempty"`
	RegistryPull string `json:"registryPull,omitempty"`
	RegistryPIDs []int  `json:"registryPids,omitempty"`
}

// InfoFile is the name of the file describing a running server.
const InfoFile = "localdo.json"

// Running is a started local DigitalOcean.
type Running struct {
	Info
	Server   *Server
	api      *http.Server
	meta     *http.Server
	errc     chan error
	infoDir  string
	registry []*exec.Cmd
}

// Start creates the networks, listens on Addr (API) and on the public network's gateway
// (metadata, same port when free), reconciles saved droplets and serves in the
// background until Close.
func Start(ctx context.Context, o Options) (*Running, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Docker == nil {
		o.Docker = &droplets.Docker{Instance: o.Instance, Log: o.Log}
	}
	nets, err := o.Docker.EnsureNetworks(ctx)
	if err != nil {
		return nil, fmt.Errorf("local DigitalOcean networks: %w", err)
	}
	apiL, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("local DigitalOcean API listen: %w", err)
	}
	_, port, _ := net.SplitHostPort(apiL.Addr().String())
	metaL, err := net.Listen("tcp", net.JoinHostPort(nets.Public.Gateway.String(), port))
	if err != nil {
		metaL, err = net.Listen("tcp", net.JoinHostPort(nets.Public.Gateway.String(), "0"))
	}
	if err != nil {
		apiL.Close()
		return nil, fmt.Errorf("local DigitalOcean metadata listen on %s: %w", nets.Public.Gateway, err)
	}
	var reg *registry
	if o.Registry {
		_, apiPort, _ := net.SplitHostPort(o.Addr)
		reg, err = startRegistry(o, nets.Public.Gateway.String(), apiPort)
		if err != nil {
			apiL.Close()
			metaL.Close()
			return nil, err
		}
	}
	cfg := Config{
		Runtime: o.Docker, Networks: nets, StateDir: o.StateDir,
		MetadataTarget: metaL.Addr().String(), Log: o.Log,
	}
	if reg != nil {
		cfg.InsecureRegistries = []string{reg.pull}
	}
	srv, err := New(cfg)
	if err != nil {
		apiL.Close()
		metaL.Close()
		reg.stop()
		return nil, err
	}
	if err := srv.Reconcile(ctx); err != nil {
		o.Log.Error("reconcile saved droplets", "error", err)
	}
	r := &Running{
		Info: Info{
			APIURL:        "http://" + apiL.Addr().String() + "/",
			DropletAPIURL: "http://" + metaL.Addr().String() + "/",
			MetadataURL:   "http://" + metaL.Addr().String() + "/metadata/v1.json",
			PID:           os.Getpid(), Instance: o.Instance, Networks: nets,
		},
		Server:  srv,
		api:     &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second},
		meta:    &http.Server{Handler: dropletHandler(srv), ReadHeaderTimeout: 10 * time.Second},
		errc:    make(chan error, 2),
		infoDir: o.StateDir,
	}
	if reg != nil {
		r.RegistryPush, r.RegistryPull, r.registry = reg.push, reg.pull, reg.procs
		for _, p := range reg.procs {
			r.RegistryPIDs = append(r.RegistryPIDs, p.Process.Pid)
		}
	}
	go func() { r.errc <- r.api.Serve(apiL) }()
	go func() { r.errc <- r.meta.Serve(metaL) }()
	if o.StateDir != "" {
		b, _ := json.MarshalIndent(r.Info, "", "  ")
		if err := os.MkdirAll(o.StateDir, 0o700); err == nil {
			err = os.WriteFile(filepath.Join(o.StateDir, InfoFile), b, 0o600)
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("write %s: %w", InfoFile, err)
		}
	}
	o.Log.Info("local DigitalOcean serving", "api", r.APIURL, "metadata", r.MetadataURL,
		"public", nets.Public.Subnet, "vpc", nets.Private.Subnet, "state", o.StateDir)
	return r, nil
}

// dropletHandler is what droplets reach on the public network's gateway: the
// metadata service, and the API.
func dropletHandler(s *Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metadata/", s.MetadataHandler())
	mux.Handle("/v2/", s.Handler())
	return mux
}

// Wait blocks until ctx ends or a listener fails.
func (r *Running) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.errc:
		return fmt.Errorf("local DigitalOcean stopped serving: %w", err)
	}
}

// Close stops serving (droplets keep running) and removes localdo.json.
func (r *Running) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.api.Shutdown(ctx)
	_ = r.meta.Shutdown(ctx)
	r.Server.Close()
	(&registry{procs: r.registry}).stop()
	if r.infoDir != "" {
		_ = os.Remove(filepath.Join(r.infoDir, InfoFile))
	}
}

// ReadInfo reads StateDir/localdo.json of a running server.
func ReadInfo(stateDir string) (Info, error) {
	var i Info
	b, err := os.ReadFile(filepath.Join(stateDir, InfoFile))
	if err != nil {
		return i, err
	}
	return i, json.Unmarshal(b, &i)
}

// Down stops the server of stateDir (if it runs), removes every container, network,
// volume and image of the instance, and deletes stateDir. It returns what it removed.
func Down(ctx context.Context, d *droplets.Docker, stateDir string, log *slog.Logger) (map[string][]string, error) {
	if info, err := ReadInfo(stateDir); err == nil && info.PID > 0 && info.PID != os.Getpid() && isLocaldo(info.PID) {
		log.Info("stopping the local DigitalOcean server", "pid", info.PID)
		_ = syscall.Kill(info.PID, syscall.SIGTERM)
		deadline := time.NewTimer(15 * time.Second)
		tick := time.NewTicker(200 * time.Millisecond)
	wait:
		for {
			select {
			case <-deadline.C:
				log.Error("the local DigitalOcean server did not stop within 15s", "pid", info.PID)
				break wait
			case <-tick.C:
				if syscall.Kill(info.PID, 0) != nil {
					break wait
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		tick.Stop()
	}
	if info, err := ReadInfo(stateDir); err == nil {
		for _, pid := range info.RegistryPIDs {
			if IsProgram(pid, "docker-registry") {
				log.Info("stopping the local registry", "pid", pid)
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}
	removed, err := d.Down(ctx)
	if stateDir != "" {
		if rerr := os.RemoveAll(stateDir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return removed, err
}

// isLocaldo checks that pid is a localdo server (not a reused pid).
func isLocaldo(pid int) bool { return IsProgram(pid, "localdo") }

// IsProgram checks that pid runs the program named name.
func IsProgram(pid int, name string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0) == name
}

type registry struct {
	push, pull string
	procs      []*exec.Cmd
}

func (r *registry) stop() {
	if r == nil {
		return
	}
	for _, p := range r.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		_, _ = p.Process.Wait()
	}
}

// startRegistry runs docker-registry on 127.0.0.1 and on gateway at one port, sharing
// one storage folder, and waits until both answer.
func startRegistry(o Options, gateway, apiPort string) (*registry, error) {
	bin := o.RegistryBin
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("local registry: %w (make deps installs docker-registry)", err)
	}
	dir := filepath.Join(o.StateDir, "registry")
	if o.StateDir == "" {
		return nil, errors.New("local registry: needs a state folder")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		// A fixed API port gives a fixed registry port (the next one), so droplets'
		// daemon.json stays right across restarts of the server.
		port := ""
		if p, err := strconv.Atoi(apiPort); err == nil && p > 0 && attempt == 0 {
			port = strconv.Itoa(p + 1)
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			_, port, _ = net.SplitHostPort(l.Addr().String())
			l.Close()
		}
		r := &registry{push: "127.0.0.1:" + port, pull: net.JoinHostPort(gateway, port)}
		ok := true
		for i, addr := range []string{r.push, r.pull} {
			cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yml", i))
			// The droplets' side (i == 1) keeps an access log: it shows which
			// droplet asked for what (the boot benchmark counts a baked
			// droplet's requests there, and expects none).
			body := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: %t\n"+
				"storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
				i == 0, filepath.Join(dir, "storage"), addr)
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				return nil, err
			}
			logf, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("registry-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return nil, err
			}
			cmd := exec.Command(bin, "serve", cfg)
			cmd.Stdout, cmd.Stderr = logf, logf
			err = cmd.Start()
			logf.Close()
			if err != nil {
				r.stop()
				return nil, fmt.Errorf("local registry: %w", err)
			}
			r.procs = append(r.procs, cmd)
			if err := waitHTTP("http://"+addr+"/v2/", 10*time.Second); err != nil {
				lastErr, ok = err, false
				break
			}
		}
		if ok {
			o.Log.Info("local registry serving", "push", r.push, "pull", r.pull, "storage", filepath.Join(dir, "storage"))
			return r, nil
		}
		r.stop()
	}
	return nil, fmt.Errorf("local registry did not start: %w", lastErr)
}

// waitHTTP polls url until it answers 200.
func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	c := &http.Client{Timeout: time.Second}
	var lastErr error
	for range tick.C {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		lastErr = err
		if time.Now().After(deadline) {
			break
		}
	}
	return lastErr
}
