// Package cli is the localdo command: options structs plus run functions with injected
// output, wired by cobra.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/spf13/cobra"
)

// IO is where commands write.
type IO struct {
	Out, ErrOut io.Writer
}

// Global are the flags every command takes.
type Global struct {
	StateDir string
	Instance string
	LogLevel string
}

func defaultStateDir() string {
	cache := os.Getenv("CODELAB_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "codelab")
	}
	return filepath.Join(cache, "localdo")
}

func (g *Global) dir() string {
	if g.StateDir != "" {
		return g.StateDir
	}
	return filepath.Join(defaultStateDir(), g.Instance)
}

func (g *Global) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// New returns the root command.
func New(stdio IO) *cobra.Command {
	g := &Global{}
	root := &cobra.Command{
		Use:           "localdo",
		Short:         "A local DigitalOcean: droplets are systemd containers in Docker",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdio.Out)
	root.SetErr(stdio.ErrOut)
	root.PersistentFlags().StringVar(&g.StateDir, "state", "", "state folder (default $CODELAB_CACHE/localdo/<instance>)")
	root.PersistentFlags().StringVar(&g.Instance, "instance", "codelab", "instance name: prefixes and labels every container, network, volume and image")
	root.PersistentFlags().StringVar(&g.LogLevel, "log-level", "info", "debug, info, warn or error")
	root.AddCommand(newServeCmd(g, stdio), newStartCmd(g, stdio), newEnvCmd(g, stdio), newDownCmd(g, stdio))
	return root
}

// ServeOptions are the options of `localdo serve` and `localdo start`.
type ServeOptions struct {
	Addr     string
	Wait     time.Duration
	Registry bool
}

func newServeCmd(g *Global, stdio IO) *cobra.Command {
	o := &ServeOptions{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API on --addr and the metadata service to droplets until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunServe(cmd.Context(), g, o, stdio)
		},
	}
	c.Flags().StringVar(&o.Addr, "addr", "127.0.0.1:8765", "API listen address")
	c.Flags().BoolVar(&o.Registry, "registry", false, "also run a local container registry that droplets pull from (docker-registry)")
	return c
}

// RunServe runs the server in the foreground.
func RunServe(ctx context.Context, g *Global, o *ServeOptions, stdio IO) error {
	log := g.logger(stdio.ErrOut)
	r, err := localdo.Start(ctx, localdo.Options{Addr: o.Addr, StateDir: g.dir(), Instance: g.Instance, Log: log, Registry: o.Registry})
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(stdio.Out, "DIGITALOCEAN_API_URL=%s\n", r.APIURL)
	return r.Wait(ctx)
}

func newStartCmd(g *Global, stdio IO) *cobra.Command {
	o := &ServeOptions{}
	c := &cobra.Command{
		Use:   "start",
		Short: "Run `localdo serve` in the background (log in the state folder) and wait until it answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunStart(cmd.Context(), g, o, stdio)
		},
	}
	c.Flags().StringVar(&o.Addr, "addr", "127.0.0.1:8765", "API listen address")
	c.Flags().DurationVar(&o.Wait, "wait", 30*time.Second, "how long to wait for the API to answer")
	c.Flags().BoolVar(&o.Registry, "registry", false, "also run a local container registry that droplets pull from (docker-registry)")
	return c
}

// answers says whether a local DigitalOcean API answers at url.
func answers(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/v2/account", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer local")
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// RunStart starts a background server unless one for the state folder answers already.
func RunStart(ctx context.Context, g *Global, o *ServeOptions, stdio IO) error {
	dir := g.dir()
	if info, err := localdo.ReadInfo(dir); err == nil && answers(ctx, info.APIURL) {
		fmt.Fprintf(stdio.Out, "DIGITALOCEAN_API_URL=%s\n", info.APIURL)
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, localdo.InfoFile))
	logPath := filepath.Join(dir, "localdo.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"serve", "--addr", o.Addr, "--state", dir, "--instance", g.Instance, "--log-level", g.LogLevel}
	if o.Registry {
		args = append(args, "--registry")
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start localdo serve: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("localdo serve exited (%v); see %s", err, logPath)
		case <-deadline.C:
			return fmt.Errorf("localdo serve did not answer within %s; see %s", o.Wait, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if info, err := localdo.ReadInfo(dir); err == nil && answers(ctx, info.APIURL) {
				fmt.Fprintf(stdio.Out, "DIGITALOCEAN_API_URL=%s\n", info.APIURL)
				fmt.Fprintf(stdio.ErrOut, "localdo: serving (pid %d, log %s)\n", cmd.Process.Pid, logPath)
				return nil
			}
		}
	}
}

func newEnvCmd(g *Global, stdio IO) *cobra.Command {
	return &cobra.Command{
		Use:   "env",
		Short: "Print DIGITALOCEAN_API_URL and DIGITALOCEAN_API_TOKEN for the running server (for `eval`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := localdo.ReadInfo(g.dir())
			if err != nil {
				return fmt.Errorf("no local DigitalOcean runs for %s (localdo start): %w", g.dir(), err)
			}
			fmt.Fprintf(stdio.Out, "export DIGITALOCEAN_API_URL=%s\nexport DIGITALOCEAN_API_TOKEN=local\n", info.APIURL)
			if info.RegistryPush != "" {
				fmt.Fprintf(stdio.Out, "export CODELAB_REGISTRY_PUSH=%s\nexport CODELAB_REGISTRY_PULL=%s\n", info.RegistryPush, info.RegistryPull)
			}
			return nil
		},
	}
}

func newDownCmd(g *Global, stdio IO) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the server and remove every container, network, volume and image it made, and its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := g.logger(stdio.ErrOut)
			removed, err := localdo.Down(cmd.Context(), &droplets.Docker{Instance: g.Instance, Log: log}, g.dir(), log)
			kinds := make([]string, 0, len(removed))
			for k := range removed {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			for _, k := range kinds {
				fmt.Fprintf(stdio.Out, "removed %d %s\n", len(removed[k]), k)
			}
			if err != nil {
				return errors.New("down: " + err.Error())
			}
			return nil
		},
	}
}
